import { BadUserInputError } from '../../shared/errors';

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
/** Pictographs, flags (regional indicator pairs) and keycaps: what a reaction picker offers. */
const EMOJI = /\p{Extended_Pictographic}|\p{Regional_Indicator}|\u20e3/u;

/**
 * A reaction: exactly one grapheme (a ZWJ family or a flag counts as one), and an emoji.
 * @throws BadUserInputError naming `emoji` otherwise.
 */
export function checkEmoji(value: string): string {
  const v = typeof value === 'string' ? value : '';
  let count = 0;
  for (const _ of graphemes.segment(v)) if (++count > 1) break;
  if (count !== 1 || Buffer.byteLength(v) > 64 || !EMOJI.test(v)) throw new BadUserInputError('A reaction is one emoji.', 'emoji');
  return v;
}
