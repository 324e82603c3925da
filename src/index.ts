import 'reflect-metadata';
import { loadEnvOrReport } from './config/env';
import { startServer } from './server';
import { createLogger } from './shared/logger';

const SHUTDOWN_DEADLINE_MS = 10_000;

async function main(): Promise<void> {
  const env = loadEnvOrReport();
  if (!env) process.exit(1);
  const logger = createLogger(env);
  let server;
  try {
    server = await startServer({ env, logger });
  } catch (e) {
    // One clear line, not a stack: the cause is almost always configuration.
    logger.fatal(`Parley could not start: ${(e as Error).message}`);
    logger.flush?.();
    process.stderr.write(`Parley could not start: ${(e as Error).message}\n`);
    process.exit(1);
  }
  logger.info(
    { url: server.url, database: `${server.database.kind} ${server.database.displayUrl}`, pubsub: server.services.pubsub.kind },
    `Parley listening on ${server.url} (database: ${server.database.kind}, pub/sub: ${server.services.pubsub.kind})`,
  );

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const deadline = setTimeout(() => {
      logger.error('shutdown took longer than 10 s; exiting');
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS);
    deadline.unref();
    server
      .dispose()
      .then(() => {
        logger.info('stopped');
        process.exit(0);
      })
      .catch((e) => {
        logger.error({ err: e }, 'shutdown failed');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

void main();
