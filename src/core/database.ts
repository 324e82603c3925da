import { MikroORM } from '@mikro-orm/postgresql';
import type { Migration } from '@mikro-orm/migrations';
import pg from 'pg';
import type { Env } from '../config/env';
import { ormConfig, type OrmConfigInput } from './mikro-orm.config';
import type { Logger } from '../shared/logger';
import { startEmbeddedPostgres } from './embedded-postgres';

export interface Database {
  orm: MikroORM;
  /** 'embedded' when Parley started its own PostgreSQL. */
  kind: 'embedded' | 'external';
  /** Connection URL with the password masked, for logs. */
  displayUrl: string;
  ping(): Promise<boolean>;
  /** The embedded PostgreSQL's end, if it stops under the server (see EmbeddedPostgresHandle.lost); none for an external one. */
  lost?: Promise<string>;
  dispose(): Promise<void>;
}

// Any constant shared by all instances: only one of them migrates at a time.
const MIGRATION_LOCK = 7_320_001;
/** How long /readyz waits for PostgreSQL to answer `select 1` before it calls the database unavailable. */
const PING_TIMEOUT_MS = 3000;

/** A connection URL with its password masked, for logs and messages. */
export function maskUrl(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}

/**
 * Whether every migration this build knows is recorded as applied: read on the pool, without the
 * lock's own session (starting a PostgreSQL session costs it ~20 ms of CPU here). Any doubt (no table
 * yet, a query error) says no, and the locked path decides.
 */
async function upToDate(orm: MikroORM): Promise<boolean> {
  const { migrationsList, tableName } = orm.config.get('migrations');
  const known = migrationsList?.map((m) => m.name);
  if (!known?.length) return false;
  try {
    const rows = await orm.em.getConnection().execute<{ name: string }[]>(`select name from "${tableName}"`);
    const applied = new Set(rows.map((r) => r.name));
    return known.every((name) => applied.has(name));
  } catch {
    return false;
  }
}

/**
 * Applies the pending migrations one by one, each recorded as applied in the transaction that
 * applies it. MikroORM's own way with one transaction a migration (allOrNothing off) commits a
 * migration, then records it: a process killed between the two left a database no later start
 * could migrate ('type … already exists': an outside probe, Ctrl-C on a first start). All in one
 * transaction (allOrNothing on) can't serve a migration that builds an index concurrently, which
 * runs outside any; those are written to be run again, and are recorded after they ran.
 */
async function applyPending(orm: MikroORM): Promise<{ name: string }[]> {
  const migrator = orm.getMigrator();
  const settings = orm.config.get('migrations');
  const applied: { name: string }[] = [];
  for (const { name } of await migrator.getPendingMigrations()) {
    const entry = settings.migrationsList?.find((m) => m.name === name);
    const Class = entry && ('class' in entry ? entry.class : entry);
    const inTransaction = !Class || (new Class(orm.em.getDriver(), orm.config) as Migration).isTransactional();
    if (!inTransaction) {
      applied.push(...(await migrator.up({ migrations: [name] })));
      continue;
    }
    // The migrator takes a transaction it is given for the migration and its record only in its
    // all-or-nothing mode, read as it runs; the setting is back before any other migration runs.
    const allOrNothing = settings.allOrNothing;
    settings.allOrNothing = true;
    try {
      applied.push(...(await orm.em.getConnection().transactional((trx) => migrator.up({ migrations: [name], transaction: trx }))));
    } finally {
      settings.allOrNothing = allOrNothing;
    }
  }
  return applied;
}

/** How often an instance waiting for another's migrations asks for the lock again. */
const LOCK_POLL_MS = 200;

/**
 * Runs pending migrations under a PostgreSQL advisory lock, so instances starting together take
 * turns; a start with nothing pending (every restart but a release's first) checks and goes on.
 * The lock is asked for again and again rather than waited for in one statement: a statement
 * waiting is a transaction open, which the migrating instance's CREATE INDEX CONCURRENTLY waits
 * to end, while it waits for that instance's lock. Neither moved until the statement timeout
 * failed one of the starts (an outside probe: 4 of 4 starts together).
 */
export async function migrate(orm: MikroORM, clientUrl: string, logger?: Logger): Promise<void> {
  if (await upToDate(orm)) return;
  const lock = new pg.Client({ connectionString: clientUrl, connectionTimeoutMillis: 5000 });
  // A connection ended under it (the database dropped, an administrator) fails its next query instead.
  lock.on('error', () => undefined);
  await lock.connect();
  try {
    while (!(await lock.query<{ got: boolean }>('select pg_try_advisory_lock($1) as got', [MIGRATION_LOCK])).rows[0].got) {
      await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS));
    }
    const applied = await applyPending(orm);
    if (applied.length) logger?.info({ migrations: applied.map((m) => m.name) }, `database migrated: ${applied.length} migration${applied.length === 1 ? '' : 's'} applied`);
  } finally {
    await lock.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    await lock.end();
  }
}

/**
 * Connects MikroORM to DATABASE_URL, or to an embedded PostgreSQL when it is unset,
 * and applies migrations.
 * @throws when the database can't be reached; the entry point turns this into one line.
 */
export async function openDatabase(env: Env, logger: Logger, opts: { entities: OrmConfigInput['entities']; migrate?: boolean }): Promise<Database> {
  const embedded = env.DATABASE_URL
    ? undefined
    : await startEmbeddedPostgres({ dir: env.EMBEDDED_PG_DIR, port: env.EMBEDDED_PG_PORT, logger, ownGroup: true });
  const clientUrl = env.DATABASE_URL ?? embedded!.url;
  let orm: MikroORM | undefined;
  try {
    orm = await MikroORM.init(ormConfig({ clientUrl, poolMax: env.DB_POOL_MAX, statementTimeoutMs: Math.round(env.DB_STATEMENT_TIMEOUT * 1000), logger, entities: opts.entities }));
    if (!(await orm.isConnected())) {
      const check = await orm.checkConnection();
      throw new Error(check.ok ? 'not connected' : check.reason);
    }
    if (opts.migrate !== false) await migrate(orm, clientUrl, logger);
  } catch (e) {
    // A start that fails here leaves no pool open behind it (a test starts again in the same process).
    await orm?.close(true).catch(() => undefined);
    await embedded?.dispose().catch(() => undefined);
    throw new Error(`cannot use the database at ${maskUrl(clientUrl)}: ${(e as Error).message}`);
  }
  return {
    orm,
    kind: embedded ? 'embedded' : 'external',
    displayUrl: maskUrl(clientUrl),
    lost: embedded?.lost,
    async ping() {
      // A server that stalls (accepts, never answers) is not ready either: /readyz answered 200
      // after a 59 s stall instead of 503 during it (an outside probe).
      let timer: NodeJS.Timeout | undefined;
      const stalled = new Promise<false>((resolve) => (timer = setTimeout(resolve, PING_TIMEOUT_MS, false)));
      try {
        return await Promise.race([orm.em.execute('select 1').then(() => true), stalled]);
      } catch {
        return false;
      } finally {
        clearTimeout(timer);
      }
    },
    async dispose() {
      await orm.close(true);
      await embedded?.dispose();
    },
  };
}
