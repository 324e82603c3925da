import { startEmbeddedPostgres } from '../../src/core/embedded-postgres';
import { createLogger } from '../../src/shared/logger';

/**
 * Tests run against DATABASE_URL and REDIS_URL when set (CI sets both). Without
 * DATABASE_URL they get an embedded PostgreSQL of their own under .data/test-postgres.
 */
export default async function globalSetup(): Promise<void> {
  if (process.env.DATABASE_URL) return;
  const pg = await startEmbeddedPostgres({
    dir: '.data/test-postgres',
    port: Number(process.env.EMBEDDED_PG_TEST_PORT ?? 54339),
    logger: createLogger({ LOG_LEVEL: 'silent', LOG_PRETTY: false }),
    database: 'parley_test',
  });
  process.env.DATABASE_URL = pg.url;
  (globalThis as { __parleyPg?: typeof pg }).__parleyPg = pg;
  if (!process.env.REDIS_URL) {
    process.stdout.write('\nREDIS_URL is not set: tests that need Redis are skipped (set REDIS_URL to run them).\n');
  }
}
