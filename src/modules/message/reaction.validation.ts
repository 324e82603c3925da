import { BadUserInputError } from '../../shared/errors';

/** Different emoji on one message (Message.reactions' length, as GRAPHQL_MAX_ITEMS counts it). */
export const MAX_REACTION_KINDS = 20;

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
/**
 * One pictograph: with a skin tone only if it takes one (👍🏽; ❤🏽 is no emoji a picker offers, and
 * would count apart from ❤️), U+FE0F after either, or between the two (☝️🏽, as some keyboards
 * spell a text-default one: an outside probe). An assigned one: Extended_Pictographic also covers
 * the blocks' reserved code points (U+1FAFF, U+1FC00-1FFFD), which show as a box, and one assigned
 * later as an emoji would count apart from its stored spelling (an outside probe). This runtime's
 * tables are Unicode's (process.versions.unicode, 17.0 on Node 20.20).
 */
const PICTOGRAPH = String.raw`(?:\p{Emoji_Modifier_Base}\ufe0f?\p{Emoji_Modifier}\ufe0f?|(?!\p{Cn})\p{Extended_Pictographic}\ufe0f?)`;
/**
 * Pictographs (see PICTOGRAPH, joined by ZWJ into sequences), flags (a pair of
 * regional indicators, or a subdivision's tags) and keycaps (a digit, # or * with U+20E3): what a
 * reaction picker offers. A lone indicator or keycap mark is a grapheme too, and no emoji; so is
 * an emoji followed by a mark, a joiner or a tag that shows nothing (it would look like the emoji
 * and count apart from it).
 */
const EMOJI = new RegExp(String.raw`^(?:\p{Regional_Indicator}{2}|[0-9#*]\ufe0f?\u20e3|\u{1F3F4}[\u{E0020}-\u{E007E}]+\u{E007F}|${PICTOGRAPH}(?:\u200d${PICTOGRAPH})*)$`, 'u');
/**
 * The flags a picker offers (Unicode's recommended emoji, 16.0): a pair of regional indicators
 * spelling one of these regions, or England, Scotland or Wales in tags. Any other pair shows as
 * two letters, and any other tag run as a black flag that counts apart from 🏴 and may carry
 * hidden text (an outside probe: 🏴 with tags spelling a phone number, accepted).
 */
const REGIONS = new Set(
  (
    'AC AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR ' +
    'BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CP CQ CR CU CV CW CX CY CZ DE DG DJ DK DM ' +
    'DO DZ EA EC EE EG EH ER ES ET EU FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS ' +
    'GT GU GW GY HK HM HN HR HT HU IC ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP ' +
    'KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT ' +
    'MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW ' +
    'PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TA TC TD TF ' +
    'TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM UN US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ' +
    'ZA ZM ZW'
  ).split(' '),
);
const SUBDIVISIONS = new Set(['gbeng', 'gbsct', 'gbwls']);
const FLAG_PAIR = /^\p{Regional_Indicator}{2}$/u;
const SUBDIVISION_FLAG = /^\u{1F3F4}[\u{E0020}-\u{E007E}]+\u{E007F}$/u;
const spelled = (v: string, base: number) => String.fromCharCode(...[...v].map((c) => c.codePointAt(0)! - base));

/** Whether a flag-shaped value is one a picker offers (anything else passes: EMOJI judged it). */
function offered(v: string): boolean {
  if (FLAG_PAIR.test(v)) return REGIONS.has(spelled(v, 0x1f1e6 - 65));
  if (SUBDIVISION_FLAG.test(v)) return SUBDIVISIONS.has(spelled([...v].slice(1, -1).join(''), 0xe0000));
  return true;
}

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
  // Removing takes any flag an earlier release took (as stored).
  const emoji = EMOJI.test(v) && (removing || offered(v));
  if (count !== 1 || Buffer.byteLength(v) > 64 || !(emoji || (removing && STORED_BEFORE.test(v)))) throw new BadUserInputError('A reaction is one emoji.', 'emoji');
  return emoji ? canonical(v) : v;
}
