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

/**
 * Whole emoji sequences (ZWJ families, flags, keycaps, tag flags) are text, whatever joins them;
 * with the presentation selector a keyboard may add to one shown as emoji already (⚽ U+FE0F: RGI
 * spells it without, and the selector left behind it was taken for a hidden mark: an outside probe).
 */
const EMOJI = new RegExp('\\p{RGI_Emoji}[\\ufe0e\\ufe0f]?', 'gv');
/** Scripts whose words take ZWNJ and ZWJ after a letter: Arabic and its neighbours, the Indic scripts and their kin. */
const JOINING = [
  ...['Arabic', 'Syriac', 'Nko', 'Mongolian', 'Adlam', 'Hanifi_Rohingya', 'Mandaic', 'Manichaean', 'Psalter_Pahlavi'],
  ...['Devanagari', 'Bengali', 'Gurmukhi', 'Gujarati', 'Oriya', 'Tamil', 'Telugu', 'Kannada', 'Malayalam', 'Sinhala', 'Tibetan'],
  ...['Khmer', 'Myanmar', 'Javanese', 'Balinese', 'Sundanese', 'Meetei_Mayek', 'Chakma', 'Limbu', 'Lepcha', 'Tai_Tham', 'Buginese'],
  ...['Newa', 'Tirhuta', 'Grantha', 'Sharada', 'Takri', 'Dogra', 'Kaithi', 'Syloti_Nagri'],
]
  .map((script) => `\\p{Script=${script}}`)
  .join('');
/**
 * Invisible characters that belong to a word of their script, taken out before the name is
 * checked: ZWNJ and ZWJ after a letter (and its marks) of a joining script (Persian's and
 * Devanagari's need them, Malayalam's older chillu ends a word with one; after a Latin letter
 * `b\u200cob` shows as `bob`), and Mongolian's vowel separator between Mongolian letters. The
 * character comes first so that the look back runs only where one is (0.3 ms a 100-character name
 * the other way round).
 */
const JOINER_IN_WORD = new RegExp(`[\\u200c\\u200d](?<=[${JOINING}]\\p{M}*[\\u200c\\u200d])|\\u180e(?<=[\\u1820-\\u1878]\\u180e)(?=[\\u1820-\\u1878])`, 'gu');
/**
 * Variation selectors where they pick a glyph, taken out with the joiners: an ideograph's (a
 * kanji's variant in a name), a mathematical symbol's or a Myanmar letter's standardized variant,
 * text or emoji presentation after a character that has both, and Mongolian's after a Mongolian letter.
 */
const SELECTOR_IN_WORD = new RegExp(
  [
    '[\\ufe00-\\ufe0d\\u{e0100}-\\u{e01ef}](?<=\\p{Ideographic}.)',
    '\\ufe00(?<=[\\p{Sm}\\u1000-\\u102a].)',
    '[\\ufe0e\\ufe0f](?<=\\p{Emoji}.)',
    '[\\u180b-\\u180d\\u180f](?<=[\\u1820-\\u1878\\u1880-\\u18aa].)',
  ].join('|'),
  'gu',
);
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

const GRAPHEMES = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * The first `n` characters at most (code points, as PostgreSQL's varchar(n) and left() count
 * them), ending between two graphemes: never half a surrogate pair, which a UTF-16 slice could end
 * on and PostgreSQL's JSON refused, nor a family emoji or a letter without its accent (a webhook's
 * preview showed both: an outside probe). Only a first grapheme longer than `n` is cut inside. To
 * tell where a grapheme ends, give a text of at least `n + 1` characters where there are more.
 */
export function firstChars(v: string, n: number): string {
  if (v.length <= n) return v;
  let end = 0;
  let count = 0;
  for (const { segment } of GRAPHEMES.segment(v)) {
    let points = 0;
    for (const _ of segment) points++;
    if (count + points > n) break;
    count += points;
    end += segment.length;
  }
  if (end > 0) return v.slice(0, end);
  for (count = 0; count < n && end < v.length; count++) end += (v.codePointAt(end) ?? 0) > 0xffff ? 2 : 1;
  return v.slice(0, end);
}
/** Letters that draw nothing: the Hangul fillers, the blank Braille pattern, a null notehead and Khitan's filler. */
const BLANK_LETTER = /[\u115f\u1160\u3164\uffa0\u2800\u{1d159}\u{16fe4}]/u;
/**
 * Invisible characters that are not format characters (default-ignorable marks, and unassigned
 * default-ignorable code points): the combining grapheme joiner, Khmer's inherent vowels, the
 * unassigned ones, variation selectors where SELECTOR_IN_WORD did not take them out, and
 * noncharacters (see VISIBLE).
 * `b\u034fob` showed as `bob` (an outside probe).
 */
const HIDDEN_MARK = /[\u034f\u17b4\u17b5\u2065\ufff0-\ufff8\u{e0000}-\u{e0fff}\ufe00-\ufe0f\u180b-\u180d\u180f\p{Noncharacter_Code_Point}]/u;
/**
 * A character that shows: not a space, mark, default-ignorable, blank letter or noncharacter (the
 * 66 code points never to be assigned, U+FFFF among them: a group named "\uFFFF" showed blank or
 * a box; an outside probe). Every emoji has one (its pictograph, regional indicator or keycap
 * base), so no emoji matching is needed here, and the scan stops at the first one (message text
 * is checked on every send). Unassigned code points in general still count: a newer Unicode's
 * emoji is unassigned to this runtime's tables.
 */
const VISIBLE = /[^\p{White_Space}\p{Cc}\p{Cf}\p{M}\p{Default_Ignorable_Code_Point}\p{Noncharacter_Code_Point}\u115f\u1160\u3164\uffa0\u2800]/u;

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
  return clean(v) || clean(v.replace(EMOJI, '').replace(JOINER_IN_WORD, '').replace(SELECTOR_IN_WORD, ''));
}

/**
 * A short single-line name (group name, project title): trimmed and composed (NFC: an é typed as
 * e and a combining accent is the é typed at once, so renaming one to the other renames nothing:
 * an outside probe had every member told "'Café' was renamed to 'Café'"), 1..max characters (code
 * points, as the column counts them), something visible among them.
 */
export function cleanName(value: string, field: string, max = 100): string {
  const v = typeof value === 'string' ? value.trim().normalize('NFC') : '';
  if (!v.length || [...v].length > max || !isSafeName(v)) {
    throw new BadUserInputError(`'${field}' must be 1 to ${max} characters on one line, something visible among them, without invisible or direction-changing characters.`, field);
  }
  return v;
}

/** Control characters (C0, DEL, C1) but tab, line feed and carriage return; NUL has its own answer. */
const CONTROL = /(?![\t\n\r\0])\p{Cc}/u;

/**
 * Message text: trimmed, at most `max` characters, line breaks, tabs and format characters but
 * no other control character, and something visible. Direction marks stay (mixed-script messages
 * need them). Null and empty mean no text.
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
  // Text, not terminal commands: no bell, escape sequence or other control character but tabs and line breaks.
  if (CONTROL.test(v)) throw new BadUserInputError(`${what} cannot contain control characters (tabs and line breaks are fine).`, field);
  if (!isWellFormed(v)) throw new BadUserInputError(`${what} cannot contain half of a surrogate pair.`, field);
  if (!hasVisibleText(v)) throw new BadUserInputError(`${what} must show something: it has only invisible characters.`, field);
  return v;
}

/**
 * A search string: trimmed and composed (as the names it finds are: see cleanName), at most 100
 * characters; empty means no filter, NULs taken out first (a search of NULs alone found every user
 * and no group); half a surrogate pair is refused, as searchMessages refuses it (no name holds one).
 */
export function cleanSearch(value: string | null | undefined, field = 'search'): string | null {
  if (value === null || value === undefined) return null;
  const v = value.replace(/\u0000/g, '').trim().normalize('NFC');
  if ([...v].length > 100) throw new BadUserInputError(`'${field}' must be at most 100 characters.`, field);
  if (!isWellFormed(v)) throw new BadUserInputError(`'${field}' cannot contain half of a surrogate pair.`, field);
  return v.length ? v : null;
}
