import 'reflect-metadata';
import { loadEnvOrReport } from './config/env';
import { startServer } from './server';
import { armWatchdog, exitAfterFlush, ignoreClosedPipes } from './core/shutdown';
import { hasDemo } from './core/dev-pages';
import { createLogger } from './shared/logger';

async function main(): Promise<void> {
  const env = loadEnvOrReport();
  if (!env) process.exit(1);
  ignoreClosedPipes();
  const logger = createLogger(env);
  // One clear line, not a stack: a start-up failure is almost always the machine or the
  // configuration. Whatever fails while starting, even outside startServer's promise (an 'error'
  // event nobody listens to), ends the same way.
  const cannotStart = (e: unknown) => {
    const why = String((e as Error)?.message ?? e).replace(/\s*\n\s*/g, ' ').trim();
    // A person at a terminal reads the plain line alone; a log collector (output not a terminal) gets the JSON line too.
    if (!process.stdout.isTTY) logger.fatal(`Parley could not start: ${why}`);
    process.stderr.write(`Parley could not start: ${why}\n`);
    exitAfterFlush(logger, 1, 1000);
  };
  process.once('uncaughtException', cannotStart);
  process.once('unhandledRejection', cannotStart);
  // Stopped while starting (Ctrl-C, a hang-up, a supervisor): once started, as any stop, so the
  // embedded PostgreSQL stops with it (the signals' default left it running: an outside probe).
  // Not at once: a migration is committed before it is recorded as applied, and one stopped in
  // between left a database no later start could migrate (an outside probe). Asked twice: at once,
  // through process.exit, whose 'exit' listeners stop the embedded PostgreSQL all the same.
  // One Ctrl-C under `npm start` arrives twice, from the terminal (to the whole foreground group)
  // and from npm forwarding its own: a signal within SAME_ASK_MS of the first is that copy. It
  // ended a start at once with 1, "asked twice", in 3 of 7 single Ctrl-Cs (an outside probe).
  let stopAsked: NodeJS.Signals | undefined;
  let stopAskedAt = 0;
  let exiting = false;
  const stopWhileStarting = (signal: NodeJS.Signals) => {
    // Exiting already: the second ask's own copy (npm's) says nothing more.
    if (exiting || (stopAsked && performance.now() - stopAskedAt < SAME_ASK_MS)) return;
    if (stopAsked) {
      exiting = true;
      logger.warn({ signal }, 'stopped while starting, as asked twice');
      return exitAfterFlush(logger, 1, 1000);
    }
    stopAsked = signal;
    stopAskedAt = performance.now();
    logger.info({ signal }, 'stopping once started');
  };
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
  for (const signal of signals) process.on(signal, stopWhileStarting);
  let server;
  try {
    server = await startServer({ env, logger });
  } catch (e) {
    return cannotStart(e);
  }
  process.off('uncaughtException', cannotStart);
  process.off('unhandledRejection', cannotStart);
  // Which Redis pub/sub rides on, as an operator checks it: a cluster's sharded channels or classic ones.
  const redis = server.services.redis;
  const pubsub = server.services.pubsub.kind === 'memory' || !redis ? server.services.pubsub.kind : env.REDIS_CLUSTER_NODES ? `redis cluster, ${redis.sharded ? 'sharded' : 'classic'} channels` : 'redis';
  logger.info(
    { url: server.url, metrics: server.metricsUrl, database: `${server.database.kind} ${server.database.displayUrl}`, pubsub },
    `Parley listening on ${server.url} (database: ${server.database.kind}, pub/sub: ${pubsub})${env.ENABLE_GRAPHIQL ? `; GraphiQL at ${new URL('/graphiql', server.url)}${hasDemo() ? `, the web demo at ${new URL('/demo/', server.url)}` : ''}` : ''}`,
  );

  let stopping = false;
  /** `failed`: the exit code is 1 whatever the stop's outcome. */
  const shutdown = (signal: string, failed = false) => {
    if (stopping) return;
    stopping = true;
    const budget = env.SHUTDOWN_TIMEOUT * 1000;
    // Armed before anything else, so the end is certain whatever follows.
    armWatchdog(budget);
    logger.info({ signal }, 'shutting down');
    const started = Date.now();
    // What is left of the budget after stopping, for the last lines to be written; the watchdog has the rest.
    const leftFor = (part: number) => Math.max(0, Math.min(part, budget - (Date.now() - started) - 250));
    const deadline = setTimeout(() => {
      logger.error(`shutdown took longer than ${env.SHUTDOWN_TIMEOUT} s; exiting`);
      exitAfterFlush(logger, 1, leftFor(500));
    }, Math.max(0, budget - 1000));
    deadline.unref();
    server
      .dispose()
      .then(
        () => {
          logger.info('stopped');
          return 0;
        },
        (e) => {
          logger.error({ err: e }, 'shutdown failed');
          return 1;
        },
      )
      .then((code) => {
        clearTimeout(deadline);
        exitAfterFlush(logger, failed ? 1 : code, leftFor(1000));
      });
  };
  // Nothing brings the embedded PostgreSQL back: killed under a running server, every operation
  // answered SERVICE_UNAVAILABLE and /healthz 200 for good (an outside probe). Stopped loudly, with
  // 1, a supervisor (or the next npm start, which starts it again on the same data) takes over.
  void server.database.lost?.then((how) => {
    logger.fatal({ how }, `the embedded PostgreSQL stopped (${how}): Parley stops too; start it again`);
    shutdown('embedded PostgreSQL stopped', true);
  });
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  // A terminal closed (or an SSH session lost) hangs up: stopped as by Ctrl-C. Killed by SIGHUP's
  // default, the embedded PostgreSQL was left running (see startEmbeddedPostgres).
  process.on('SIGHUP', () => shutdown('SIGHUP'));
  // Only now: a signal with no listener for a moment gets its default action (the process killed).
  for (const signal of signals) process.off(signal, stopWhileStarting);
  if (stopAsked) shutdown(stopAsked);
}

/** How long after a stop asked while starting another signal counts as the same ask (see stopWhileStarting). */
const SAME_ASK_MS = 500;

void main();
