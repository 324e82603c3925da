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
/** ZWNJ and ZWJ between letters: Persian and Indic scripts need them there. */
const JOINER_IN_WORD = /(?<=[\p{L}\p{M}])[\u200c\u200d](?=[\p{L}\p{M}])/gu;
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
 * Invisible marks (default-ignorable, category Mn, so not among the format characters): the
 * combining grapheme joiner and Khmer's inherent vowels anywhere; a variation selector except
 * after what it chooses a glyph of (an ideograph, a symbol or pictograph, a Myanmar letter); a
 * Mongolian one except after a Mongolian letter. `b\u034fob` showed as `bob` (an outside probe).
 */
const HIDDEN_MARK =
  /[\u034f\u17b4\u17b5]|(?<![\p{Ideographic}\p{S}\p{Extended_Pictographic}\p{Script=Myanmar}])[\ufe00-\ufe0f\u{e0100}-\u{e01ef}]|(?<!\p{Script=Mongolian})[\u180b-\u180d\u180f]/u;
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
