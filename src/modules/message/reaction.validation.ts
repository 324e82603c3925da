import { BadUserInputError } from '../../shared/errors';

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
/**
 * Pictographs (each with its skin tone or U+FE0F, joined by ZWJ into sequences), flags (a pair of
 * regional indicators, or a subdivision's tags) and keycaps (a digit, # or * with U+20E3): what a
 * reaction picker offers. A lone indicator or keycap mark is a grapheme too, and no emoji; so is
 * an emoji followed by a mark, a joiner or a tag that shows nothing (it would look like the emoji
 * and count apart from it).
 */
const EMOJI = /^(?:\p{Regional_Indicator}{2}|[0-9#*]\ufe0f?\u20e3|\u{1F3F4}[\u{E0020}-\u{E007E}]+\u{E007F}|\p{Extended_Pictographic}(?:\p{Emoji_Modifier}|\ufe0f)?(?:\u200d(?:\p{Extended_Pictographic}(?:\p{Emoji_Modifier}|\ufe0f)?))*)$/u;
/** One pictograph that shows as text unless followed by U+FE0F (❤, ☺, ©). */
const TEXT_DEFAULT = /^(?!\p{Emoji_Presentation})\p{Extended_Pictographic}$/u;
const VS16 = '\ufe0f';
/** What a reaction was before EMOJI took only whole sequences: one grapheme with a pictograph in it. Such a one may still be stored, and is removable. */
const STORED_BEFORE = /\p{Extended_Pictographic}/u;

/**
 * A reaction: exactly one grapheme (a ZWJ family or a flag counts as one), and an emoji. A single
 * pictograph is kept in its emoji form: ❤ and ❤️ (the same heart, as keyboards send one or the
 * other) count as one reaction, ❤️; 👍 and 👍 with U+FE0F, as 👍.
 * `removing`: also one an earlier release took (an emoji with an invisible mark after it), as stored.
 * @throws BadUserInputError naming `emoji` otherwise.
 */
export function checkEmoji(value: string, removing = false): string {
  const v = typeof value === 'string' ? value : '';
  let count = 0;
  for (const _ of graphemes.segment(v)) if (++count > 1) break;
  const emoji = EMOJI.test(v);
  if (count !== 1 || Buffer.byteLength(v) > 64 || !(emoji || (removing && STORED_BEFORE.test(v)))) throw new BadUserInputError('A reaction is one emoji.', 'emoji');
  if (!emoji) return v;
  const bare = v.replaceAll(VS16, '');
  if ([...bare].length !== 1) return v;
  return TEXT_DEFAULT.test(bare) ? bare + VS16 : bare;
}
