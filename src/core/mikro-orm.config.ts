import { defineConfig, type EntityClass, type Options } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import { migrationsList } from '../migrations';
import type { Logger } from '../shared/logger';

export interface OrmConfigInput {
  clientUrl: string;
  poolMax: number;
  /** Milliseconds a statement may run (DB_STATEMENT_TIMEOUT). @default 15000 */
  statementTimeoutMs?: number;
  logger?: Logger;
  /** Every entity the ORM maps: the caller passes the list in src/modules/entities.ts (config sits below the modules). */
  entities: EntityClass<object>[];
}

/** MikroORM settings shared by the server, the CLI scripts and the tests. */
export function ormConfig({ clientUrl, poolMax, statementTimeoutMs = 15_000, logger, entities }: OrmConfigInput): Options {
  return defineConfig({
    clientUrl,
    entities,
    extensions: [Migrator],
    // Entities come from the explicit list passed in; discovery by folder would differ between ts and js.
    discovery: { warnWhenNoEntities: true },
    // Each migration in its own transaction, not all in one: one that builds an index concurrently runs outside any.
    migrations: { migrationsList, path: 'src/migrations', pathTs: 'src/migrations', transactional: true, allOrNothing: false, snapshot: false },
    // Tables kept by hand-written SQL alone (their migrations and repositories), no entity's: the
    // migrator's diff (npm run migration:create) would drop them (an outside probe).
    schemaGenerator: { skipTables: ['direct_read_markers', 'marker_landings', 'retired_usernames'] },
    pool: { min: 0, max: poolMax, idleTimeoutMillis: 30_000 },
    // Fail fast when PostgreSQL is away instead of queueing requests for minutes. No JIT: its
    // compile costs hundreds of milliseconds and pays off only for long analytic scans, and a
    // conversation's keys are hidden from the planner (one generic plan per statement), so a hot
    // lookup of one row can be costed above jit_above_cost on a big database: a heavy user's
    // unread count took 0.5-1 s there, 4 ms without JIT (an outside volume probe, 1.9 M messages).
    driverOptions: {
      acquireConnectionTimeout: 3000,
      connection: { connectionTimeoutMillis: 3000, statement_timeout: statementTimeoutMs, options: '-c jit=off' },
      // knex prints dropped connections with console.log otherwise.
      log: logger
        ? {
            warn: (msg: unknown) => logger.warn({ detail: String(msg) }, 'database driver warning'),
            error: (msg: unknown) => logger.error({ detail: String(msg) }, 'database driver error'),
            deprecate: (msg: unknown) => logger.debug({ detail: String(msg) }, 'database driver deprecation'),
            debug: (msg: unknown) => logger.debug({ detail: String(msg) }, 'database driver debug'),
          }
        : undefined,
    },
    allowGlobalContext: false,
    forceUtcTimezone: true,
    debug: false,
    // Its lines go to pino, which colours its own pretty output: ANSI codes would land in JSON logs.
    colors: false,
    // Its lines (a '[migrator] Processing …' and '… Applied' for each migration: some 50 on a
    // first start) at trace; migrate() says in one line what it applied.
    logger: logger ? (msg: string) => logger.trace(msg) : undefined,
  } as Options);
}
