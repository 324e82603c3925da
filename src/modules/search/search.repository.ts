import type { EntityManager } from '@mikro-orm/postgresql';
import { limitLiteral, prepared, type Sql } from '../../shared/sql';
import { SELECT, type MessageRow } from '../message/message.repository';

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

/**
 * How many of the newest matches are ranked: ranking re-reads each message's words, so a word
 * found in most messages (a "the") would otherwise cost a pass over all of them.
 */
export const RANKED_MATCHES = 300;

/**
 * The keys of the conversations the viewer may read now: their groups, their projects, their
 * direct conversations with current friends (as history allows them).
 */
const VISIBLE_KEYS = `array(
  select 'g:' || gm.group_id::text from group_members gm where gm.user_id = ?
  union all select 'p:' || pm.project_id::text from project_members pm where pm.user_id = ?
  union all select 'd:' || least(f.user_a_id::text collate "C", f.user_b_id::text collate "C") || ':' || greatest(f.user_a_id::text collate "C", f.user_b_id::text collate "C")
    from friendships f where f.user_a_id = ? or f.user_b_id = ?)`;

/** The matches the viewer may see: in scope, not deleted, a project's private ones only to their two users. */
function visible(scope: SearchScope): Sql {
  if (scope.kind === 'all') {
    const v = scope.viewerId;
    return {
      text: `m.conversation_key = any(${VISIBLE_KEYS}) and (m.project_id is null or m.recipient_id is null or m.sender_id = ? or m.recipient_id = ?)`,
      params: [v, v, v, v, v, v],
    };
  }
  const v = scope.viewerId;
  if (!scope.project) return { text: 'm.conversation_key = ?', params: [scope.key] };
  if (scope.privateWith) {
    return {
      text: 'm.conversation_key = ? and ((m.sender_id = ? and m.recipient_id = ?) or (m.sender_id = ? and m.recipient_id = ?))',
      params: [scope.key, v, scope.privateWith, scope.privateWith, v],
    };
  }
  return { text: 'm.conversation_key = ? and (m.recipient_id is null or m.sender_id = ? or m.recipient_id = ?)', params: [scope.key, v, v] };
}

// The index's expression (see Migration20261124070000_SearchAndPins), written the same way so it is used.
const VECTOR = `to_tsvector('parley_search'::regconfig, m.content)`;
// Matches between chr(1) and chr(2), which no stored message holds: the service escapes the text, then marks them.
const HEADLINE_OPTIONS = `'StartSel=' || chr(1) || ', StopSel=' || chr(2) || ', MaxWords=24, MinWords=10, ShortWord=1, MaxFragments=2, FragmentDelimiter=" … "'`;

export const searchRepository = {
  /**
   * One page of hits, best match first (rank, then newest), among the RANKED_MATCHES newest
   * matches. `query` is a tsquery text built by the service (quoted words, `:*` on a prefix).
   */
  async page(em: EntityManager, scope: SearchScope, query: string, cursor: { rank: string; at: Date; id: string } | null, limit: number): Promise<SearchRow[]> {
    const where = visible(scope);
    const after = cursor ? 'where (c.rank, c.created_at, c.id) < (?::numeric, ?::timestamptz, ?::uuid)' : '';
    return prepared<SearchRow>(
      em,
      `with q as materialized (select to_tsquery('parley_search', ?) as q),
       c as (
         select m.id, m.created_at, round(ts_rank(${VECTOR}, q.q, 1)::numeric, 6) as rank
         from (
           select m.id, m.created_at, m.content from messages m cross join q
           where ${VECTOR} @@ q.q and m.content is not null and m.deleted_at is null and ${where.text}
           order by m.created_at desc, m.id desc limit ${RANKED_MATCHES}
         ) m cross join q
       ), p as (
         select c.* from c ${after} order by c.rank desc, c.created_at desc, c.id desc limit ${limitLiteral(limit + 1)}
       )
       select p.rank::text as rank, ts_headline('parley_search', t.content, (select q from q), ${HEADLINE_OPTIONS}) as headline, t.*
       from p cross join lateral (${SELECT} where m.id = p.id) t
       order by p.rank desc, p.created_at desc, p.id desc`,
      [query, ...where.params, ...(cursor ? [cursor.rank, cursor.at, cursor.id] : [])],
    );
  },

  /** Every visible match (not only the ranked ones). */
  async count(em: EntityManager, scope: SearchScope, query: string): Promise<number> {
    const where = visible(scope);
    const [row] = await em.execute(
      `select count(*)::int as n from messages m where ${VECTOR} @@ to_tsquery('parley_search', ?) and m.content is not null and m.deleted_at is null and ${where.text}`,
      [query, ...where.params],
    );
    return row.n;
  },
};
