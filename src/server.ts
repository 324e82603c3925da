import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { ApolloServer } from '@apollo/server';
import {
  ApolloServerPluginCacheControlDisabled,
  ApolloServerPluginInlineTraceDisabled,
  ApolloServerPluginLandingPageDisabled,
  ApolloServerPluginSchemaReportingDisabled,
  ApolloServerPluginUsageReportingDisabled,
} from '@apollo/server/plugin/disabled';
import type { GraphQLSchema } from 'graphql';
import type { Env } from './config/env';
import { maskUrl, openDatabase, type Database } from './core/database';
import { handleCors, requestIdOf, sendGraphQLError } from './core/http';
import { hasDemo, serveDevPages } from './core/dev-pages';
import { DisposerStack } from './core/disposer';
import { InFlight } from './core/in-flight';
import { drainHttpServer } from './core/drain';
import { startOps, type Ops } from './core/ops';
import { tuneTierUp } from './core/runtime';
import { entities } from './modules/entities';
import { createServices, type Services } from './modules/services';
import type { Context } from './modules/context';
import { attachmentRoute } from './modules/message/attachment.route';
import { createErrorFormatter, errorLogPlugin, type ErrorFormatter } from './graphql/errors';
import { compiledExecution } from './graphql/executor';
import { createFanout, type Fanout, type FanoutStats } from './graphql/fanout';
import { createFastPath, type FastPath } from './graphql/fast-path';
import { fileBodies, graphqlRoute } from './graphql/http';
import type { BytesInFlight } from './shared/concurrency';
import { anonymousBodyLimit, APQ_CACHE_PREFIX, bodyLimit, documentLimits, type DocumentLimits } from './graphql/limits';
import { OperationPipeline, type OperationStats } from './graphql/operation';
import { operationMetricsPlugin } from './graphql/operation-metrics';
import { createSchema } from './graphql/schema';
import { RealtimeSessions } from './graphql/session';
import { attachStreams, type StreamHandle } from './graphql/sse';
import { attachWebSocket, type WebSocketHandle } from './graphql/ws';
import { startJobs } from './jobs';
import { createLogger, requestScope, type Logger } from './shared/logger';
import { createMetrics, type Metrics, type OperationRecord } from './shared/metrics';
import { createPubSub } from './shared/pubsub/pubsub';
import { channelRoutes } from './modules/conversation/conversation.keys';
import { connectRedis, type RedisConnections } from './shared/redis';

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
  /** Operations and subscription events run on a compiled plan or by graphql-js, every transport together (graphql/operation.ts). */
  operations: Readonly<OperationStats>;
  /**
   * Releases everything, last opened first: jobs, WebSockets (closed with 1001), SSE streams, the
   * realtime sessions, Apollo (draining HTTP), operations still in flight, services, pub/sub, Redis,
   * the database. /readyz answers 503 from the call on, and SHUTDOWN_DELAY passes before the rest.
   */
  dispose(): Promise<void>;
  /** Where /metrics is served when METRICS_PORT is set (then not on `port`). */
  metricsUrl?: string;
}

export interface ServerOptions {
  env: Env;
  logger?: Logger;
  /** Start the cron jobs (the presence sweep). @default true */
  jobs?: boolean;
}

/** What the first steps opened: storage, pub/sub and the services on them. */
interface Core {
  database: Database;
  redis: RedisConnections | undefined;
  pubsub: ReturnType<typeof createPubSub>;
  app: ReturnType<typeof createServices>;
  /** Operations running, which stopping waits for (see openCore). */
  inFlight: InFlight;
}

/** What the GraphQL step opened: the schema and the one way operations run, over HTTP (Apollo and the fast path). */
interface GraphQLEdge {
  schema: GraphQLSchema;
  limits: DocumentLimits;
  operations: OperationPipeline;
  formatError: ErrorFormatter;
  apollo: ApolloServer<Context>;
  fastPath: FastPath;
  /** Whether Apollo's stop began draining HTTP (see drainHttpServer). */
  draining: () => boolean;
}

/** What the realtime step opened: the fan-out both transports share, SSE streams and the WebSocket server. */
interface Realtime {
  fanout: Fanout;
  streams: StreamHandle;
  ws: WebSocketHandle;
  /** Bodies with a file taken in at once, over HTTP and SSE (ATTACHMENT_BYTES_IN_FLIGHT). */
  files: BytesInFlight;
}

/**
 * Starts Parley: database (migrated), Redis or in-process pub/sub, GraphQL over HTTP, WebSocket
 * and SSE on one port, health endpoints and jobs. Each step opens one thing and pushes its
 * teardown on one DisposerStack, released last opened first, on a failed start and on dispose alike.
 * @throws when the database, Redis or the port can't be used; nothing is left running.
 */
export async function startServer(opts: ServerOptions): Promise<ParleyServer> {
  const { env } = opts;
  const logger = opts.logger ?? createLogger(env);
  tuneTierUp();
  const stack = new DisposerStack(logger);
  try {
    // A taken port said before the database is opened: an embedded one was made (and migrated) first, for nothing.
    await portFree(env);
    const metrics = createMetrics();
    const core = await openCore(env, logger, metrics, stack);
    const ops = await openOps(env, logger, metrics, core, stack);
    const httpServer = createHttpServer(httpTimeouts(env));
    // Node closes an idle kept-alive connection after 5 s: a client (or a load balancer, 60 s idle
    // on most) that sends on it as it closes has its request reset, a large upload's most often.
    httpServer.keepAliveTimeout = Math.round(env.HTTP_KEEPALIVE_TIMEOUT * 1000);
    const graphql = await openGraphQL(env, logger, metrics, httpServer, stack);
    const realtime = openRealtime(env, logger, metrics, core, graphql, httpServer, stack);
    httpServer.on('request', router(routes(env, core, graphql, realtime), { env, logger, ops, attachments: attachmentRoute(core.app.services), draining: graphql.draining }));
    observe(metrics, core, realtime);
    await listen(httpServer, env);
    if (opts.jobs !== false) {
      const jobs = startJobs(core.app.services, { metrics });
      stack.push('jobs', () => jobs.dispose());
    }
    const port = (httpServer.address() as AddressInfo).port;
    const host = env.HOST === '0.0.0.0' || env.HOST === '::' ? 'localhost' : env.HOST;
    return {
      url: `http://${host}:${port}/graphql`,
      wsUrl: `ws://${host}:${port}/graphql`,
      port,
      httpServer,
      services: core.app.services,
      database: core.database,
      fanout: realtime.fanout.stats,
      metrics,
      fastPath: graphql.fastPath,
      operations: graphql.operations.stats,
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

const portTaken = (env: Env) => new Error(`port ${env.PORT} on ${env.HOST} is taken (is Parley already running?): set PORT to a free port`);

/** Rejects as listen() would for a port taken now (an ephemeral one, 0, is never). */
function portFree(env: Env): Promise<void> {
  if (env.PORT === 0) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const probe = createNetServer();
    probe.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'EADDRINUSE' ? portTaken(env) : e));
    probe.listen(env.PORT, env.HOST, () => probe.close(() => resolve()));
  });
}

/** The database (migrated), Redis, pub/sub and the services, started; and what stopping waits for. */
async function openCore(env: Env, logger: Logger, metrics: Metrics, stack: DisposerStack): Promise<Core> {
  const database = await openDatabase(env, logger, { entities });
  stack.push('database', () => database.dispose());
  const redis = connectRedis(env, logger);
  if (redis) stack.push('redis', () => redis.dispose());
  const pubsub = createPubSub(redis, logger, channelRoutes({ presencePerUser: env.PRESENCE_VISIBILITY === 'contacts' }), { holdMs: env.MESSAGE_ORDER_HOLD * 1000 });
  stack.push('pubsub', () => pubsub.dispose());
  const app = createServices({ env, logger, orm: database.orm, pubsub, redis });
  stack.push('services', () => app.dispose());
  // Stopping waits here, after HTTP drained and the sockets closed, before services, pub/sub and
  // the database close: an operation whose client went away still commits and publishes. 3 s: the
  // drain's 5 s before it and the rest stay within index.ts's 10 s.
  const inFlight = new InFlight();
  stack.push('operations in flight', () => inFlight.settled(3000));
  // Every failed connect or reconnect attempt of any of the three Redis clients.
  for (const c of redis ? [redis.client, redis.publisher, redis.subscriber] : []) c.on('error', () => metrics.redisErrors.inc());
  // A cluster needs its slot map before the first command. A Redis that does not answer at start
  // is a wrong REDIS_URL far more often than an outage: say so and stop (once running, an outage is ridden out).
  if (redis && !(await redis.ready(5000))) {
    const where = env.REDIS_CLUSTER_NODES ? `the Redis Cluster at ${env.REDIS_CLUSTER_NODES.join(',')}` : `Redis at ${maskUrl(env.REDIS_URL!)}`;
    throw new Error(`${where} does not answer (${redis.lastError ?? 'no reply within 5 s'}): start it, fix ${env.REDIS_CLUSTER_NODES ? 'REDIS_CLUSTER_NODES' : 'REDIS_URL'}, or unset it to keep pub/sub in this process`);
  }
  // One node of a cluster answers only for its own slots: the rest would fail (MOVED) as warnings,
  // and rate limits on them would quietly count per instance.
  if (redis && !env.REDIS_CLUSTER_NODES && /cluster_enabled:1/.test(String(await redis.client.info('cluster').catch(() => '')))) {
    throw new Error(`Redis at ${maskUrl(env.REDIS_URL!)} is a node of a Redis Cluster: list its nodes in REDIS_CLUSTER_NODES (host:port,…) instead of REDIS_URL`);
  }
  await app.start();
  return { database, redis, pubsub, app, inFlight };
}

/** /healthz, /readyz (503 once stopping) and /metrics (METRICS_TOKEN, or on METRICS_PORT): core/ops.ts. */
async function openOps(env: Env, logger: Logger, metrics: Metrics, { database, redis }: Core, stack: DisposerStack): Promise<Ops> {
  const ops = await startOps({
    env,
    logger,
    metrics,
    // Both asked at once: a stalled Redis and a slow database cost /readyz the longer of their waits, not the sum.
    dependencies: async () => {
      const [db, r] = await Promise.all([database.ping(), redis?.ping()]);
      return { database: db, redis: r };
    },
  });
  stack.push('metrics listener', () => ops.dispose());
  return ops;
}

/**
 * A client that trickles its headers or body is cut instead of holding a socket for minutes. The
 * request timeout bounds receiving the request only: SSE and WebSocket responses live on.
 */
function httpTimeouts(env: Env) {
  const headersTimeout = Math.round(env.HTTP_HEADERS_TIMEOUT * 1000);
  return {
    headersTimeout,
    requestTimeout: Math.round(Math.max(env.HTTP_REQUEST_TIMEOUT, env.HTTP_HEADERS_TIMEOUT) * 1000),
    // Node looks for expired requests every 30 s by default, which would triple a 10 s limit.
    connectionsCheckingInterval: Math.min(1000, headersTimeout),
  };
}

/** The schema, the operation pipeline, error shaping, Apollo (started, draining `httpServer` when stopped) and the fast path. */
async function openGraphQL(env: Env, logger: Logger, metrics: Metrics, httpServer: Server, stack: DisposerStack): Promise<GraphQLEdge> {
  const schema = await createSchema();
  const shapeError = createErrorFormatter({ production: env.NODE_ENV === 'production', logger, hideSuggestions: !env.ENABLE_INTROSPECTION });
  const formatError: ErrorFormatter = (formatted, error) => {
    const shaped = shapeError(formatted, error);
    if (shaped.extensions?.code === 'SERVICE_UNAVAILABLE') metrics.dependencyDown(error);
    return shaped;
  };
  const limits = documentLimits(env);
  const operations = new OperationPipeline(schema, limits);
  const fastPath = createFastPath({ operations, limits, formatError, logger, metrics });
  const drain = drainHttpServer(httpServer, 5000);
  const apollo = new ApolloServer<Context>({
    gateway: compiledExecution(schema, operations),
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
      // apollo.stop(): stop accepting, let in-flight requests finish, cut what is left after 5 s.
      drain,
    ],
  });
  await apollo.start();
  // Listening starts later, so Apollo's stop (which drains HTTP) covers the server from then on.
  stack.push('apollo and http', () => apollo.stop());
  return { schema, limits, operations, formatError, apollo, fastPath, draining: drain.stopped };
}

/** The subscription fan-out, the realtime sessions, SSE streams and the WebSocket server, shared by both transports. */
function openRealtime(env: Env, logger: Logger, metrics: Metrics, core: Core, graphql: GraphQLEdge, httpServer: Server, stack: DisposerStack): Realtime {
  const { schema, operations, formatError, limits } = graphql;
  const services = core.app.services;
  // One fan-out for both transports: an event is executed once per shape, whoever listens.
  const fanout = createFanout({
    schema,
    operations,
    maxBufferedBytes: env.WS_MAX_BUFFERED_BYTES,
    formatError: (e) => formatError(e.toJSON(), e),
    onDelivered: (s) => metrics.fanoutLatency.observe(s),
    onSlowConsumer: slowConsumerLog(logger, env.WS_MAX_BUFFERED_BYTES, stack),
  });
  const sessions = new RealtimeSessions(services, env.WS_MAX_SOCKETS_PER_USER, env.REALTIME_OPEN_TIMEOUT * 1000);
  stack.push('realtime sessions', () => sessions.dispose());
  const onOperation = (op: OperationRecord) => metrics.operation(op);
  const shared = { formatError, limits, operations, fanout, sessions, inFlight: core.inFlight, onOperation };
  const files = fileBodies(env, bodyLimit(env));
  const streams = attachStreams(schema, services, { ...shared, bodyLimit: bodyLimit(env), anonymousBodyLimit: anonymousBodyLimit(env), files });
  stack.push('streams', () => streams.dispose());
  const ws = attachWebSocket(httpServer, services, { ...shared, maxPayload: bodyLimit(env) });
  // Sockets are closed with 1001 and streams ended before Apollo's stop drains HTTP: either would hold the drain open.
  stack.push('websocket', () => ws.dispose());
  return { fanout, streams, ws, files };
}

/** Answers one request to a path; a rejection is logged and answered 500. */
type Handler = (req: IncomingMessage, res: ServerResponse, path: string) => void | Promise<void>;

/** A route: its handler, after the developer pages and the CORS check. */
interface Route {
  handle: Handler;
  /** Only for this method (others fall through to what follows: attachments, 404). */
  method?: string;
}

/** The HTTP routes by exact path. */
function routes(env: Env, core: Core, graphql: GraphQLEdge, realtime: Realtime): Map<string, Route> {
  const { app, inFlight } = core;
  return new Map<string, Route>([
    ['/graphql/stream', { handle: (req, res) => realtime.streams.handle(req, res) }],
    ['/graphql', { handle: graphqlRoute({ apollo: graphql.apollo, fastPath: graphql.fastPath, services: app.services, env, inFlight, bodyLimit: bodyLimit(env), files: realtime.files, persisted: (hash) => graphql.limits.apollo.cache.get(`${APQ_CACHE_PREFIX}${hash}`) }) }],
  ]);
}

/**
 * The request listener: the operator's endpoints (probes and scrapers send no Origin), then the developer pages (with ENABLE_GRAPHIQL), CORS,
 * the other routes, attachments (/attachments/:id), and 404 for the rest.
 */
function router(table: Map<string, Route>, o: { env: Env; logger: Logger; ops: Ops; attachments: ReturnType<typeof attachmentRoute>; draining: () => boolean }) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    // Every response says which request it answers (the streams', the probes', a 404), as /graphql's did alone;
    // and none is read as another type than it says (a JSON error shown as HTML).
    const requestId = requestIdOf(req, res);
    res.setHeader('x-content-type-options', 'nosniff');
    const path = (req.url ?? '/').split('?')[0];
    // The access line of every request, a stream's once it ends (/graphql's alone had one: an outside
    // probe). It costs a listener per request: only when it is written.
    if (o.logger.isLevelEnabled('debug')) {
      const started = performance.now();
      res.once('close', () => o.logger.debug({ requestId, method: req.method, path, status: res.statusCode, ms: Math.round(performance.now() - started) }, 'request'));
    }
    const failed = (e: unknown) => {
      o.logger.error({ err: e, path }, 'request failed');
      if (!res.headersSent) sendGraphQLError(res, 500, 'INTERNAL_SERVER_ERROR', 'Internal server error');
      else res.end();
    };
    const found = table.get(path);
    const route = found && (!found.method || found.method === req.method) ? found : undefined;
    const run = (handle: Handler) => {
      try {
        const done = handle(req, res, path);
        if (done) done.catch(failed);
      } catch (e) {
        failed(e);
      }
    };
    if (o.ops.handle(req, res, path)) return;
    if (o.env.ENABLE_GRAPHIQL && serveDevPages(req, res, path, o.logger)) return;
    if (handleCors(req, res, o.env.CORS_ORIGINS)) return;
    if (o.draining()) {
      // Not run: the connection is being ended under it. Refused with nothing written, to be sent
      // again elsewhere (the drain answers it with Connection: close).
      return sendGraphQLError(res, 503, 'SERVICE_UNAVAILABLE', 'The server is stopping; send the request again (another instance will take it).');
    }
    if (route) return run(route.handle);
    const attachment = o.attachments(req, res, path);
    if (attachment) return void attachment.catch(failed);
    const pages = o.env.ENABLE_GRAPHIQL ? ` (GraphiQL at /graphiql${hasDemo() ? ', the demo at /demo/' : ''})` : '';
    sendGraphQLError(res, 404, 'NOT_FOUND', `Nothing is served at this path: GraphQL is at /graphql${pages}.`);
  };
}

/**
 * Subscribers closed for not reading, logged (the metric counts each): one line for the cuts of
 * a second, the first of them, then one in 10 s at most, each with how many since the last. Cut
 * silently, an overload that dropped thirty sockets left no trace in the log nor in /metrics (an
 * outside probe, 2 of 2); a line at the first cut alone said 1 of a burst of 4, and the other 3
 * came with a cut minutes later (a verification probe). Written outside the request that caused
 * it, whose id it would carry.
 */
function slowConsumerLog(logger: Logger, limit: number, stack: DisposerStack): (bufferedBytes: number) => void {
  let loggedAt = -Infinity;
  let closed = 0;
  let most = 0;
  let timer: NodeJS.Timeout | undefined;
  const write = () => {
    timer = undefined;
    loggedAt = Date.now();
    logger.warn({ closed, mostBufferedBytes: most, limit }, 'subscribers closed for not reading past WS_MAX_BUFFERED_BYTES (they reconnect and catch up by query; closed: how many since the last such line)');
    [closed, most] = [0, 0];
  };
  stack.push('slow consumers log', () => {
    clearTimeout(timer);
    if (closed) write();
  });
  return (bufferedBytes) => {
    closed++;
    most = Math.max(most, bufferedBytes);
    if (timer) return;
    const wait = Math.max(1000, loggedAt + 10_000 - Date.now());
    timer = requestScope.exit(() => setTimeout(write, wait));
    timer.unref();
  };
}

/** The gauges /metrics reads from what the server holds. */
function observe(metrics: Metrics, { app, pubsub }: Core, { ws, streams, fanout }: Realtime): void {
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
    slowConsumersClosed: () => fanout.stats.slowConsumersClosed,
  });
}

/** Listens on HOST:PORT; a port already taken is said so. */
function listen(httpServer: Server, env: Env): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    httpServer.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'EADDRINUSE' ? portTaken(env) : e));
    httpServer.listen(env.PORT, env.HOST, () => {
      httpServer.removeAllListeners('error');
      resolve();
    });
  });
}
