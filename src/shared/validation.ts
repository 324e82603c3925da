import { BadUserInputError } from './errors';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * An ID as the API receives it, normalized once at the edge (the ID scalar, the download route):
 * a UUID in any case becomes lower case, the only spelling stored, compared and keyed on.
 * Anything else is returned unchanged and names no row.
 */
export function normalizeId(value: string): string {
  const lower = value.toLowerCase();
  return UUID.test(lower) ? lower : value;
}

/** IDs are opaque to clients but are lower-case UUIDs here; anything else can't name a row. */
export function isId(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

// ---- text rules: one place for every name, title, file name and message ----

/** Whole emoji sequences (ZWJ families, flags, keycaps, tag flags) are text, whatever joins them. */
const EMOJI = new RegExp('\\p{RGI_Emoji}', 'gv');
/** Scripts whose words take ZWNJ and ZWJ between letters: Arabic and its neighbours, the Indic scripts and their kin. */
const JOINING =
  '\\p{Script=Arabic}\\p{Script=Syriac}\\p{Script=Nko}\\p{Script=Mongolian}\\p{Script=Devanagari}\\p{Script=Bengali}\\p{Script=Gurmukhi}\\p{Script=Gujarati}\\p{Script=Oriya}' +
  '\\p{Script=Tamil}\\p{Script=Telugu}\\p{Script=Kannada}\\p{Script=Malayalam}\\p{Script=Sinhala}\\p{Script=Khmer}\\p{Script=Myanmar}\\p{Script=Tibetan}';
/**
 * Invisible characters that belong to a word of their script: ZWNJ and ZWJ between letters of a
 * joining script (Persian's and Devanagari's need them; between Latin letters `b\u200cob` shows as
 * `bob`), and Mongolian's vowel separator between Mongolian letters.
 */
const JOINER_IN_WORD = new RegExp(`(?<=[${JOINING}]\\p{M}*)[\\u200c\\u200d](?=[${JOINING}])|(?<=[\\u1820-\\u1878])\\u180e(?=[\\u1820-\\u1878])`, 'gu');
/**
 * Format characters (bidi controls, zero-width space and joiners, word joiner, BOM, tag
 * characters, soft hyphen), other controls, line separators and lone surrogates.
 */
const HIDDEN_OR_CONTROL = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;
/** Half a surrogate pair: not text, and PostgreSQL would store U+FFFD while the answer carried it. */
const LONE_SURROGATE = /\p{Cs}/u;

/** Whether the string is well-formed UTF-16 (every surrogate in a pair). */
export function isWellFormed(v: string): boolean {
  return !LONE_SURROGATE.test(v);
}
/** Letters that draw nothing: the Hangul fillers and the blank Braille pattern. */
const BLANK_LETTER = /[\u115f\u1160\u3164\uffa0\u2800]/u;
/**
 * Invisible characters that are not format characters (default-ignorable marks, and unassigned
 * default-ignorable code points): the combining grapheme joiner, Khmer's inherent vowels and the
 * unassigned ones anywhere; a variation selector except after what it chooses a glyph of (an
 * ideograph or Myanmar letter; text or emoji presentation after a symbol, pictograph or keycap
 * base); a Mongolian one except after a Mongolian letter. `b\u034fob` showed as `bob` (an outside probe).
 */
const HIDDEN_MARK = new RegExp(
  [
    '[\\u034f\\u17b4\\u17b5\\u2065\\ufff0-\\ufff8\\u{e0000}-\\u{e00ff}\\u{e01f0}-\\u{e0fff}]',
    '(?<![\\p{Ideographic}\\p{Script=Myanmar}])[\\ufe00-\\ufe0d\\u{e0100}-\\u{e01ef}]',
    '(?<![\\p{Ideographic}\\p{S}\\p{Extended_Pictographic}#*0-9])[\\ufe0e\\ufe0f]',
    '(?<![\\u1820-\\u1878\\u1880-\\u18aa])[\\u180b-\\u180d\\u180f]',
  ].join('|'),
  'u',
);
/**
 * A character that shows: not a space, mark, default-ignorable or blank letter. Every emoji has
 * one (its pictograph, regional indicator or keycap base), so no emoji matching is needed here,
 * and the scan stops at the first one (message text is checked on every send).
 */
const VISIBLE = /[^\p{White_Space}\p{Cc}\p{Cf}\p{M}\p{Default_Ignorable_Code_Point}\u115f\u1160\u3164\uffa0\u2800]/u;

/** Whether the text shows at least one character. */
export function hasVisibleText(v: string): boolean {
  return VISIBLE.test(v);
}

/**
 * Whether a single-line name may be shown as is: something visible, and nothing that reorders or
 * hides text (bidi controls such as U+202E, zero-width and tag characters, Hangul fillers,
 * invisible marks) outside an emoji sequence.
 */
export function isSafeName(v: string): boolean {
  if (!hasVisibleText(v)) return false;
  const clean = (t: string) => !HIDDEN_OR_CONTROL.test(t) && !BLANK_LETTER.test(t) && !HIDDEN_MARK.test(t);
  // Emoji are matched (slow: a set of strings) only when something hidden may be part of one.
  return clean(v) || clean(v.replace(EMOJI, '').replace(JOINER_IN_WORD, ''));
}

/** A short single-line name (group name, project title): trimmed, 1..max characters (code points, as the column counts them), something visible among them. */
export function cleanName(value: string, field: string, max = 100): string {
  const v = typeof value === 'string' ? value.trim() : '';
  if (!v.length || [...v].length > max || !isSafeName(v)) {
    throw new BadUserInputError(`'${field}' must be 1 to ${max} characters on one line, something visible among them, without invisible or direction-changing characters.`, field);
  }
  return v;
}

/**
 * Message text: trimmed, at most `max` characters, any line breaks and format characters but
 * not NUL, and something visible. Direction marks stay (mixed-script messages need them).
 * Null and empty mean no text.
 */
export function cleanMessageText(value: string | null | undefined, max: number, field = 'content'): string | null {
  if (value === null || value === undefined) return null;
  const v = value.trim();
  if (!v.length) return null;
  // Worded for the field it checks: a report's reason is not a message.
  const what = field === 'content' ? 'A message' : `'${field}'`;
  // Characters as a person counts them (code points), as cleanName counts them; UTF-16 units first, which are never fewer.
  if (v.length > max && [...v].length > max) throw new BadUserInputError(`${what} is at most ${max} characters.`, field);
  if (v.includes('\u0000')) throw new BadUserInputError(`${what} cannot contain NUL characters.`, field);
  if (!isWellFormed(v)) throw new BadUserInputError(`${what} cannot contain half of a surrogate pair.`, field);
  if (!hasVisibleText(v)) throw new BadUserInputError(`${what} must show something: it has only invisible characters.`, field);
  return v;
}

/** A search string: trimmed, at most 100 characters; empty means no filter. */
export function cleanSearch(value: string | null | undefined, field = 'search'): string | null {
  if (value === null || value === undefined) return null;
  const v = value.trim();
  if ([...v].length > 100) throw new BadUserInputError(`'${field}' must be at most 100 characters.`, field);
  return v.length ? v.replace(/\u0000/g, '') : null;
}
