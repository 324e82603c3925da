/** Writes a migration for the difference between the entities and the database at DATABASE_URL (or the embedded one). */
import 'reflect-metadata';
import { loadEnv } from '../src/config/env';
import { openDatabase } from '../src/core/database';
import { entities } from '../src/modules/entities';
import { createLogger } from '../src/shared/logger';

async function main(): Promise<void> {
  const env = loadEnv();
  const logger = createLogger({ LOG_LEVEL: 'info', LOG_PRETTY: false });
  const db = await openDatabase(env, logger, { entities });
  try {
    const result = await db.orm.getMigrator().createMigration('src/migrations', false, false, process.argv[2]);
    process.stdout.write(result.fileName ? `created src/migrations/${result.fileName}\n` : 'no changes\n');
  } finally {
    await db.dispose();
  }
}

void main();
