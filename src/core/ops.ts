import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Env } from '../config/env';
import type { Logger } from '../shared/logger';
import type { Metrics } from '../shared/metrics';
import { bearerToken, sendGraphQLError, sendJson } from './http';

export interface OpsOptions {
  env: Pick<Env, 'METRICS_TOKEN' | 'METRICS_PORT' | 'HOST'>;
  logger: Logger;
  metrics: Metrics;
  /** Whether each dependency answers (PostgreSQL; Redis when configured, `undefined` otherwise). */
  dependencies(): Promise<{ database: boolean; redis: boolean | undefined }>;
}

/** The endpoints an operator's tools call: /healthz, /readyz and /metrics. */
export interface Ops {
  /** Answers the request when it is one of them (on the main port); false otherwise. */
  handle(req: IncomingMessage, res: ServerResponse, path: string): boolean;
  /** From now on /readyz answers 503, so a load balancer stops sending before anything closes. */
  drain(): void;
  /** Where /metrics is served when METRICS_PORT is set. */
  readonly metricsUrl: string | undefined;
  dispose(): Promise<void>;
}

/**
 * The operator's endpoints. /metrics wants `Authorization: Bearer METRICS_TOKEN` when the token
 * is set (401 otherwise); with METRICS_PORT it is served on a listener of its own and not on the
 * main port. @throws when METRICS_PORT cannot be listened on.
 */
export async function startOps(opts: OpsOptions): Promise<Ops> {
  const { env, logger, metrics } = opts;
  let draining = false;
  const expected = env.METRICS_TOKEN ? Buffer.from(env.METRICS_TOKEN) : undefined;

  const fail = (res: ServerResponse, path: string) => (e: unknown) => {
    logger.error({ err: e, path }, 'request failed');
    if (!res.headersSent) sendGraphQLError(res, 500, 'INTERNAL_SERVER_ERROR', 'Internal server error');
    else res.end();
  };
  const serveMetrics = (req: IncomingMessage, res: ServerResponse) => {
    // The header read as /graphql reads it (the scheme in any case: RFC 9110).
    const given = Buffer.from(bearerToken(req.headers.authorization) ?? '');
    if (expected && (given.length !== expected.length || !timingSafeEqual(given, expected))) {
      res.setHeader('www-authenticate', 'Bearer realm="metrics"');
      return sendGraphQLError(res, 401, 'UNAUTHENTICATED', 'Send the bearer METRICS_TOKEN to read metrics.');
    }
    metrics
      .scrape()
      .then(({ contentType, body }) => {
        res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
        res.end(body);
      })
      .catch(fail(res, '/metrics'));
  };

  let metricsServer: ReturnType<typeof createServer> | undefined;
  let metricsUrl: string | undefined;
  if (env.METRICS_PORT !== undefined) {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics' && req.method === 'GET') return serveMetrics(req, res);
      sendGraphQLError(res, 404, 'NOT_FOUND', 'Only /metrics is served here.');
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(e.code === 'EADDRINUSE' ? new Error(`METRICS_PORT ${env.METRICS_PORT} on ${env.HOST} is taken: set METRICS_PORT to a free port`) : e),
      );
      server.listen(env.METRICS_PORT, env.HOST, () => resolve());
    });
    metricsServer = server;
    const host = env.HOST === '0.0.0.0' || env.HOST === '::' ? 'localhost' : env.HOST;
    metricsUrl = `http://${host}:${(server.address() as AddressInfo).port}/metrics`;
  }

  return {
    metricsUrl,
    drain() {
      draining = true;
    },
    handle(req, res, path) {
      if (path === '/healthz') {
        sendJson(res, 200, { status: 'ok' });
        return true;
      }
      if (path === '/readyz') {
        if (draining) {
          sendJson(res, 503, { status: 'shutting down' });
          return true;
        }
        opts
          .dependencies()
          .then(({ database, redis }) => {
            const ready = database && redis !== false;
            sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'unavailable', database, redis: redis ?? 'not configured' });
          })
          .catch(fail(res, path));
        return true;
      }
      if (path === '/metrics' && req.method === 'GET' && !metricsServer) {
        serveMetrics(req, res);
        return true;
      }
      return false;
    },
    async dispose() {
      if (!metricsServer) return;
      const server = metricsServer;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
