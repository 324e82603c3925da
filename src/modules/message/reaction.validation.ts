import { BadUserInputError } from '../../shared/errors';

/** Different emoji on one message (Message.reactions' length, as GRAPHQL_MAX_ITEMS counts it). */
export const MAX_REACTION_KINDS = 20;

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
/**
 * One pictograph: with a skin tone only if it takes one (👍🏽; ❤🏽 is no emoji a picker offers, and
 * would count apart from ❤️), U+FE0F after either.
 */
const PICTOGRAPH = String.raw`(?:\p{Emoji_Modifier_Base}\p{Emoji_Modifier}\ufe0f?|\p{Extended_Pictographic}\ufe0f?)`;
/**
 * Pictographs (see PICTOGRAPH, joined by ZWJ into sequences), flags (a pair of
 * regional indicators, or a subdivision's tags) and keycaps (a digit, # or * with U+20E3): what a
 * reaction picker offers. A lone indicator or keycap mark is a grapheme too, and no emoji; so is
 * an emoji followed by a mark, a joiner or a tag that shows nothing (it would look like the emoji
 * and count apart from it).
 */
const EMOJI = new RegExp(String.raw`^(?:\p{Regional_Indicator}{2}|[0-9#*]\ufe0f?\u20e3|\u{1F3F4}[\u{E0020}-\u{E007E}]+\u{E007F}|${PICTOGRAPH}(?:\u200d${PICTOGRAPH})*)$`, 'u');
/** One pictograph that shows as text unless followed by U+FE0F (❤, ☺, ©). */
const TEXT_DEFAULT = /^(?!\p{Emoji_Presentation})\p{Extended_Pictographic}$/u;
const VS16 = '\ufe0f';
/** What a reaction was before EMOJI took only whole sequences: one grapheme with a pictograph in it. Such a one may still be stored, and is removable. */
const STORED_BEFORE = /\p{Extended_Pictographic}/u;

/** A keycap: its character, U+FE0F (optional as typed) and U+20E3. */
const KEYCAP = /^[0-9#*]\ufe0f?\u20e3$/u;
const ZWJ = '\u200d';

/**
 * An emoji's one form, as keyboards send it one way or the other: each pictograph of a sequence
 * that shows as text alone (❤, 🏳) with U+FE0F after it, any other without it; a keycap with it.
 * So ❤ and ❤️ are one reaction (❤️), 👍 with U+FE0F is 👍, 👍🏽 with U+FE0F is 👍🏽 (some pickers
 * send a skin tone so), 🏳‍🌈 is 🏳️‍🌈, ❤‍🔥 is ❤️‍🔥, 1⃣ is 1️⃣.
 */
function canonical(v: string): string {
  if (KEYCAP.test(v)) return v[0] + VS16 + '\u20e3';
  if (!/^\p{Extended_Pictographic}/u.test(v) || /^\u{1F3F4}[\u{E0020}-\u{E007E}]/u.test(v)) return v;
  return v
    .split(ZWJ)
    .map((part) => {
      const bare = part.replaceAll(VS16, '');
      return [...bare].length === 1 && TEXT_DEFAULT.test(bare) ? bare + VS16 : bare;
    })
    .join(ZWJ);
}

/**
 * A reaction: exactly one grapheme (a ZWJ family or a flag counts as one), and an emoji, in its
 * one form (see canonical): the same emoji as keyboards send it counts as one reaction.
 * `removing`: also one an earlier release took (an emoji with an invisible mark after it), as stored.
 * @throws BadUserInputError naming `emoji` otherwise.
 */
export function checkEmoji(value: string, removing = false): string {
  const v = typeof value === 'string' ? value : '';
  let count = 0;
  for (const _ of graphemes.segment(v)) if (++count > 1) break;
  const emoji = EMOJI.test(v);
  if (count !== 1 || Buffer.byteLength(v) > 64 || !(emoji || (removing && STORED_BEFORE.test(v)))) throw new BadUserInputError('A reaction is one emoji.', 'emoji');
  return emoji ? canonical(v) : v;
}
