import { createServer as createHttpServer, type Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { ApolloServer } from '@apollo/server';
import {
  ApolloServerPluginCacheControlDisabled,
  ApolloServerPluginInlineTraceDisabled,
  ApolloServerPluginLandingPageDisabled,
  ApolloServerPluginSchemaReportingDisabled,
  ApolloServerPluginUsageReportingDisabled,
} from '@apollo/server/plugin/disabled';
import type { Env } from './config/env';
import { maskUrl, openDatabase, type Database } from './core/database';
import { clientIp, handleCors, sendGraphQLError, sendJson } from './core/http';
import { handleGraphQL } from './graphql/http';
import { serveDevPages } from './core/dev-pages';
import { DisposerStack } from './core/disposer';
import { InFlight } from './core/in-flight';
import { drainHttpServer } from './core/drain';
import { startOps } from './core/ops';
import { entities } from './modules/entities';
import { createServices, type Services } from './modules/services';
import { bearerToken, invalidTokenError } from './modules/auth/auth.tokens';
import { RequestContext } from './graphql/context';
import { createFastPath } from './graphql/fast-path';
import type { Context } from './modules/context';
import type { Viewer } from './modules/auth/auth.viewer';
import { createErrorFormatter, errorLogPlugin } from './graphql/errors';
import { compiledExecution } from './graphql/executor';
import { documentLimits } from './graphql/limits';
import { operationMetricsPlugin } from './graphql/operation-metrics';
import { createSchema } from './graphql/schema';
import { publicOrigin } from './modules/message/attachment.links';
import { attachmentRoute } from './modules/message/attachment.route';
import { attachWebSocket } from './graphql/ws';
import { attachStreams } from './graphql/sse';
import { UserConnections } from './graphql/connections';
import { createFanout, type FanoutStats } from './graphql/fanout';
import { startJobs } from './jobs';
import { createLogger, requestScope, type Logger } from './shared/logger';
import { createMetrics, type Metrics } from './shared/metrics';
import { createPubSub } from './shared/pubsub/pubsub';
import { connectRedis } from './shared/redis';

export interface ParleyServer {
  /** http://host:port/graphql */
  url: string;
  wsUrl: string;
  port: number;
  httpServer: Server;
  services: Services;
  database: Database;
  /** Subscription executions and deliveries on this instance. */
  fanout: FanoutStats;
  /** This instance's Prometheus registry, served at /metrics. */
  metrics: Metrics;
  /** HTTP operations answered without Apollo's pipeline (graphql/fast-path.ts). */
  fastPath: { readonly served: number };
  /** Where /metrics is served when METRICS_PORT is set (then not on `port`). */
  metricsUrl?: string;
  /** /readyz answers 503 from its first call on; SHUTDOWN_DELAY later, releases everything, last opened first: jobs, sockets (1001), SSE streams, Apollo (draining HTTP), services, pub/sub, Redis, the ORM. */
  dispose(): Promise<void>;
}

export interface ServerOptions {
  env: Env;
  logger?: Logger;
  /** Start the cron jobs (the presence sweep). @default true */
  jobs?: boolean;
}

/** The largest request that can carry the largest allowed attachment (base64 is 4/3 of it) and the longest allowed document, plus room for the rest. */
export function bodyLimit(env: Pick<Env, 'ATTACHMENT_MAX_BYTES' | 'GRAPHQL_MAX_DOCUMENT_BYTES'>): number {
  return Math.ceil((env.ATTACHMENT_MAX_BYTES * 4) / 3) + env.GRAPHQL_MAX_DOCUMENT_BYTES + 64 * 1024;
}

/**
 * Starts Parley: database (migrated), Redis or in-process pub/sub, GraphQL over HTTP and
 * WebSocket on one port, health endpoints and jobs.
 * @throws when the database or the port can't be used; nothing is left running.
 */
export async function startServer(opts: ServerOptions): Promise<ParleyServer> {
  const { env } = opts;
  const logger = opts.logger ?? createLogger(env);
  // Released last pushed first, on a failed start and on dispose alike.
  const stack = new DisposerStack(logger);
  try {
    const database = await openDatabase(env, logger, { entities });
    stack.push('database', () => database.dispose());
    const redis = connectRedis(env, logger);
    if (redis) stack.push('redis', () => redis.dispose());
    const pubsub = createPubSub(redis, logger);
    stack.push('pubsub', () => pubsub.dispose());
    const app = createServices({ env, logger, orm: database.orm, pubsub, redis });
    stack.push('services', () => app.dispose());
    // Stopping waits here, after HTTP drained and the sockets closed, before services, pub/sub and
    // the database close: an operation whose client went away still commits and publishes. 3 s: the
    // drain's 5 s before it and the rest stay within index.ts's 10 s.
    const inFlight = new InFlight();
    stack.push('operations in flight', () => inFlight.settled(3000));
    const production = env.NODE_ENV === 'production';
    const metrics = createMetrics();
    // Every failed connect or reconnect attempt of any of the three connections.
    for (const c of redis ? [redis.client, redis.publisher, redis.subscriber] : []) c.on('error', () => metrics.redisErrors.inc());
    // A cluster needs its slot map before the first command. A Redis that does not answer at start
    // is a wrong REDIS_URL far more often than an outage: say so and stop (once running, an outage is ridden out).
    if (redis && !(await redis.ready(5000))) {
      const where = env.REDIS_CLUSTER_NODES ? `the Redis Cluster at ${env.REDIS_CLUSTER_NODES.join(',')}` : `Redis at ${maskUrl(env.REDIS_URL!)}`;
      throw new Error(`${where} does not answer (${redis.lastError ?? 'no reply within 5 s'}): start it, fix ${env.REDIS_CLUSTER_NODES ? 'REDIS_CLUSTER_NODES' : 'REDIS_URL'}, or unset it to keep pub/sub in this process`);
    }
    await app.start();
    const schema = await createSchema();
    // A client that trickles its headers or body is cut instead of holding a socket for minutes.
    // The request timeout bounds receiving the request only: SSE and WebSocket responses live on.
    const headersTimeout = Math.round(env.HTTP_HEADERS_TIMEOUT * 1000);
    const httpServer = createHttpServer({
      headersTimeout,
      requestTimeout: Math.round(Math.max(env.HTTP_REQUEST_TIMEOUT, env.HTTP_HEADERS_TIMEOUT) * 1000),
      // Node looks for expired requests every 30 s by default, which would triple a 10 s limit.
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
    });
    const shapeError = createErrorFormatter({ production, logger });
    const formatError: typeof shapeError = (formatted, error) => {
      const shaped = shapeError(formatted, error);
      if (shaped.extensions?.code === 'SERVICE_UNAVAILABLE') metrics.dependencyDown(error);
      return shaped;
    };
    const limits = documentLimits(env);
    const fastPath = createFastPath({ schema, limits, formatError, logger, metrics });
    const apollo = new ApolloServer<Context>({
      gateway: compiledExecution(schema),
      introspection: env.ENABLE_INTROSPECTION,
      includeStacktraceInErrorResponses: false,
      allowBatchedHttpRequests: false,
      // src/index.ts owns SIGTERM/SIGINT: Apollo's own handler would drain HTTP before the sockets get their 1001.
      stopOnTerminationSignals: false,
      csrfPrevention: true,
      formatError,
      validationRules: limits.apollo.validationRules,
      parseOptions: limits.apollo.parseOptions,
      hideSchemaDetailsFromClientErrors: limits.apollo.hideSchemaDetailsFromClientErrors,
      documentStore: limits.apollo.documentStore,
      cache: limits.apollo.cache,
      plugins: [
        // Apollo installs cache control (a hook on every field, and every field of the shared schema
        // wrapped for it, WebSocket executions too) and inline tracing unless told not to; nothing reads either.
        ApolloServerPluginCacheControlDisabled(),
        ApolloServerPluginInlineTraceDisabled(),
        ApolloServerPluginUsageReportingDisabled(),
        ApolloServerPluginSchemaReportingDisabled(),
        ApolloServerPluginLandingPageDisabled(),
        ...limits.apollo.plugins,
        errorLogPlugin(logger),
        operationMetricsPlugin(metrics),
        fastPath.plugin,
        // apollo.stop(): stop accepting, let in-flight requests finish, cut what is left after 5 s.
        drainHttpServer(httpServer, 5000),
      ],
    });
    await apollo.start();
    // Listening starts after this, so Apollo's stop (which drains HTTP) covers the server from then on.
    stack.push('apollo and http', () => apollo.stop());
    const serveAttachment = attachmentRoute(app.services);
    const limit = bodyLimit(env);
    // One fan-out for both transports: an event is executed once per shape, whoever listens.
    const fanout = createFanout({
      maxBufferedBytes: env.WS_MAX_BUFFERED_BYTES,
      formatError: (e) => formatError(e.toJSON(), e),
      onDelivered: (s) => metrics.fanoutLatency.observe(s),
    });
    const connectionsOf = new UserConnections(env.WS_MAX_SOCKETS_PER_USER);
    const ops = await startOps({
      env,
      logger,
      metrics,
      dependencies: async () => ({ database: await database.ping(), redis: redis ? await redis.ping() : undefined }),
    });
    stack.push('metrics listener', () => ops.dispose());
    const streams = attachStreams(schema, app.services, { bodyLimit: limit, formatError, limits, fanout, connectionsOf, inFlight, onOperation: (op) => metrics.operation(op) });
    stack.push('streams', () => streams.dispose());

    httpServer.on('request', (req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const done = (e: unknown) => {
        logger.error({ err: e, path }, 'request failed');
        if (!res.headersSent) sendGraphQLError(res, 500, 'INTERNAL_SERVER_ERROR', 'Internal server error');
        else res.end();
      };
      if (ops.handle(req, res, path)) return;
      if (env.ENABLE_GRAPHIQL && serveDevPages(req, res, path, logger)) return;
      if (handleCors(req, res, env.CORS_ORIGINS)) return;
      if (path === '/graphql/stream') {
        streams.handle(req, res).catch(done);
        return;
      }
      if (path === '/graphql') {
        const requestId = (req.headers['x-request-id'] as string | undefined)?.slice(0, 64) || randomUUID();
        res.setHeader('x-request-id', requestId);
        // The access line costs a child logger and a listener per request: only when it is written.
        if (logger.isLevelEnabled('debug')) {
          const started = performance.now();
          res.once('finish', () => logger.debug({ requestId, method: req.method, status: res.statusCode, ms: Math.round(performance.now() - started) }, 'request'));
        }
        // Inside the scope, lines logged by services (not only through ctx.logger) carry the id too.
        const token = bearerToken(req.headers.authorization);
        let authenticating: Promise<Viewer | null> | undefined;
        const authenticate = () => (authenticating ??= token ? app.services.auth.authenticate(token) : Promise.resolve(null));
        let context: Promise<RequestContext> | undefined;
        const contextOf = () =>
          (context ??= (async () => {
            const viewer = await authenticate();
            if (token && !viewer) throw invalidTokenError();
            if (viewer) void app.services.presence.touch(viewer.userId, viewer.sessionId);
            const userAgent = req.headers['user-agent']?.slice(0, 512) ?? null;
            return new RequestContext(app.services, viewer, clientIp(req, env), requestId, publicOrigin(req, env), userAgent);
          })());
        requestScope.run({ requestId }, () => inFlight.track(handleGraphQL(apollo, req, res, {
          bodyLimit: limit,
          anonymousBodyLimit: env.GRAPHQL_MAX_DOCUMENT_BYTES + 64 * 1024,
          authenticated: async () => !!(await authenticate()),
          maxDocumentBytes: env.GRAPHQL_MAX_DOCUMENT_BYTES,
          context: contextOf,
          fast: { handle: (body) => fastPath.handle(res, body, req.headers.accept, requestId, contextOf), learn: fastPath.learn },
        })).catch(done));
        return;
      }
      const attachment = serveAttachment(req, res, path);
      if (attachment) return void attachment.catch(done);
      sendJson(res, 404, { error: 'Not found' });
    });

    const ws = attachWebSocket(httpServer, schema, app.services, { maxPayload: limit, limits, formatError, fanout, connectionsOf, inFlight, onOperation: (op) => metrics.operation(op) });
    // Sockets are closed with 1001 (and streams ended) before HTTP drains: either would hold the drain open.
    stack.push('websocket', () => ws.dispose());
    metrics.observe({
      openSockets: () => ws.wss.clients.size + streams.size,
      subscriptions: () => fanout.stats.active,
      messagesSent: () => app.services.messages.sent,
      messagesBatched: () => app.services.messages.batchedSends,
      publishFailures: () => pubsub.publishFailures,
      onlineUsers: () => app.services.presence.count(),
      eventsReceived: () => pubsub.received,
      evaluations: () => pubsub.evaluations,
      ordering: () => pubsub.order,
    });
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', (e: NodeJS.ErrnoException) =>
        reject(e.code === 'EADDRINUSE' ? new Error(`port ${env.PORT} on ${env.HOST} is taken (is Parley already running?): set PORT to a free port`) : e),
      );
      httpServer.listen(env.PORT, env.HOST, () => {
        httpServer.removeAllListeners('error');
        resolve();
      });
    });
    if (opts.jobs !== false) {
      const jobs = startJobs(app.services, { metrics });
      stack.push('jobs', () => jobs.dispose());
    }
    const port = (httpServer.address() as AddressInfo).port;
    const host = env.HOST === '0.0.0.0' || env.HOST === '::' ? 'localhost' : env.HOST;

    return {
      url: `http://${host}:${port}/graphql`,
      wsUrl: `ws://${host}:${port}/graphql`,
      port,
      httpServer,
      services: app.services,
      database,
      fanout: fanout.stats,
      metrics,
      fastPath,
      metricsUrl: ops.metricsUrl,
      dispose: async () => {
        ops.drain();
        if (env.SHUTDOWN_DELAY > 0) await new Promise((resolve) => setTimeout(resolve, env.SHUTDOWN_DELAY * 1000));
        return stack.dispose();
      },
    };
  } catch (e) {
    await stack.dispose();
    throw e;
  }
}
