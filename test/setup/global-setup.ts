import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres } from '../../src/core/embedded-postgres';
import { createLogger } from '../../src/shared/logger';
import { workerDatabaseUrl } from './workers';

/**
 * Tests run against DATABASE_URL and REDIS_URL when set (CI sets both). Without
 * DATABASE_URL they get an embedded PostgreSQL of their own under .data/test-postgres.
 * Every worker after the first gets a database of its own beside it (workers.ts).
 */
export default async function globalSetup(config: { maxWorkers: number }): Promise<void> {
  // Where running suites mark themselves (setup/suites.ts, helpers/alone.ts): the workers inherit it.
  process.env.PARLEY_SUITES_DIR = mkdtempSync(path.join(tmpdir(), 'parley-suites-'));
  if (!process.env.DATABASE_URL) {
    const embedded = await startEmbeddedPostgres({
      dir: '.data/test-postgres',
      port: Number(process.env.EMBEDDED_PG_TEST_PORT ?? 54339),
      logger: createLogger({ LOG_LEVEL: 'silent', LOG_PRETTY: false }),
      database: 'parley_test',
      portSetting: 'EMBEDDED_PG_TEST_PORT',
      dirSetting: null,
    });
    process.env.DATABASE_URL = embedded.url;
    (globalThis as { __parleyPg?: typeof embedded }).__parleyPg = embedded;
    if (!process.env.REDIS_URL) {
      process.stdout.write('\nREDIS_URL is not set: tests that need Redis are skipped (set REDIS_URL to run them).\n');
    }
  }
  await workerDatabases(process.env.DATABASE_URL, config.maxWorkers);
}

/** Creates the databases of workers 2..n where missing; each test empties its own (resetState). */
async function workerDatabases(url: string, n: number): Promise<void> {
  if (n < 2) return;
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (let i = 2; i <= n; i++) {
      const name = new URL(workerDatabaseUrl(url, i)).pathname.slice(1);
      const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
      if (!rowCount) await client.query(`create database "${name.replace(/"/g, '')}"`);
    }
  } finally {
    await client.end();
  }
}
