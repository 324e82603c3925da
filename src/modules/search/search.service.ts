import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError } from '../../shared/errors';
import { isWellFormed } from '../../shared/validation';
import { cursorSideOf, cursorTime, decodeCursor, pageRequest, toConnection, type ConnectionShape, type LazyCount, type PageArgs } from '../../shared/graphql/connection';
import { isoTime } from '../../shared/time';
import { toMessageType } from '../message/message.mapper';
import type { ConversationAccess, ConversationArgs } from '../conversation/conversation.access';
import { WHOLE_UP_TO, headlineText, searchRepository, type SearchQuery, type SearchRow, type SearchScope } from './search.repository';
import type { SearchHitType } from './search.types';

/** The longest query taken, in characters: a few words, never a pasted document. */
export const MAX_QUERY = 200;
/** Words of a query beyond these are not searched for. */
const MAX_WORDS = 12;
/** The word being typed (the last one, no space after it) matches as a prefix from this length on. */
const MIN_PREFIX = 3;

/**
 * A word: letters and digits, with the marks that go with them (a mark alone is none). Letters as
 * PostgreSQL's parser reads them, Unicode's Alphabetic: circled and squared letters too (`ⓗⓔⓛⓛⓞ`
 * is indexed as a word; left out of the query, the rest alone matched: a verification probe).
 */
const WORD = /[\p{Alphabetic}\p{N}][\p{Alphabetic}\p{M}\p{N}]*/gu;
const RANK = /^\d{1,3}\.\d{6}$/;

export interface SearchServiceDeps {
  /** The one access check for a conversation the client names (the same answers as history: NOT_FOUND, FORBIDDEN). */
  access: ConversationAccess;
}

/**
 * A client's query as a tsquery text (and its words, for the estimate of how common they are): every word must match, the last one (the word being typed)
 * as a prefix unless the query ends with a space. Words are quoted, so no operator a client types
 * means anything; what they hold is split and unaccented by the same configuration as the index.
 * @throws BadUserInputError for an empty query, one with no word in it, or one over MAX_QUERY characters.
 */
export function toSearchQuery(query: string): SearchQuery {
  if (typeof query !== 'string' || !query.trim()) throw new BadUserInputError('Search for at least one word.', 'query');
  // Characters as people count them (an emoji is one), not UTF-16 units.
  if (query.length > MAX_QUERY && [...query].length > MAX_QUERY) throw new BadUserInputError(`A search query has at most ${MAX_QUERY} characters.`, 'query');
  // As a message refuses it: such a query was a search for words no message can hold.
  if (!isWellFormed(query)) throw new BadUserInputError('A search query cannot contain half of a surrogate pair.', 'query');
  const all = query.normalize('NFC').match(WORD) ?? [];
  if (!all.length) throw new BadUserInputError('Search for at least one word (letters or digits).', 'query');
  // Every word must match: a query of more than MAX_WORDS is refused, not cut (its last words would be ignored).
  if (all.length > MAX_WORDS) throw new BadUserInputError(`A search query has at most ${MAX_WORDS} words.`, 'query');
  const words = all;
  // The last word is still being typed unless a space follows it.
  const typing = !/\s$/u.test(query);
  const prefix = words.map((w, i) => typing && i === words.length - 1 && [...w].length >= MIN_PREFIX);
  return { tsquery: words.map((w, i) => term(w, prefix[i])).join(' & '), words, prefix };
}

/**
 * One word of a query as a tsquery term. Greek's sigma is written ς at a word's end and σ elsewhere,
 * but the index lowercases a capital Σ to σ wherever it stands: `ΟΔΟΣ` is indexed `οδοσ` and a typed
 * `οδός` `οδος`, so a word ending in either is looked for in both spellings (each missed the other:
 * an outside probe).
 */
function term(word: string, prefix: boolean): string {
  const star = prefix ? ':*' : '';
  const lower = word.toLowerCase();
  if (!/[σς]$/u.test(lower)) return `'${word}'${star}`;
  const stem = lower.slice(0, -1);
  return `('${stem}σ'${star} | '${stem}ς'${star})`;
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escaped = (c: string): string => ESCAPES[c] ?? (c < '\u0007' ? ' ' : c);

/**
 * The headline as HTML: the message's text escaped, the matches (between \u0001 and \u0002) in
 * <mark>, its passages (split by \u0006) joined by ` … `. ts_headline cut it from the text with
 * its punctuation as spaces (see HEADLINE_TEXT): each passage is found there, in order, and every
 * character is written from the message itself at its place, its punctuation back. A word of more than
 * 2,047 bytes (a pasted data URL) is left out of a passage by PostgreSQL's parser: skipped in the
 * text too (else the passage was not found, and came out with its punctuation as spaces), and
 * written as `…`. A
 * passage is then given context where ts_headline gave it almost none, cut to PASSAGE_MAX
 * characters (see bounded), and `…` marks where the snippet begins after the message's start or
 * ends before its end.
 */
export function toSnippet(headline: string, content: string): string {
  const text = headlineText(content);
  const passages = headline.split('\u0006');
  const out: { written: string; last: number; cutEnd: boolean }[] = [];
  let from = 0;
  for (let i = 0; i < passages.length; i++) {
    const passage = passages[i];
    // The passage as runs of plain and marked text, written from the message.
    const runs: Run[] = [];
    let run: Run = { text: '', mark: false };
    const start = passageStart(text, passage.replace(/[\u0001\u0002]/g, ''), from);
    let at = start;
    for (let k = 0; k < passage.length; k++) {
      const c = passage[k];
      if (c === '\u0001' || c === '\u0002') {
        runs.push(run);
        run = { text: '', mark: c === '\u0001' };
      } else {
        if (at >= 0 && text[at] !== c) {
          // Something left out (a run of more than 2,047 bytes, which PostgreSQL's parser drops, and
          // maybe the space around it): the passage goes on further in the text, where what it has
          // next is found. Shown as cut, `…`, as a passage's ends are: left out silently, the snippet
          // read as the whole message and glued the words around it ("lolsee": an outside probe).
          const next = passageStart(text, passage.slice(k, k + 48).replace(/[\u0001\u0002]/g, ''), at);
          if (next > at) {
            // As written (punctuation is space in the text: 2,100 `-` are a run of spaces there).
            const left = content.slice(at, next);
            const spaced = /\s$/u.test(run.text || runs[runs.length - 1]?.text || ' ');
            // Only space: as space, the words around it apart ("lolsee"); else `…`, with the space around it.
            const put = !/\S/u.test(left)
              ? spaced || /\s/u.test(c) ? '' : left.includes('\n') ? '\n' : ' '
              : `${/^\s/u.test(left) && !spaced ? ' ' : ''}…${/\s$/u.test(left) && !/\s/u.test(c) ? ' ' : ''}`;
            // Outside any <mark>: a mark goes on after it.
            if (put && !run.mark) run.text += put;
            else if (put) {
              runs.push(run, { text: put, mark: false });
              run = { text: '', mark: true };
            }
            at = next;
          }
        }
        // Still apart (never seen): the rest of the passage as cut, its punctuation as spaces.
        if (at >= 0 && text[at] !== c) at = -1;
        run.text += at < 0 ? c : content[at++];
      }
    }
    runs.push(run);
    // Found where it lies in the message: context around a passage that has almost none (ts_headline
    // gave `<mark>word</mark>` alone between runs of one-letter words or symbols: an outside probe),
    // never reaching back into the passage before it.
    let [first, last] = [start, at];
    if (start >= 0 && at >= 0 && [...runs.map((r) => r.text).join('')].length < CONTEXT_MIN) {
      // Never from a word the index left out (it is `…`, as inside a passage): 60 letters of a
      // 3,000-letter run at the message's start or end were shown (an outside probe, 2 of 2).
      const [ahead, behind] = [graphemesOf(content.slice(afterUnindexed(text, from, start), start)), graphemesOf(content.slice(at, beforeUnindexed(text, at)))];
      const before = wordsFrom(ahead.slice(-BEFORE_MATCH), ahead.length > BEFORE_MATCH, 'start');
      const after = wordsFrom(behind.slice(0, PASSAGE_MAX), behind.length > PASSAGE_MAX, 'end');
      runs.unshift({ text: before, mark: false });
      runs.push({ text: after, mark: false });
      [first, last] = [start - before.length, at + after.length];
    }
    // A few characters left before the first passage or after the last (an emoji, a closing mark,
    // after however much space): written, not cut, their runs of space as one.
    if (i === 0 && first > 0 && isShort(content.slice(0, first))) {
      runs.unshift({ text: content.slice(0, first).replace(/\s+/gu, ' '), mark: false });
      first = 0;
    }
    if (i === passages.length - 1 && last >= 0 && last < content.length && isShort(content.slice(last))) {
      runs.push({ text: content.slice(last).replace(/\s+/gu, ' '), mark: false });
      last = content.length;
    }
    if (at >= 0) from = at;
    // Long runs of space (300 blanks before a final 👍) are one, as beside the snippet: they filled
    // the passage's 240 characters and left the 👍 out (an outside probe). A short message is whole,
    // counted as PostgreSQL counts it (code points: 70 emoji and a few words were squeezed, an outside probe).
    if (content.length > WHOLE_UP_TO && [...content].length > WHOLE_UP_TO) for (const r of runs) r.text = r.text.replace(/\s{3,}/gu, (w) => (w.includes('\n') ? '\n' : ' '));
    const { kept, cutStart, cutEnd } = bounded(runs.filter((r) => r.text));
    // Before the first passage and after the last: what the message has there (the joiner says it between them).
    const lead = i === 0 && (cutStart || (first >= 0 && holds(content.slice(0, first)))) ? '…' : '';
    const tail = i === passages.length - 1 && (cutEnd || (last >= 0 && holds(content.slice(last)))) ? '…' : '';
    const written = lead + kept.map((r) => (r.mark ? `<mark>${html(r.text)}</mark>` : html(r.text))).join('') + tail;
    // Two passages with nothing between them in the message are one: ` … ` said something was left
    // out there, and split a word (`it … 's`: an outside probe).
    const prev = out[out.length - 1];
    const touching = prev && !prev.cutEnd && !cutStart && prev.last >= 0 && first >= prev.last && !holds(content.slice(prev.last, first));
    if (prev && touching) {
      prev.written += html(content.slice(prev.last, first).replace(/\s+/gu, ' ')) + written;
      [prev.last, prev.cutEnd] = [last, cutEnd];
    } else out.push({ written, last, cutEnd });
  }
  // The joiner says the space on both its sides: a passage's own space there went twice (`z  …  T`,
  // context stopped at a word left out between them: an outside probe).
  const written = out.map((p) => p.written);
  for (let k = 1; k < written.length; k++) [written[k - 1], written[k]] = [written[k - 1].trimEnd(), written[k].trimStart()];
  return written.join(' … ');
}

const html = (text: string) => [...text].map(escaped).join('');

/** A word PostgreSQL's parser leaves out of the index and of a passage: a run of letters and digits of more than 2,047 bytes (one of 2,047 is indexed). */
const WORDS = /[\p{L}\p{N}\p{M}]+/gu;
const UNINDEXED_BYTES = 2048;
const unindexed = (word: string) => word.length * 3 >= UNINDEXED_BYTES && Buffer.byteLength(word) >= UNINDEXED_BYTES;

/** Where `text` from `from` to `to` goes on after the last word in it the index left out (`from`: none). */
function afterUnindexed(text: string, from: number, to: number): number {
  let after = from;
  for (const m of text.slice(from, to).matchAll(WORDS)) if (unindexed(m[0])) after = from + m.index + m[0].length;
  return after;
}

/** Where the first word from `from` on that the index left out begins (the text's end: none). */
function beforeUnindexed(text: string, from: number): number {
  for (const m of text.slice(from).matchAll(WORDS)) if (unindexed(m[0])) return from + m.index;
  return text.length;
}

const segmenter = new Intl.Segmenter(undefined, { granularity: 'grapheme' });
/** A text's characters as a reader counts them: a cut between two never splits an emoji, a flag or a letter from its accent. */
const graphemesOf = (text: string): string[] => Array.from(segmenter.segment(text), (g) => g.segment);

interface Run {
  text: string;
  mark: boolean;
}

/** A passage's most characters, those kept before its first match when it has more, and the fewest before it is given context. */
const PASSAGE_MAX = 240;
const BEFORE_MATCH = 60;
const CONTEXT_MIN = 40;
const SHORT_REST = 8;

/**
 * Characters (graphemes) taken from beside a passage, from a word's start (`start`) or to a word's
 * end: a word cut in two is left out, unless that would leave out more than WORD_CUT_MAX code points
 * (a run without spaces, emoji or a script written without them, is shown cut rather than not at all).
 */
function wordsFrom(chars: string[], cut: boolean, side: 'start' | 'end'): string {
  const text = chars.join('');
  if (!cut) return text;
  const at = side === 'start' ? text.search(/\s/) : text.search(/\s\S*$/);
  if (at < 0 || [...(side === 'start' ? text.slice(0, at) : text.slice(at + 1))].length > WORD_CUT_MAX) return text;
  return side === 'start' ? text.slice(at) : text.slice(0, at + 1);
}

const WORD_CUT_MAX = 20;

/** A stretch beside the snippet few enough to write: at most SHORT_REST characters but spaces. */
const isShort = (rest: string) => {
  const shown = rest.replace(/\s+/gu, '');
  // Most rests are long: no grapheme of them is counted (a grapheme is at most a few dozen code units).
  return shown.length <= SHORT_REST || (shown.length <= SHORT_REST * 64 && graphemesOf(shown).length <= SHORT_REST);
};

/** Whether a stretch of the message left out of its snippet holds anything at all (what is short was written: see isShort). */
const holds = (left: string) => /\S/u.test(left);

/**
 * A passage cut to PASSAGE_MAX characters (code points) around its first match. ts_headline's
 * passages count words, and a script written without spaces (Chinese, Japanese, Thai), or a long
 * URL, is a word a run: a 600-character message came back whole as one passage (an outside probe).
 */
function bounded(runs: Run[]): { kept: Run[]; cutStart: boolean; cutEnd: boolean } {
  const size = (g: string) => (g.length === 1 ? 1 : [...g].length);
  const total = runs.reduce((n, r) => n + [...r.text].length, 0);
  if (total <= PASSAGE_MAX) return { kept: runs, cutStart: false, cutEnd: false };
  const first = runs.findIndex((r) => r.mark);
  const before = first < 0 ? 0 : runs.slice(0, first).reduce((n, r) => n + [...r.text].length, 0);
  // Where the kept code points begin and end, counted over the whole passage; a grapheme is kept whole or not at all.
  const start = Math.max(0, Math.min(before - BEFORE_MATCH, total - PASSAGE_MAX));
  const end = start + PASSAGE_MAX;
  const kept: Run[] = [];
  let [pos, cutStart, cutEnd] = [0, false, false];
  for (const [i, r] of runs.entries()) {
    let text = '';
    // A match after the first is kept whole or left out whole: cut, half a word was marked (an
    // outside probe). The first is where the passage is (a run without spaces longer than a passage, cut).
    const whole = r.mark && i !== first ? [...r.text].length : 0;
    if (whole && (pos < start || pos + whole > end)) {
      if (pos < start) cutStart = true;
      else cutEnd = true;
      pos += whole;
      continue;
    }
    for (const g of graphemesOf(r.text)) {
      const n = size(g);
      if (pos >= start && pos + n <= end) text += g;
      else if (pos < start) cutStart = true;
      else cutEnd = true;
      pos += n;
    }
    if (text) kept.push({ text, mark: r.mark });
  }
  return { kept, cutStart, cutEnd };
}

/**
 * Where a passage begins in the text, from `from` on: found whole, else where the longest beginning
 * of it is (what comes before a word left out of it, whatever space is around that word).
 */
function passageStart(text: string, plain: string, from: number): number {
  const whole = text.indexOf(plain, from);
  if (whole >= 0) return whole;
  // Found is monotone in the length: the longest found beginning, by halves.
  let found = 0;
  let missing = plain.length;
  while (missing - found > 1) {
    const mid = (found + missing) >> 1;
    if (text.indexOf(plain.slice(0, mid), from) >= 0) found = mid;
    else missing = mid;
  }
  return found > 0 ? text.indexOf(plain.slice(0, found), from) : -1;
}

function decodeSearchCursor(cursor: string, field: 'after' | 'before'): { rank: string; at: Date; id: string } {
  const { k, id } = decodeCursor(cursor, field, undefined, 'search');
  const [rank, iso, ...rest] = k.split('|');
  if (rest.length || !RANK.test(rank)) throw new BadUserInputError(`Invalid cursor in '${field}'.`, field);
  return { rank, at: cursorTime(iso ?? '', field), id };
}

export class SearchService {
  private readonly access: ConversationAccess;

  constructor(deps: SearchServiceDeps) {
    this.access = deps.access;
  }

  /**
   * Messages the viewer may read now (membership at the time of the search; a project's private
   * messages only for their two users; never a deleted one), best match first among the newest
   * RANKED_MATCHES matches, then newest first; paged forward by keyset on (rank, createdAt, id).
   */
  async search(
    em: EntityManager,
    viewerId: string,
    args: PageArgs & { query: string; conversation?: ConversationArgs | null },
    given?: (name: keyof PageArgs) => boolean,
  ): Promise<ConnectionShape<SearchHitType, LazyCount>> {
    const query = toSearchQuery(args.query);
    const { limit, backward, cursor: encoded, cursorField } = pageRequest(args, { def: 20, forward: true, given });
    const cursor = encoded ? decodeSearchCursor(encoded, cursorField) : null;
    let scope: SearchScope = { kind: 'all', viewerId };
    if (args.conversation) {
      const conv = await this.access.resolve(em, viewerId, args.conversation);
      scope = { kind: 'one', viewerId, key: conv.key, project: conv.kind === 'project', privateWith: conv.privateWith };
    }
    // A page of none still reads one row: whether there is a next page (as every connection answers first: 0).
    const rows = await searchRepository.page(em, scope, query, cursor, limit, backward);
    return toConnection(rows, {
      limit,
      backward,
      hasCursor: !!cursor,
      cursorSide: cursorSideOf(cursor, { backward, ascending: false }, (at, back) => searchRepository.page(em, scope, query, at, 0, back)),
      totalCount: () => searchRepository.count(em, scope, query),
      key: (r: SearchRow) => ({ k: `${r.rank}|${isoTime(new Date(r.created_at).getTime())}`, id: r.id }),
      node: (r: SearchRow) => ({ message: toMessageType(r), snippet: toSnippet(r.headline, r.content ?? '') }),
      scope: 'search',
    });
  }
}
