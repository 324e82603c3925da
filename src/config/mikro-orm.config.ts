import { defineConfig, type Options } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import { entities } from '../modules/entities';
import { migrationsList } from '../migrations';
import type { Logger } from '../shared/logger';

export interface OrmConfigInput {
  clientUrl: string;
  poolMax: number;
  logger?: Logger;
}

/** MikroORM settings shared by the server, the CLI scripts and the tests. */
export function ormConfig({ clientUrl, poolMax, logger }: OrmConfigInput): Options {
  return defineConfig({
    clientUrl,
    entities,
    extensions: [Migrator],
    // Entities come from the explicit list above; discovery by folder would differ between ts and js.
    discovery: { warnWhenNoEntities: true },
    migrations: { migrationsList, path: 'src/migrations', pathTs: 'src/migrations', transactional: true, snapshot: false },
    pool: { min: 0, max: poolMax, idleTimeoutMillis: 30_000 },
    // Fail fast when PostgreSQL is away instead of queueing requests for minutes.
    driverOptions: {
      acquireConnectionTimeout: 3000,
      connection: { connectionTimeoutMillis: 3000, statement_timeout: 15_000 },
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
    logger: logger ? (msg: string) => logger.debug(msg) : undefined,
  } as Options);
}
