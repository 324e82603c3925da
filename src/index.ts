import 'reflect-metadata';
import { loadEnvOrReport } from './config/env';
import { startServer } from './server';
import { createLogger } from './shared/logger';

const SHUTDOWN_DEADLINE_MS = 10_000;

async function main(): Promise<void> {
  const env = loadEnvOrReport();
  if (!env) process.exit(1);
  const logger = createLogger(env);
  // One clear line, not a stack: a start-up failure is almost always the machine or the
  // configuration. Whatever fails while starting, even outside startServer's promise (an 'error'
  // event nobody listens to), ends the same way.
  const cannotStart = (e: unknown) => {
    const why = String((e as Error)?.message ?? e).replace(/\s*\n\s*/g, ' ').trim();
    logger.fatal(`Parley could not start: ${why}`);
    logger.flush?.();
    process.stderr.write(`Parley could not start: ${why}\n`);
    process.exit(1);
  };
  process.once('uncaughtException', cannotStart);
  process.once('unhandledRejection', cannotStart);
  let server;
  try {
    server = await startServer({ env, logger });
  } catch (e) {
    return cannotStart(e);
  }
  process.off('uncaughtException', cannotStart);
  process.off('unhandledRejection', cannotStart);
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
