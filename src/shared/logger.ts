import pino, { type Logger } from 'pino';
import type { Env } from '../config/env';

export type { Logger };

/** JSON lines by default; pino-pretty in development (LOG_PRETTY). */
export function createLogger(env: Pick<Env, 'LOG_LEVEL' | 'LOG_PRETTY'>, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level: env.LOG_LEVEL,
    base: { pid: process.pid, ...bindings },
    redact: ['req.headers.authorization', 'password', 'token'],
    transport: env.LOG_PRETTY ? { target: 'pino-pretty', options: { colorize: true, singleLine: true } } : undefined,
  });
}
