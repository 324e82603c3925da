import type { EntityManager } from '@mikro-orm/postgresql';
import { blockedBy } from '../safety/block.repository';
import { limitLiteral, pgTextArray, prepared, type Sql } from '../../shared/sql';
import { SELECT, type MessageRow } from '../message/message.repository';
import { SEARCH_PUNCTUATION as PUNCTUATION, searchVector } from '../message/message.entity';

/** A search hit: the message as history reads it, its rank and its snippet (matches between \u0001 and \u0002). */
export interface SearchRow extends MessageRow {
  /** ts_rank rounded to 6 decimals, as text: exact in a cursor. */
  rank: string;
  headline: string;
}

/** Where to search: every conversation the viewer may read now, or one of them. */
export type SearchScope =
  | { kind: 'all'; viewerId: string }
  /** One conversation; in a project, `privateWith` narrows to one private thread. */
  | { kind: 'one'; viewerId: string; key: string; project: boolean; privateWith: string | null };

/** A query as the service built it: the tsquery text, and its words (the prefixes marked) for the estimate. */
export interface SearchQuery {
  tsquery: string;
  words: string[];
  prefix: boolean[];
}

/**
 * How many of the newest matches are ranked: ranking re-reads each message's words, so a word
 * found in most messages (a "the") would otherwise cost a pass over all of them.
 */
export const RANKED_MATCHES = 200;
/**
 * A query whose every word is in more than this share of messages (PostgreSQL's statistics of the
 * index say so) is looked for among the newest messages of each conversation (COMMON_WINDOW of them
 * in all, at least 10 each) instead of through the index: the index would list most of the table.
 */
export const COMMON_SHARE = 0.05;
/**
 * Up to this share, the messages the index finds are few enough to check their conversation as
 * they are read; beyond it, the keyset index lists the conversations' messages too and the two
 * lists are intersected before any is read.
 */
export const KEYS_BY_INDEX_SHARE = 0.005;
export const COMMON_WINDOW = 600;

/**
 * The keys of the conversations the viewer may read now: their groups, their projects, their
 * direct conversations with current friends (as history allows them). UUIDs order as their text
 * does (directKey), and no collation is named: the keys must compare as the index does.
 */
const VISIBLE_KEYS = `array(
  select 'g:' || gm.group_id::text from group_members gm where gm.user_id = ?
  union all select 'p:' || pm.project_id::text from project_members pm where pm.user_id = ?
  union all select 'd:' || least(f.user_a_id, f.user_b_id)::text || ':' || greatest(f.user_a_id, f.user_b_id)::text
    from friendships f where f.user_a_id = ? or f.user_b_id = ?)`;

/** The conversations searched (an array of keys), and which of their messages the viewer may see (on `m`): none of a user they block. */
function visible(scope: SearchScope): { keys: Sql; rows: Sql } {
  const { keys, rows } = readable(scope);
  return { keys, rows: { text: `${rows.text} and not ${blockedBy('?', 'm.sender_id')}`, params: [...rows.params, scope.viewerId] } };
}

function readable(scope: SearchScope): { keys: Sql; rows: Sql } {
  const v = scope.viewerId;
  if (scope.kind === 'all') {
    return {
      keys: { text: VISIBLE_KEYS, params: [v, v, v, v] },
      rows: { text: '(m.project_id is null or m.recipient_id is null or m.sender_id = ? or m.recipient_id = ?)', params: [v, v] },
    };
  }
  const keys = { text: 'array[?]::text[]', params: [scope.key] };
  if (!scope.project) return { keys, rows: { text: 'true', params: [] } };
  if (scope.privateWith) {
    return { keys, rows: { text: '((m.sender_id = ? and m.recipient_id = ?) or (m.sender_id = ? and m.recipient_id = ?))', params: [v, scope.privateWith, scope.privateWith, v] } };
  }
  return { keys, rows: { text: '(m.recipient_id is null or m.sender_id = ? or m.recipient_id = ?)', params: [v, v] } };
}

// The index's expression (messages_search_runs), written the same way so that it is used.
const VECTOR = searchVector('m.content');
/** A message this long at most is its own snippet (about the 24 words a fragment takes). */
export const WHOLE_UP_TO = 160;

/** Characters a headline's text (HEADLINE_TEXT) has as spaces: the markers below, and every punctuation mark the index reads as one. */
const HEADLINE_SPACES = '\u0001\u0002\u0003\u0004\u0005\u0006' + PUNCTUATION;

/**
 * The text a headline is cut from: the message's text as the index reads it, each punctuation mark
 * a space (so `3.14`, `report.pdf` or `a@b.org` are words the query's words find: whole, their
 * matches went unmarked and a long text's passages missed them), and chr(1) to chr(6) spaces too, so
 * that those mean only what ts_headline puts: a match between chr(1) and chr(2), passages joined by
 * chr(6). One character for one, so `headlineText` gives the same text and the service puts each
 * punctuation mark back from the message by its place (see toSnippet).
 */
const HEADLINE_TEXT = `translate(t.content, chr(1) || chr(2) || chr(3) || chr(4) || chr(5) || chr(6) || '${PUNCTUATION.replace(/'/g, "''")}', '${' '.repeat(HEADLINE_SPACES.length)}')`;

const AS_SPACES = new RegExp(`[${HEADLINE_SPACES.replace(/[\\\]^-]/g, '\\$&')}]`, 'g');

/** What HEADLINE_TEXT makes of `content`, in JavaScript. */
export const headlineText = (content: string): string => content.replace(AS_SPACES, ' ');

// A short message whole (fragments drop one-letter words at their ends: "1<2 > 0" lost its digits), a long one in fragments.
const HEADLINE_OPTIONS = `'StartSel=' || chr(1) || ', StopSel=' || chr(2) || case when length(t.content) <= ${WHOLE_UP_TO} then ', HighlightAll=true'
  else ', MaxWords=24, MinWords=10, ShortWord=1, MaxFragments=2, FragmentDelimiter=' || chr(6) end`;

/**
 * The statistics list only the common words: a prefix also begins rare ones they leave out (3 letters
 * began words in 7% of the bench's messages where the listed ones made 2.4%), so its share counts
 * thrice in `cost`, which picks how the index is read. In `share`, which decides whether the query
 * is one of common words (COMMON_SHARE, and so what is found), only a prefix of 3 letters counts
 * thrice and one of 4 twice: longer ones begin few unlisted words, and tripled, a word in 2% of
 * messages typed without a space after it ("orang", "orange") found 4 of its 400 matches (an
 * outside probe). A 3-letter prefix of a common word still looks among the newest messages: read
 * through the index, such a prefix took p99 93 ms among a million messages (bench:search).
 */
const PREFIX_FACTOR = 3;
/** The factor of a prefix's share in `share`, by its length (see PREFIX_FACTOR). */
const SHARE_FACTOR = (lexeme: string) => `case when not w.prefix then 1 when char_length(${lexeme}) <= 3 then 3 when char_length(${lexeme}) = 4 then 2 else 1 end`;

/**
 * The share of messages the query matches at most, as ANALYZE saw the index: its rarest word's
 * (a prefix: all the common words it begins, a short one's counted more: see PREFIX_FACTOR);
 * `cost`, the same with each prefix's share tripled.
 * A word not among the common ones counts as rare.
 */
const ESTIMATE = `words as materialized (
  select array_to_string(tsvector_to_array(to_tsvector('parley_search', w.word)), ' ') as lexeme, w.prefix
  from unnest(?::text[], ?::boolean[]) as w(word, prefix)
), stats as materialized (
  select unnest(most_common_elems::text::text[]) as e, unnest(most_common_elem_freqs) as f
  from pg_stats where schemaname = current_schema() and tablename = 'messages_search_runs'
), est as materialized (
  select coalesce(min(w.share * ${SHARE_FACTOR('w.lexeme')}), 0) as share, coalesce(min(w.share * case when w.prefix then ${PREFIX_FACTOR} else 1 end), 0) as cost from (
    select (select coalesce(sum(s.f), 0) from stats s
            where case when w.prefix then starts_with(s.e, w.lexeme) else s.e = w.lexeme end) as share, w.prefix, w.lexeme
    from words w
  ) w
)`;

/**
 * The RANKED_MATCHES newest matches, when `when` holds (a one-time filter). `key` is the column as
 * compared with the keys: `m.conversation_key` lets the planner use the keyset index for it, an
 * expression of it does not.
 */
function found(when: string, key: string, rows: string): string {
  return `(select m.id, m.created_at, m.content from messages m
    where ${when} and ${key} = any((select keys from k)::text[])
      and ${VECTOR} @@ (select q from q) and m.content is not null and m.deleted_at is null and ${rows}
    order by m.created_at desc, m.id desc limit ${RANKED_MATCHES})`;
}

/**
 * The query, or null (no match) when one of its words holds a letter or digit PostgreSQL's parser
 * reads as space (tokid 12: a letter newer than its Unicode tables, as Kawi's; a superscript digit):
 * the index never holds it, and to_tsquery dropped it, so the rest alone matched where every word
 * must (outside probes: `W 𑼄` found every W, and `W𑼄def` found `W def`). Params: the words with
 * their marks left out (a mark the parser reads as space, as Javanese's virama, splits the word in
 * the message as in the query, which still finds it: a verification probe), then the tsquery text.
 */
/** TSQUERY's first param: the words without their marks. */
const lettersOf = (words: string[]) => pgTextArray(words.map((w) => w.replace(/\p{M}/gu, '')));
const TSQUERY = `(select case when not exists (select 1 from unnest(?::text[]) w cross join lateral ts_parse('default', w) t where t.tokid = 12)
  then to_tsquery('parley_search', ?) end)`;

export const searchRepository = {
  /**
   * One page of hits, best match first (rank, then newest), among the RANKED_MATCHES newest
   * matches (for a query of common words only: among the newest messages, see COMMON_SHARE).
   */
  /** A page of the ranked matches after `cursor`, or before it when `backward` (fetched nearest first). */
  async page(em: EntityManager, scope: SearchScope, query: SearchQuery, cursor: { rank: string; at: Date; id: string } | null, limit: number, backward = false): Promise<SearchRow[]> {
    const { keys, rows } = visible(scope);
    const [op, dir] = backward ? ['>', 'asc'] : ['<', 'desc'];
    const after = cursor ? `where (c.rank, c.created_at, c.id) ${op} (?::numeric, ?::timestamptz, ?::uuid)` : '';
    // One statement, three ways (rare, middling, common words): the branches whose condition is false never run (one-time filters).
    return prepared<SearchRow>(
      em,
      `with q as materialized (select ${TSQUERY} as q),
       k as materialized (select ${keys.text} as keys),
       ${ESTIMATE},
       found as (
         ${found(`(select cost from est) <= ${KEYS_BY_INDEX_SHARE}`, `(m.conversation_key || '')`, rows.text)}
         union all
         ${found(`(select cost from est) > ${KEYS_BY_INDEX_SHARE} and (select share from est) <= ${COMMON_SHARE}`, 'm.conversation_key', rows.text)}
       ), recent as (
         select m.id, m.created_at, m.content from unnest((select keys from k)) as ck(key) cross join lateral (
           select m.id, m.created_at, m.content from messages m
           where m.conversation_key = ck.key and m.content is not null and m.deleted_at is null and ${rows.text}
           order by m.created_at desc, m.id desc
           limit greatest(10, ${COMMON_WINDOW} / greatest(1, cardinality((select keys from k))))
         ) m
         where (select share from est) > ${COMMON_SHARE} and ${VECTOR} @@ (select q from q)
       ), c as (
         select m.id, m.created_at, round(ts_rank(${VECTOR}, (select q from q), 1)::numeric, 6) as rank
         from (select * from found union all select * from recent order by created_at desc, id desc limit ${RANKED_MATCHES}) m
       ), p as (
         select c.* from c ${after} order by c.rank ${dir}, c.created_at ${dir}, c.id ${dir} limit ${limitLiteral(limit + 1)}
       )
       select p.rank::text as rank, ts_headline('parley_search', ${HEADLINE_TEXT}, (select q from q), ${HEADLINE_OPTIONS}) as headline, t.*
       from p cross join lateral (${SELECT} where m.id = p.id) t
       order by p.rank ${dir}, p.created_at ${dir}, p.id ${dir}`,
      [
        lettersOf(query.words),
        query.tsquery,
        ...keys.params,
        pgTextArray(query.words),
        `{${query.prefix.map((p) => (p ? 't' : 'f')).join(',')}}`,
        ...rows.params,
        ...rows.params,
        ...rows.params,
        ...(cursor ? [cursor.rank, cursor.at, cursor.id] : []),
      ],
    );
  },

  /** Every visible match (not only the ranked ones). */
  async count(em: EntityManager, scope: SearchScope, query: SearchQuery): Promise<number> {
    const { keys, rows } = visible(scope);
    const [row] = await em.execute(
      `select count(*)::int as n from messages m where ${VECTOR} @@ ${TSQUERY} and m.content is not null and m.deleted_at is null
         and m.conversation_key = any(${keys.text}) and ${rows.text}`,
      [lettersOf(query.words), query.tsquery, ...keys.params, ...rows.params],
    );
    return row.n;
  },
};
