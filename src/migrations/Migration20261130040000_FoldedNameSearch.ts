import { Migration } from '@mikro-orm/migrations';
import type { Knex } from '@mikro-orm/postgresql';
import { alone } from './alone';

/** Marks a reader leaves out when typing: Arabic's harakat, Quranic marks and tatweel; Hebrew's points and cantillation. */
const MARK_RANGES: [number, number][] = [
  [0x0591, 0x05bd],
  [0x05bf, 0x05bf],
  [0x05c1, 0x05c2],
  [0x05c4, 0x05c5],
  [0x05c7, 0x05c7],
  [0x0610, 0x061a],
  [0x0640, 0x0640],
  [0x064b, 0x065f],
  [0x0670, 0x0670],
  [0x06d6, 0x06dc],
  [0x06df, 0x06e4],
  [0x06e7, 0x06e8],
  [0x06ea, 0x06ed],
];
const MARKS = MARK_RANGES.flatMap(([a, b]) => Array.from({ length: b - a + 1 }, (_, i) => String.fromCodePoint(a + i))).join('');

const INDEXES: [name: string, table: string, column: string][] = [
  ['users_username_folded', 'users', 'username'],
  ['users_display_name_folded', 'users', 'display_name'],
  ['groups_name_folded', 'groups', 'name'],
];

/**
 * `users(search:)` and `groups(search:)` matched with `ilike`: case aside, but `jurgen` missed
 * "Jürgen", `cafe` "Café", `strassenfest` "Straßenfest", a Greek name typed with a final sigma its
 * capitals, an Arabic or Hebrew name written with its vowel marks (an outside probe), where message
 * search finds them all. `parley_fold` reads a name as a reader types it: unaccented by the same
 * dictionary as message search, lower-cased, final sigma as sigma, without those marks. Immutable
 * (unaccent itself is only stable: its rules file could change, which would call for a reindex),
 * so that trigram indexes serve it. A search of one or two characters, which no trigram serves,
 * scans with `ilike` as before (three times cheaper a row than folding each name). Expand only:
 * built concurrently while the previous release, which still searches with `ilike` through the
 * indexes of NameSearch, serves; a later release drops those.
 */
export class Migration20261130040000_FoldedNameSearch extends Migration {
  override isTransactional(): boolean {
    return false;
  }

  override async up(): Promise<void> {
    await alone(this.getKnex() as Knex, async (db) => {
      const ext = async (name: string) => (await db.query('select extnamespace::regnamespace::text as schema from pg_extension where extname = $1', [name])).rows[0]?.schema as string | undefined;
      const schema = await ext('unaccent');
      if (!schema) throw new Error('The unaccent extension is missing (Migration20261124070000_SearchAndPins creates it).');
      // PL/pgSQL: 3.3 µs a name, where the same in SQL took 34 (a SQL function that is not inlined,
      // as one declared immutable over a stable one is not, runs its own executor each call).
      await db.query(
        `create or replace function parley_fold(name text) returns text language plpgsql immutable strict parallel safe
         as $fold$ begin return translate(lower(${schema}.unaccent('${schema}.unaccent'::regdictionary, name)), 'ς${MARKS}', 'σ'); end $fold$`,
      );
      // Without pg_trgm (NameSearch could not create it), searches scan as before.
      if (!(await ext('pg_trgm'))) return;
      for (const [name, table, column] of INDEXES) {
        // A build that failed half-way leaves an invalid index of that name, which `if not exists` would keep.
        await db.query(`drop index concurrently if exists "${name}"`);
        await db.query(`create index concurrently "${name}" on "${table}" using gin (parley_fold("${column}") gin_trgm_ops)`);
      }
    });
  }

  override async down(): Promise<void> {
    await alone(this.getKnex() as Knex, async (db) => {
      for (const [name] of INDEXES) await db.query(`drop index concurrently if exists "${name}"`);
      await db.query('drop function if exists parley_fold(text)');
    });
  }
}
