import { raw, type EntityManager } from '@mikro-orm/postgresql';
import { pgArray, pgTextArray, prepared } from '../../shared/sql';
import { User } from './user.entity';
import { DELETED_DISPLAY_NAME, SYSTEM_USER } from './user.mapper';

/** Escapes LIKE wildcards so a search for "a_b" means exactly that. */
export function likePattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, '\\$&')}%`;
}

/**
 * A name search's test of `column`, and its parameter: as a reader types a name, accents, case, a
 * final sigma and Arabic or Hebrew vowel marks aside (parley_fold, served by trigram indexes:
 * FoldedNameSearch). The search is folded before its wildcards are escaped: folded after, a
 * fullwidth ％ or ＿ became a wildcard and ＼ an escape (an outside probe). One or two characters,
 * which no trigram serves and which would fold every name read, match with `ilike` (case aside), as
 * does a search of marks alone, which folds to nothing and so matched every name (an outside probe).
 */
export function nameMatch(column: string, search: string): { sql: string; param: string } {
  if ([...search].length < 3 || !/[^\p{M}]/u.test(search.normalize('NFD'))) return { sql: `${column} ilike ?`, param: likePattern(search) };
  return { sql: `parley_fold(${column}) like '%' || replace(replace(replace(parley_fold(?), '\\', '\\\\'), '%', '\\%'), '_', '\\_') || '%'`, param: search };
}

/** A user's public columns as SQL returns them. */
export interface ProfileRow {
  id: string;
  username: string;
  display_name: string | null;
  created_at: Date;
  last_seen_at: Date | null;
}

const RESERVED_USERNAMES = new Set([SYSTEM_USER.username, 'all', 'here']);
/** A deleted account's placeholder name begins so (`deleted-` and its id): no live account may pass for one. */
const DELETED_PREFIX = 'deleted-';
/** A deleted account's username: `deleted-` and its id. */
export const deletedUsername = (id: string): string => `${DELETED_PREFIX}${id.replace(/-/g, '')}`;

export const userRepository = {
  async findByUsername(em: EntityManager, username: string, withPassword = false): Promise<User | null> {
    const rows: { id: string }[] = await em.execute('select id from users where lower(username) = lower(?) and deleted_at is null limit 1', [username]);
    if (!rows.length) return null;
    return em.findOne(User, { id: rows[0].id }, withPassword ? { populate: ['passwordHash'] } : {});
  },

  /** Locks the account's row against a deletion until the transaction ends; false when it is deleted (or gone). */
  async lockActive(em: EntityManager, id: string): Promise<boolean> {
    return (await em.execute('select 1 from users where id = ? and deleted_at is null for share', [id])).length > 0;
  },

  /**
   * Locks an account that is not deleted for a change of its profile or for its deletion: false
   * when it is deleted (a second deletion at once finds it so, and its session gone). Logins and
   * adds under way (lockActive, FOR SHARE) finish first, or wait. NO KEY UPDATE, as the deletion's
   * own update takes (the row stays, anonymized; its key does not change): the foreign-key checks
   * of others' writes naming the user (a message's sender, an inbox entry's recipient) take KEY
   * SHARE, which this lets through, so none of them waits on the deletion while holding what the
   * deletion waits for next.
   */
  async lockForProfile(em: EntityManager, id: string): Promise<boolean> {
    return (await em.execute('select 1 from users where id = ? and deleted_at is null for no key update', [id])).length > 0;
  },

  /** A user by id, the password hash too when asked; throws when there is no such row. */
  async account(em: EntityManager, id: string, withPassword = false): Promise<User> {
    return em.findOneOrFail(User, { id }, withPassword ? { populate: ['passwordHash'] } : {});
  },

  async insert(em: EntityManager, u: { username: string; displayName: string | null; passwordHash: string }): Promise<User> {
    const user = em.create(User, u);
    await em.flush();
    return user;
  },

  /** Account deletion: the row stays as an anonymous placeholder, so that past messages keep a sender. */
  async anonymize(em: EntityManager, id: string): Promise<void> {
    // No lastSeenAt either: a placeholder tells no one when its account was last active.
    await em.nativeUpdate(User, { id }, { username: deletedUsername(id), displayName: DELETED_DISPLAY_NAME, passwordHash: '!', lastSeenAt: null, deletedAt: new Date() });
  },

  /**
   * Held by an account, deleted ones included, or reserved: the system user's (no account may pass
   * for the lobby's owner), `all` and `here`, which a mention reads as @all and @here, a deleted
   * account's placeholder (any name beginning `deleted-`), and a privileged name its holder gave up
   * (see retire).
   */
  async usernameTaken(em: EntityManager, username: string): Promise<boolean> {
    const lower = username.toLowerCase();
    if (RESERVED_USERNAMES.has(lower) || lower.startsWith(DELETED_PREFIX)) return true;
    const rows = await em.execute(
      'select 1 from users where lower(username) = lower(?) union all select 1 from retired_usernames where username = lower(?) limit 1',
      [username, username],
    );
    return rows.length > 0;
  },

  /** Of `names` (lower-cased), those an account holds, and those retired. */
  async privilegedHolders(em: EntityManager, names: readonly string[]): Promise<{ name: string; retired: boolean }[]> {
    return em.execute(
      `select lower(username) as name, false as retired from users where lower(username) = any(?::text[]) and deleted_at is null
       union all select username, true from retired_usernames where username = any(?::text[])`,
      [pgTextArray(names), pgTextArray(names)],
    );
  },

  /** A name LOBBY_ADMINS or MODERATORS gave rights to, given up by its holder: no one takes it again. */
  async retire(em: EntityManager, username: string): Promise<void> {
    await em.execute('insert into retired_usernames (username) values (lower(?)) on conflict do nothing', [username]);
  },

  /** An account that is not deleted. */
  async activeById(em: EntityManager, id: string): Promise<User | null> {
    return em.findOne(User, { id, deletedAt: null });
  },

  /** The public profile of an account that is not deleted (what a conversation's title needs). */
  async activeProfile(em: EntityManager, id: string) {
    return em.findOne(User, { id, deletedAt: null }, { fields: ['id', 'username', 'displayName'] });
  },

  /** Anyone's public profile, deleted placeholders too (they still sign past messages); throws when there is no such row. */
  async profile(em: EntityManager, id: string) {
    return em.findOneOrFail(User, { id }, { fields: ['id', 'username', 'displayName', 'createdAt'] });
  },

  /**
   * Public profiles by id, deleted placeholders too, in no particular order: what the user loader
   * answers `me`, `sender` and friends with. Plain rows, not entities: the ORM's find, hydration
   * and identity map were most of the time of a `{ me { id } }`. The ids are a subquery's value,
   * unseen by the planner (see unnestUnseen): read, every custom plan cost below the generic one.
   */
  async profiles(em: EntityManager, ids: readonly string[]): Promise<ProfileRow[]> {
    return ids.length ? prepared(em, 'select id, username, display_name, created_at, last_seen_at from users where id = any((select ?::uuid[])::uuid[])', [pgArray(ids)]) : [];
  },

  /** Accounts by id, by username: those not deleted, or with `deleted` their placeholders too. */
  async byIdsByUsername(em: EntityManager, ids: readonly string[], opts: { deleted?: boolean } = {}): Promise<User[]> {
    // As `users` pages them, whatever the case: by username alone `Zed` came before `adam` (an outside probe).
    return em.find(User, opts.deleted ? { id: { $in: [...ids] } } : { id: { $in: [...ids] }, deletedAt: null }, { orderBy: { [raw('lower(username)')]: 'asc', id: 'asc' } });
  },

  /** Users (not deleted) ordered by lower(username), id, after a keyset position. */
  /** A page of accounts by (lower(username), id): after `from`, or before it when `backward` (fetched nearest first). */
  async search(em: EntityManager, opts: { search: string | null; from: { k: string; id: string } | null; backward: boolean; limit: number }): Promise<{ rows: User[]; total: number }> {
    const where: string[] = ['deleted_at is null'];
    const params: unknown[] = [];
    if (opts.search) {
      const [a, b] = [nameMatch('username', opts.search), nameMatch('display_name', opts.search)];
      where.push(`(${a.sql} or ${b.sql})`);
      params.push(a.param, b.param);
    }
    const conn = em;
    const [{ count }] = await conn.execute(`select count(*)::int as count from users where ${where.join(' and ')}`, params);
    const dir = opts.backward ? 'desc' : 'asc';
    if (opts.from) {
      where.push(`(lower(username), id) ${opts.backward ? '<' : '>'} (?, ?)`);
      params.push(opts.from.k, opts.from.id);
    }
    const ids: { id: string }[] = await conn.execute(
      `select id from users where ${where.join(' and ')} order by lower(username) ${dir}, id ${dir} limit ?`,
      [...params, opts.limit + 1],
    );
    const users = await em.find(User, { id: { $in: ids.map((r) => r.id) } });
    const byId = new Map(users.map((u) => [u.id, u]));
    return { rows: ids.map((r) => byId.get(r.id)!).filter(Boolean), total: count };
  },

  /** The stored lastSeenAt of each user (presence asks for those offline); none for a deleted account. */
  async lastSeen(em: EntityManager, ids: readonly string[]): Promise<Map<string, Date | null>> {
    const rows: { id: string; last_seen_at: Date | null }[] = await em.execute(
      'select id, case when deleted_at is null then last_seen_at end as last_seen_at from users where id = any(?::uuid[])',
      [pgArray(ids)],
    );
    return new Map(rows.map((r) => [r.id, r.last_seen_at ? new Date(r.last_seen_at) : null]));
  },

  /**
   * Moves lastSeenAt forward (never back) for many users: one UPDATE per 10,000. A row another
   * transaction holds is left, not waited for, and returned: waiting on rows in no set order
   * deadlocked with a friend request locking its two users (an outside probe: 1 in 5,356 at the
   * default interval, 55 in 825 at 1 s), and the loser was a masked error or a dropped round.
   * NO KEY UPDATE, as the plain UPDATE took: a send's foreign-key check (KEY SHARE) does not hold
   * its sender's row from it; a FOR SHARE (a friend request, a login) does.
   * `backWithinMs`: also back, onto `at`, from a time at most this much after it (see PresenceService.sweep).
   * A deleted account's row is never written (its placeholder has no lastSeenAt): its id goes to `deleted`.
   */
  async recordLastSeen(em: EntityManager, entries: readonly (readonly [userId: string, at: number])[], backWithinMs = 0, deleted?: Set<string>): Promise<string[]> {
    const skipped: string[] = [];
    for (let i = 0; i < entries.length; i += 10_000) {
      const chunk = entries.slice(i, i + 10_000);
      const ids = pgArray(chunk.map((e) => e[0]));
      const rows: { id: string; deleted: boolean }[] = await em.execute(
        `with locked as (select id from users where id = any(?::uuid[]) for no key update skip locked),
         moved as (update users u set last_seen_at = v.at from (select unnest(?::uuid[]) as id, unnest(?::timestamptz[]) as at) v
           where u.id = v.id and u.id in (select id from locked) and u.deleted_at is null and (u.last_seen_at is null or u.last_seen_at < v.at + ? * interval '1 millisecond') and u.last_seen_at is distinct from v.at)
         select id, deleted_at is not null as deleted from users where id = any(?::uuid[]) and (id not in (select id from locked) or deleted_at is not null)`,
        [ids, ids, pgArray(chunk.map((e) => new Date(e[1]).toISOString())), backWithinMs, ids],
      );
      for (const r of rows) {
        if (r.deleted) deleted?.add(r.id);
        else skipped.push(r.id);
      }
    }
    return skipped;
  },
};
