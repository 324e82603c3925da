import type { IncomingMessage, Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import { GraphQLError, type ExecutionArgs, type GraphQLFormattedError, type GraphQLSchema } from 'graphql';
import { WebSocketServer, type WebSocket } from 'ws';
import { useServer } from 'graphql-ws/use/ws';
import type { Services } from '../core/services';
import { clientIp, originAllowed } from '../core/http';
import { RateLimitedError } from '../shared/errors';
import { SocketRate } from '../shared/ratelimit';
import { Topic } from '../shared/pubsub/topics';
import { bearerToken, createContext, type Viewer } from './context';
import { createFanout, type FanoutContext, type FanoutStats } from './fanout';
import type { DocumentLimits } from './limits';

/** A request-level error from graphql-js or graphql-ws (no code of its own) as the bad input it is. */
function asBadInput(e: GraphQLError): GraphQLError {
  if (e.extensions?.code) return e;
  return new GraphQLError(e.message, { nodes: e.nodes, extensions: { code: 'BAD_USER_INPUT' } });
}

/** Message types a client may send (graphql-transport-ws); anything else closes the socket with 4400. */
const CLIENT_MESSAGES = new Set(['connection_init', 'ping', 'pong', 'subscribe', 'complete']);

interface SocketState {
  viewer: Viewer;
  ip: string;
}

export interface WebSocketHandle {
  wss: WebSocketServer;
  fanout: FanoutStats;
  /** Closes every socket with `code` (1001 on shutdown). */
  closeAll(code: number, reason: string): void;
  dispose(): Promise<void>;
}

/**
 * graphql-ws on the GraphQL path. A socket authenticates once, in connection_init (or
 * the upgrade's Authorization header); without a valid token it is closed 4403.
 */
export function attachWebSocket(
  server: Server,
  schema: GraphQLSchema,
  services: Services,
  opts: {
    maxPayload: number;
    formatError: (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError;
    /** Parse and validation with the same limits as HTTP. */
    limits: DocumentLimits;
    /** Fan-out latency per frame written, in seconds (the metric). */
    onDelivered?: (seconds: number) => void;
  },
): WebSocketHandle {
  const { logger } = services;
  const { env } = services;
  const wss = new WebSocketServer({
    server,
    path: '/graphql',
    // A bigger frame closes the socket with 1009.
    maxPayload: opts.maxPayload,
    // Browsers send Origin on the upgrade; a page from an origin not in CORS_ORIGINS gets 403.
    verifyClient: (info, done) => (originAllowed(info.origin, env.CORS_ORIGINS) ? done(true) : done(false, 403, 'Origin not allowed')),
  });
  const sockets = new Map<WebSocket, SocketState>();
  const socketsOf = new Map<string, Set<WebSocket>>();
  const format = (e: GraphQLError) => opts.formatError(e.toJSON(), e);

  // Registered before graphql-ws's own handler, so every frame passes this gate first: the
  // per-socket rate, and message types no client should send, are handled before the protocol.
  wss.on('connection', (socket) => {
    const rate = new SocketRate(env.RATE_LIMIT_WS_MESSAGES);
    const on = socket.on.bind(socket);
    socket.on = ((event: string, listener: (...args: any[]) => void) => {
      // ws closes the socket itself on a protocol error (1009 for a frame over maxPayload); graphql-ws
      // would print it with console.error, so it goes to the logger instead.
      if (event === 'error') return on('error', (e: Error & { code?: string }) => logger.debug({ err: e.message, code: e.code }, 'websocket error'));
      if (event !== 'message') return on(event, listener);
      return on('message', (data: unknown, isBinary: boolean) => {
        if (gate(socket, rate, data)) listener(data, isBinary);
      });
    }) as typeof socket.on;
  });

  function gate(socket: WebSocket, rate: SocketRate, data: unknown): boolean {
    const verdict = rate.hit();
    if (verdict === 'abuse') {
      socket.close(1008, 'Rate limit exceeded');
      return false;
    }
    let msg: { type?: unknown; id?: unknown } | null = null;
    try {
      msg = JSON.parse(String(data));
    } catch {
      return true; // graphql-ws closes with 4400
    }
    if (msg && typeof msg === 'object' && typeof msg.type === 'string' && !CLIENT_MESSAGES.has(msg.type)) {
      socket.close(4400, 'Invalid message received');
      return false;
    }
    if (verdict === 'limited' && msg?.type === 'subscribe' && typeof msg.id === 'string') {
      const err = new RateLimitedError(rate.retryAfter(), 'Too many messages on this connection; slow down.');
      socket.send(JSON.stringify({ id: msg.id, type: 'error', payload: [format(err)] }));
      return false;
    }
    return true;
  }
  const fanout = createFanout({
    maxBufferedBytes: services.env.WS_MAX_BUFFERED_BYTES,
    formatError: (e) => opts.formatError(e.toJSON(), e),
    onDelivered: opts.onDelivered,
  });

  const serverCleanup = useServer<Record<string, unknown>, { state?: SocketState }>(
    {
      schema,
      isProd: env.NODE_ENV === 'production',
      connectionInitWaitTimeout: env.WS_CONNECTION_INIT_TIMEOUT * 1000,
      subscribe: fanout.subscribe,
      onConnect: async (ctx) => {
        const params = ctx.connectionParams ?? {};
        const req = ctx.extra.request as IncomingMessage;
        const token = bearerToken(params.authorization ?? params.Authorization ?? params.token ?? req.headers.authorization);
        const viewer = token ? await services.auth.authenticate(token).catch(() => null) : null;
        if (!viewer) return false; // graphql-ws closes with 4403 Forbidden
        let mine = socketsOf.get(viewer.userId);
        if (mine && mine.size >= env.WS_MAX_SOCKETS_PER_USER) {
          // The first close wins: the client sees 4429 (graphql-ws clients don't retry it), not 4403.
          ctx.extra.socket.close(4429, 'Too many connections');
          return false;
        }
        if (!mine) socketsOf.set(viewer.userId, (mine = new Set()));
        mine.add(ctx.extra.socket);
        const state = { viewer, ip: clientIp(req, services.env) };
        ctx.extra.state = state;
        // Everything needed from the upgrade request is read; don't hold it (headers and all) for the socket's life.
        (ctx.extra as { request?: unknown }).request = undefined;
        sockets.set(ctx.extra.socket, state);
        await services.memberships.track(viewer.userId);
        services.presence.socketOpened(viewer.userId, viewer.sessionId);
        return true;
      },
      onClose: (ctx) => {
        const state = ctx.extra.state;
        sockets.delete(ctx.extra.socket);
        if (!state) return;
        const mine = socketsOf.get(state.viewer.userId);
        mine?.delete(ctx.extra.socket);
        if (mine && !mine.size) socketsOf.delete(state.viewer.userId);
        services.memberships.untrack(state.viewer.userId);
        services.presence.socketClosed(state.viewer.userId, state.viewer.sessionId);
      },
      onSubscribe: (ctx, _id, payload) => {
        const state = ctx.extra.state;
        if (state) void services.presence.touch(state.viewer.userId, state.viewer.sessionId);
        // graphql-ws has already counted this one.
        if (Object.keys(ctx.subscriptions).length > env.WS_MAX_SUBSCRIPTIONS) {
          return [
            new GraphQLError(`At most ${env.WS_MAX_SUBSCRIPTIONS} operations can run at once on one connection.`, {
              extensions: { code: 'RATE_LIMITED', reason: 'TOO_MANY_OPERATIONS' },
            }),
          ];
        }
        // Parsed and validated here, with the HTTP path's limits, so bad documents get errors instead of a 4500 close.
        const checked = opts.limits.check(schema, payload.query);
        if ('errors' in checked) return checked.errors;
        return { schema, document: checked.document, operationName: payload.operationName, variableValues: payload.variables } as ExecutionArgs;
      },
      // Queries and mutations over the socket get the same error shaping as over HTTP. A result
      // without data failed before execution (variables that don't coerce): bad input, as Apollo says.
      onNext: (_ctx, _id, _payload, _args, result) =>
        result.errors ? { ...result, errors: result.errors.map((e) => format(opts.limits.scrub(result.data === undefined ? asBadInput(e) : e))) } : undefined,
      onError: (_ctx, _id, _payload, errors) => errors.map((e) => format(opts.limits.scrub(e.originalError ? e : asBadInput(e)))),
      context: (ctx, id, payload) => {
        const state = ctx.extra.state!;
        const requestId = randomUUID();
        const context: FanoutContext = createContext(services, state.viewer, { ip: state.ip, requestId, logger: logger.child({ requestId }) }, { freshPerEvent: true });
        context.operation = { id, socket: ctx.extra.socket, query: payload.query, variables: payload.variables, operationName: payload.operationName };
        return context;
      },
    },
    wss,
    env.WS_KEEPALIVE * 1000,
  );

  // A revoked token closes every socket opened with it, on every instance.
  const off = services.pubsub.on(Topic.SessionsRevoked, (p) => {
    const hashes = new Set(p.tokenHashes);
    for (const [socket, state] of sockets) {
      if (hashes.has(state.viewer.tokenHash)) socket.close(4403, 'Forbidden');
    }
  });

  return {
    wss,
    fanout: fanout.stats,
    closeAll(code, reason) {
      for (const client of wss.clients) client.close(code, reason);
    },
    async dispose() {
      off();
      for (const client of wss.clients) client.close(1001, 'Going away');
      await serverCleanup.dispose();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      for (const client of wss.clients) client.terminate();
    },
  };
}
