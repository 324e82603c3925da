import type { Conversation } from '../conversation/conversation.access';

/**
 * Letters written without spaces between words (Han, kana, Hangul, Thai, Lao, Khmer, Myanmar),
 * where a particle or an honorific follows a name directly (`@bobさん`, `@bob님` and `これは@bobの`
 * mention bob): their own script's, and those they share with no script written with spaces (by
 * script extensions: the long-vowel mark `ー`, halfwidth voicing marks `ﾞ`, repeat marks `〱`);
 * Latin's `ʼ`, which Unicode also lists under Thai, is Latin's (an outside probe). Nor an emoji that
 * Unicode counts a letter (`ℹ️@bob` mentions bob, as `❤️@bob` does: a verification probe).
 */
const NO_SPACES = String.raw`[\p{sc=Han}\p{sc=Hiragana}\p{sc=Katakana}\p{sc=Hangul}\p{sc=Thai}\p{sc=Lao}\p{sc=Khmer}\p{sc=Myanmar}[[\p{scx=Han}\p{scx=Hiragana}\p{scx=Katakana}\p{scx=Hangul}\p{scx=Thai}\p{scx=Lao}\p{scx=Khmer}\p{scx=Myanmar}]--[\p{scx=Latin}\p{scx=Greek}\p{scx=Cyrillic}]]\p{Extended_Pictographic}]`;
/** What runs on into a name, after it or before its `@`: a letter or digit of any other script, or a name's own `_ . -`. */
const RUNS_ON = String.raw`[\p{L}\p{N}_.\-]--${NO_SPACES}`;
/**
 * A mark belongs to the character before it, and runs on as it does (`josé@bob` typed decomposed,
 * `@bob` and a tilde: no mention; `か` and its voicing mark typed apart, `❤️@bob`: a mention), a
 * variation selector too, and what draws nothing (a zero-width joiner or space, a soft hyphen)
 * stands for nothing: `x`, one of them and `@bob` read as `x@bob` (verification probes). By script
 * extensions a mark was its script's: a tilde, listed under Thai, stopped running on (an outside probe).
 */
const BEFORE = String.raw`(?<![${RUNS_ON}][\p{M}\p{DI}]*)`;
/** A keycap emoji (`1️⃣`, or in its text style with U+FE0E): its digit is the emoji's, and runs on into no name, before it or after. */
const KEYCAP = String.raw`[0-9#*][\ufe0e\ufe0f]?\u20e3`;
/**
 * After the name, what draws nothing looked through (a variation selector on its last letter too:
 * `@bob` and U+FE0F draws as `@bob`, an outside probe), to a mark that draws (of its last letter),
 * or what runs on but a keycap.
 */
const AFTER = String.raw`(?!\p{DI}*(?:[\p{M}--\p{DI}]|(?!${KEYCAP})[${RUNS_ON}]))`;
/**
 * A sentence's final dots, what draws nothing among them looked through (`@bob`, a zero-width space
 * and `.` named no one: a verification probe). Taken whole, never given back one by one: AFTER looks
 * through a run of such characters from each place it is tried (an atomic group: a lookahead's
 * capture, matched again).
 */
const FINAL_DOTS = String.raw`(?=((?:\.|\p{DI})*))\2`;
/** A name's characters, a keycap's digit not among them (`@bob1️⃣` names bob). */
const NAME = String.raw`(?:[A-Za-z_.\-]|[0-9](?![\ufe0e\ufe0f]?\u20e3))`;
/**
 * A mention (`@`, or the fullwidth `＠` of an East Asian keyboard) and what may stand around it (see
 * mentionNames). Looked behind only at an `@`: tried at every character, BEFORE read back over a
 * run of marks from each, and `@` and 3,999 accents took 760 ms (mentions.test keeps it linear).
 */
const MENTION = new RegExp(String.raw`(?=[@＠])(?:(?<=${KEYCAP}[\p{M}\p{DI}]*)|${BEFORE})[@＠](${NAME}{3,32})${FINAL_DOTS}${AFTER}`, 'gv');

/**
 * `@name` tokens of a text, lower-cased: usernames are letters, digits, _ . - (3 to 32); a
 * sentence's final dots are not part of one (a dash is: `@ann-` names `ann-`, never `ann`); a
 * longer run of such characters names no one (not its first 32). A letter, digit or mark that
 * runs on (RUNS_ON) does so as an ASCII one does, after the name (`@annë` names no one, as `@annx`)
 * or before the `@` (`josé@ann`, as `jose@ann`, is an address): an outside probe had both mention
 * ann. Read composed (NFC), as names are kept: a kana and its voicing mark typed apart is one kana.
 */
export function mentionNames(text: string | null | undefined): string[] {
  if (!text || (!text.includes('@') && !text.includes('＠'))) return [];
  const out = new Set<string>();
  for (const m of text.normalize('NFC').matchAll(MENTION)) out.add(m[1].replace(/\.+$/, '').toLowerCase());
  return [...out];
}

/** What a text asks to mention: named users, and in a group `@here` (members online now) or `@all`. */
export interface MentionAsk {
  names: string[];
  here: boolean;
  all: boolean;
}

/** Null for a text that mentions no one (the plain send, which pays nothing for mentions). */
export function mentionAsk(text: string | null | undefined): MentionAsk | null {
  const names = mentionNames(text);
  if (!names.length) return null;
  return { names: names.filter((n) => n !== 'here' && n !== 'all'), here: names.includes('here'), all: names.includes('all') };
}

/**
 * Who may mention everyone of a conversation with `@all`: in a group, its owner and admins (the
 * lobby's admins too), asked of the group's roles only when the text says `@all`. The one place
 * this rule lives; elsewhere `@all` stays text.
 */
export async function mayMentionAll(
  conv: Pick<Conversation, 'kind' | 'ownerId' | 'groupId'>,
  senderId: string,
  moderates?: (groupId: string, userId: string) => Promise<boolean>,
): Promise<boolean> {
  if (conv.kind !== 'group') return false;
  return conv.ownerId === senderId || (!!moderates && (await moderates(conv.groupId!, senderId)));
}
