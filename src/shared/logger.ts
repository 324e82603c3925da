import { AsyncLocalStorage } from 'node:async_hooks';
import pino, { type DestinationStream, type Logger } from 'pino';
import type { Env } from '../config/env';

export type { Logger };

/**
 * The request being handled, carried across awaits. Services log through their own module
 * loggers; this puts the request id on those lines too, not only on `ctx.logger`'s.
 */
export const requestScope = new AsyncLocalStorage<{ requestId: string }>();

/**
 * JSON lines with ISO times and level names (`"level":"info","time":"2026-…Z"`, what log
 * shippers parse without configuration); pino-pretty when LOG_PRETTY. Every line written while
 * a request is handled carries its `requestId`. `destination`: where lines go (tests capture them).
 */
export function createLogger(env: Pick<Env, 'LOG_LEVEL' | 'LOG_PRETTY'>, bindings: Record<string, unknown> = {}, destination?: DestinationStream): Logger {
  const pretty = env.LOG_PRETTY && !destination;
  const options: pino.LoggerOptions = {
    level: env.LOG_LEVEL,
    base: { pid: process.pid, ...bindings },
    redact: ['req.headers.authorization', 'password', 'token'],
    timestamp: pino.stdTimeFunctions.isoTime,
    // pino-pretty reads pino's numeric levels; JSON lines get the name.
    formatters: pretty ? undefined : { level: (label) => ({ level: label }) },
    mixin(_obj, _level, logger) {
      const scope = requestScope.getStore();
      // A child logger that already binds the id (ctx.logger) must not write the key twice.
      return scope && !('requestId' in logger.bindings()) ? { requestId: scope.requestId } : {};
    },
  };
  if (destination) return pino(options, destination);
  return pretty ? pino(options, prettyWorker()) : pino(options);
}

/**
 * pino-pretty in pino's worker thread. A worker that dies (its stdout closed under it) or cannot
 * write makes the stream fail: lines are dropped from then on, and the server keeps serving.
 * Its writes are asynchronous, so a log pipe nobody reads never holds this thread.
 */
function prettyWorker(): DestinationStream {
  const stream = pino.transport({ target: 'pino-pretty', options: { colorize: true, singleLine: true } });
  stream.on('error', () => undefined);
  return stream;
}

/**
 * A warning for a failure an outage repeats on every request (a publish, a typing stop with Redis
 * away): one line in `everyMs` with its error and how many failed since the last said so, each
 * other at debug with its message only. A line per failure was hundreds a second in production.
 */
export function warnAtMostEvery(logger: Logger, everyMs: number, msg: string): (err: unknown, fields?: Record<string, unknown>) => void {
  let warnedAt = -Infinity;
  let failed = 0;
  return (err, fields = {}) => {
    failed++;
    const now = Date.now();
    if (now - warnedAt < everyMs) return void logger.debug({ ...fields, reason: err instanceof Error ? err.message : String(err) }, msg);
    warnedAt = now;
    logger.warn({ ...fields, err, failed }, `${msg} (one such line in ${everyMs / 1000} s at most; failed: how many since the last)`);
    failed = 0;
  };
}
