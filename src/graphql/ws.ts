import type { IncomingMessage, Server } from 'node:http';
import {
  execute,
  getOperationAST,
  GraphQLError,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLFormattedError,
  type GraphQLSchema,
} from 'graphql';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import type { Services } from '../core/services';
import { clientIp, originAllowed } from '../core/http';
import { publicOrigin } from '../modules/message/attachment.links';
import { RateLimitedError } from '../shared/errors';
import { SocketRate } from '../shared/ratelimit';
import { Topic } from '../shared/pubsub/topics';
import { bearerToken, SocketContext, type Viewer } from './context';
import { createFanout, type FanoutOperation, type FanoutStats } from './fanout';
import type { DocumentLimits } from './limits';
import { describeOperation, firstCode } from './operation-metrics';
import type { OperationRecord } from '../shared/metrics';

const PROTOCOL = 'graphql-transport-ws';
const OPEN = 1;
/** Longest a timer can wait (setTimeout's limit is about 24.8 days; tokens live longer). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A request-level error from graphql-js (no code of its own) as the bad input it is. */
function asBadInput(e: GraphQLError): GraphQLError {
  if (e.extensions?.code) return e;
  return new GraphQLError(e.message, { nodes: e.nodes, extensions: { code: 'BAD_USER_INPUT' } });
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const nullishOr = (v: unknown, ok: (v: unknown) => boolean) => v === undefined || v === null || ok(v);

interface SubscribePayload {
  query: string;
  variables?: Record<string, unknown> | null;
  operationName?: string | null;
}
type ClientMessage =
  | { type: 'connection_init' | 'ping' | 'pong'; payload?: Record<string, unknown> | null }
  | { type: 'subscribe'; id: string; payload: SubscribePayload }
  | { type: 'complete'; id: string };

/** A frame a client may send, shaped as graphql-transport-ws says; anything else closes the socket with 4400. */
function clientMessage(text: string): ClientMessage | null {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(m)) return null;
  switch (m.type) {
    case 'connection_init':
    case 'ping':
    case 'pong':
      return nullishOr(m.payload, isObject) ? (m as ClientMessage) : null;
    case 'subscribe': {
      const p = m.payload;
      if (typeof m.id !== 'string' || !m.id || !isObject(p) || typeof p.query !== 'string') return null;
      const ok = nullishOr(p.variables, isObject) && nullishOr(p.operationName, (v) => typeof v === 'string') && nullishOr(p.extensions, isObject);
      return ok ? (m as ClientMessage) : null;
    }
    case 'complete':
      return typeof m.id === 'string' && m.id ? (m as ClientMessage) : null;
    default:
      return null;
  }
}

/** Holds an operation's id while it is set up; its own object, so a setup can tell whether the id is still its. */
interface SetUp {
  readonly settingUp: true;
}
const isRunning = (op: FanoutOperation | SetUp | undefined): op is FanoutOperation => !!op && 'stop' in op;

/**
 * One socket. Kept small on purpose: an idle server holds one per client, and with graphql-ws
 * a connection with three subscriptions cost about five times a bare socket, in closures,
 * promises and contexts per operation. Listeners are shared functions, keep-alive is one timer
 * for all sockets, and its operations share one context.
 */
class Connection {
  viewer: Viewer | null = null;
  context: SocketContext | null = null;
  /** connection_init arrived (a second one closes with 4429). */
  initReceived = false;
  acknowledged = false;
  /** Counted among its address's sockets not yet acknowledged (WS_MAX_PENDING_PER_IP). */
  pending = false;
  /** Holds a reference in the membership index. */
  tracked = false;
  closed = false;
  /** Answered the last keep-alive ping. */
  alive = true;
  /** Operations by id; while one is being set up, the marker of that setup. */
  ops: Map<string, FanoutOperation | SetUp> | null = null;
  initTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly socket: WebSocket,
    readonly ip: string,
    /** Where the client reached us (for absolute links), from the upgrade request. */
    readonly origin: string | undefined,
    readonly rate: SocketRate,
    /** The upgrade's Authorization header, kept until connection_init (then dropped). */
    public authorization: string | undefined,
  ) {}
}

export interface WebSocketHandle {
  wss: WebSocketServer;
  fanout: FanoutStats;
  /** Closes every socket with `code` (1001 on shutdown). */
  closeAll(code: number, reason: string): void;
  dispose(): Promise<void>;
}

/**
 * The graphql-transport-ws protocol on the GraphQL path, served directly over ws (the protocol
 * graphql-ws clients speak: ids, complete, errors and its close codes). A socket authenticates
 * once, in connection_init (or the upgrade's Authorization header); without a valid token it is
 * closed 4403.
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
    /** Each operation answered (a subscription: once set up or refused), for the per-operation metrics. */
    onOperation?: (op: OperationRecord) => void;
  },
): WebSocketHandle {
  const { logger, env } = services;
  const isProd = env.NODE_ENV === 'production';
  const wss = new WebSocketServer({
    server,
    path: '/graphql',
    // A bigger frame closes the socket with 1009.
    maxPayload: opts.maxPayload,
    handleProtocols: (protocols) => (protocols.has(PROTOCOL) ? PROTOCOL : false),
    // Browsers send Origin on the upgrade; a page from an origin not in CORS_ORIGINS gets 403.
    // An address already holding WS_MAX_PENDING_PER_IP sockets not yet acknowledged gets 429
    // before any socket is made (ws emits 'connection' synchronously after this, so the count is exact).
    verifyClient: (info, done) => {
      if (!originAllowed(info.origin, env.CORS_ORIGINS)) return done(false, 403, 'Origin not allowed');
      if ((pendingOf.get(clientIp(info.req, env)) ?? 0) >= env.WS_MAX_PENDING_PER_IP) {
        return done(false, 429, 'Too many pending connections', { 'retry-after': String(Math.ceil(env.WS_CONNECTION_INIT_TIMEOUT)) });
      }
      done(true);
    },
  });
  // ws re-emits the HTTP server's errors (EADDRINUSE at listen, which startServer reports); unheard, they would crash.
  wss.on('error', (e: Error) => logger.debug({ err: e.message }, 'websocket server error'));
  const connections = new Map<WebSocket, Connection>();
  /** Open, authenticated sockets per user here (a count is all the per-user limit needs). */
  const socketsOf = new Map<string, number>();
  /** Sockets per client address that are not acknowledged yet (unauthenticated, or authenticating). */
  const pendingOf = new Map<string, number>();
  const settled = (conn: Connection) => {
    if (!conn.pending) return;
    conn.pending = false;
    const n = (pendingOf.get(conn.ip) ?? 1) - 1;
    if (n > 0) pendingOf.set(conn.ip, n);
    else pendingOf.delete(conn.ip);
  };
  const format = (e: GraphQLError) => opts.formatError(e.toJSON(), e);
  const formatAll = (errors: readonly GraphQLError[]) => errors.map((e) => format(opts.limits.scrub(e.originalError ? e : asBadInput(e))));
  // An error without a path failed before execution (variables that don't coerce): bad input, as
  // Apollo says. One with a path came from a resolver (a subscription's subscribe included) and
  // is shaped as such: its code kept, or masked and logged when unexpected.
  const shape = (r: ExecutionResult) =>
    r.errors ? { ...r, errors: r.errors.map((e) => format(opts.limits.scrub(e.path ? e : asBadInput(e)))) } : r;

  const send = (socket: WebSocket, message: object) => {
    if (socket.readyState === OPEN) socket.send(JSON.stringify(message));
  };
  /** Returns the errors as sent. */
  const sendError = (conn: Connection, id: string, errors: readonly GraphQLError[]) => {
    conn.ops?.delete(id);
    const payload = formatAll(errors);
    send(conn.socket, { id, type: 'error', payload });
    return payload;
  };

  const fanout = createFanout({
    maxBufferedBytes: env.WS_MAX_BUFFERED_BYTES,
    formatError: format,
    onDelivered: opts.onDelivered,
    // The operation ended on our side: its stream failed, or its socket went. (One that ends
    // while still being set up is reported by subscribe().)
    onEnd: (op, socket, error) => {
      const conn = connections.get(socket);
      if (conn && conn.ops?.get(op.id) === op) ended(conn, op.id, error);
    },
  });

  /** Tells the client an operation ended on our side: complete, or error when it failed. */
  function ended(conn: Connection, id: string, error: unknown): void {
    conn.ops?.delete(id);
    if (error === undefined) return send(conn.socket, { id, type: 'complete' });
    const original = error instanceof Error ? error : new Error(String(error));
    sendError(conn, id, [new GraphQLError(original.message, { originalError: original })]);
  }

  /** Whether the setup `slot` of operation `id` is still wanted: not completed by the client (nor the id reused), socket open. */
  const pending = (conn: Connection, id: string, slot: SetUp) => !conn.closed && conn.ops?.get(id) === slot;

  async function init(conn: Connection, payload: Record<string, unknown> | null | undefined): Promise<void> {
    const { socket } = conn;
    if (conn.initReceived) return socket.close(4429, 'Too many initialisation requests');
    conn.initReceived = true;
    const params = payload ?? {};
    const token = bearerToken(params.authorization ?? params.Authorization ?? params.token ?? conn.authorization);
    conn.authorization = undefined;
    const viewer = token ? await services.auth.authenticate(token).catch(() => null) : null;
    if (conn.closed) return;
    if (!viewer) return socket.close(4403, 'Forbidden');
    const mine = socketsOf.get(viewer.userId) ?? 0;
    // 1013 (try again later), which graphql-ws clients retry with back-off; 4429 would be fatal to them.
    if (mine >= env.WS_MAX_SOCKETS_PER_USER) return socket.close(1013, 'Too many connections');
    socketsOf.set(viewer.userId, mine + 1);
    // From here the close handler undoes all of this, whenever the socket goes.
    conn.viewer = viewer;
    expiry.watch(viewer.expiresAt);
    conn.context = new SocketContext(services, viewer, conn.ip, true, conn.origin);
    services.presence.socketOpened(viewer.userId, viewer.sessionId);
    // Held from here; released by the close handler, or here if the socket closed during the load
    // (a failed load releases itself and closes the socket with 4500).
    await services.memberships.track(viewer.userId);
    if (conn.closed) return services.memberships.untrack(viewer.userId);
    conn.tracked = true;
    clearTimeout(conn.initTimer);
    conn.initTimer = undefined;
    conn.acknowledged = true;
    settled(conn);
    send(socket, { type: 'connection_ack' });
  }

  /** Runs one operation and reports how it went (not when the frame was a protocol error that closed the socket). */
  async function subscribe(conn: Connection, id: string, payload: SubscribePayload, limited: boolean): Promise<void> {
    const started = performance.now();
    const outcome = await operate(conn, id, payload, limited);
    if (outcome) opts.onOperation?.({ ...outcome, seconds: (performance.now() - started) / 1000 });
  }

  type Outcome = Omit<OperationRecord, 'seconds'> | undefined;
  const failed = (sent: readonly GraphQLFormattedError[]): Outcome => ({ code: firstCode(sent) });

  async function operate(conn: Connection, id: string, payload: SubscribePayload, limited: boolean): Promise<Outcome> {
    const { socket } = conn;
    if (!conn.acknowledged) return void socket.close(4401, 'Unauthorized');
    // Between the token's expiry and the sweep that closes its socket, nothing more runs on it.
    if (conn.viewer!.expiresAt <= Date.now()) return void socket.close(4403, 'Token expired');
    const ops = (conn.ops ??= new Map());
    if (ops.has(id)) {
      // A close reason is at most 123 bytes; a long id would make close() throw.
      const reason = `Subscriber for ${id} already exists`;
      return void socket.close(4409, Buffer.byteLength(reason) <= 123 ? reason : 'Subscriber already exists');
    }
    if (limited) {
      const err = new RateLimitedError(conn.rate.retryAfter(), 'Too many messages on this connection; slow down.');
      const sent = [format(err)];
      send(socket, { id, type: 'error', payload: sent });
      return failed(sent);
    }
    const slot: SetUp = { settingUp: true };
    ops.set(id, slot);
    const viewer = conn.viewer!;
    void services.presence.touch(viewer.userId, viewer.sessionId);
    if (ops.size > env.WS_MAX_SUBSCRIPTIONS) {
      const e = new GraphQLError(`At most ${env.WS_MAX_SUBSCRIPTIONS} operations can run at once on one connection.`, {
        extensions: { code: 'RATE_LIMITED', reason: 'TOO_MANY_OPERATIONS' },
      });
      return failed(sendError(conn, id, [e]));
    }
    // Parsed and validated with the HTTP path's limits (and cached by text: clients repeat documents).
    const checked = opts.limits.check(schema, payload.query);
    if ('errors' in checked) return failed(sendError(conn, id, checked.errors));
    const operation = getOperationAST(checked.document, payload.operationName);
    if (!operation) {
      // Worded as over HTTP (graphql-js), not graphql-ws's "Unable to identify operation".
      const message = payload.operationName ? `Unknown operation named "${payload.operationName}".` : 'Must provide operation name if query contains multiple operations.';
      return failed(sendError(conn, id, [new GraphQLError(message)]));
    }
    const described = describeOperation(operation);
    const args: ExecutionArgs = { schema, document: checked.document, operationName: payload.operationName, variableValues: payload.variables };

    let result: ExecutionResult;
    if (operation.operation === 'subscription') {
      const target = { id, socket, query: payload.query, variables: payload.variables, operationName: payload.operationName };
      const started = await fanout.subscribe({ ...args, contextValue: conn.context }, operation, target);
      if (!('stop' in started)) {
        result = started;
      } else {
        if (!pending(conn, id, slot)) started.stop();
        else if (started.finished) ended(conn, id, started.failure);
        else ops.set(id, started);
        return described;
      }
    } else {
      // Queries and mutations get a context of their own, as over HTTP.
      result = (await execute({ ...args, contextValue: new SocketContext(services, viewer, conn.ip, false, conn.origin) })) as ExecutionResult;
    }
    const answer = shape(result);
    const outcome = { ...described, code: firstCode(answer.errors) };
    if (!pending(conn, id, slot)) return outcome;
    ops.delete(id);
    // One write for both frames (a heartbeat's whole answer), not a syscall each.
    const raw = (socket as unknown as { _socket?: { cork(): void; uncork(): void } })._socket;
    raw?.cork();
    send(socket, { id, type: 'next', payload: answer });
    send(socket, { id, type: 'complete' });
    raw?.uncork();
    return outcome;
  }

  async function handle(conn: Connection, data: RawData): Promise<void> {
    const { socket } = conn;
    const verdict = conn.rate.hit();
    if (verdict === 'abuse') return socket.close(1008, 'Rate limit exceeded');
    const message = clientMessage(String(data));
    if (!message) return socket.close(4400, 'Invalid message received');
    switch (message.type) {
      case 'connection_init':
        return init(conn, message.payload);
      case 'ping':
        return send(socket, message.payload ? { type: 'pong', payload: message.payload } : { type: 'pong' });
      case 'pong':
        return;
      case 'subscribe':
        return subscribe(conn, message.id, message.payload, verdict === 'limited');
      case 'complete': {
        const op = conn.ops?.get(message.id);
        conn.ops?.delete(message.id);
        if (isRunning(op)) op.stop();
        return;
      }
    }
  }

  // Listeners shared by every socket (ws calls them with the socket as `this`): none per connection.
  function onMessage(this: WebSocket, data: RawData): void {
    const conn = connections.get(this);
    if (!conn) return;
    handle(conn, data).catch((e: unknown) => {
      logger.error({ err: e }, 'websocket message failed');
      const reason = e instanceof Error && e.message.length < 124 ? e.message : 'Internal server error';
      this.close(4500, isProd ? 'Internal server error' : reason);
    });
  }

  function onClose(this: WebSocket): void {
    const conn = connections.get(this);
    if (!conn) return;
    connections.delete(this);
    conn.closed = true;
    settled(conn);
    clearTimeout(conn.initTimer);
    if (conn.ops) for (const op of conn.ops.values()) if (isRunning(op)) op.stop();
    conn.ops = null;
    const viewer = conn.viewer;
    if (!viewer) return;
    const mine = (socketsOf.get(viewer.userId) ?? 1) - 1;
    if (mine > 0) socketsOf.set(viewer.userId, mine);
    else socketsOf.delete(viewer.userId);
    if (conn.tracked) services.memberships.untrack(viewer.userId);
    services.presence.socketClosed(viewer.userId, viewer.sessionId);
  }

  function onPong(this: WebSocket): void {
    const conn = connections.get(this);
    if (conn) conn.alive = true;
  }

  // ws closes the socket itself on a protocol error (1009 for a frame over maxPayload).
  function onError(e: Error & { code?: string }): void {
    logger.debug({ err: e.message, code: e.code }, 'websocket error');
  }

  function initTimedOut(conn: Connection): void {
    if (!conn.initReceived) conn.socket.close(4408, 'Connection initialisation timeout');
  }

  wss.on('connection', (socket: WebSocket, req: IncomingMessage) => {
    socket.on('error', onError);
    if (socket.protocol !== PROTOCOL) return socket.close(4406, 'Subprotocol not acceptable');
    const conn = new Connection(socket, clientIp(req, env), publicOrigin(req, env), new SocketRate(env.RATE_LIMIT_WS_MESSAGES), req.headers.authorization);
    connections.set(socket, conn);
    conn.pending = true;
    pendingOf.set(conn.ip, (pendingOf.get(conn.ip) ?? 0) + 1);
    if (env.WS_CONNECTION_INIT_TIMEOUT > 0) conn.initTimer = setTimeout(initTimedOut, env.WS_CONNECTION_INIT_TIMEOUT * 1000, conn);
    socket.on('message', onMessage);
    socket.on('close', onClose);
    socket.on('pong', onPong);
  });

  // Keep-alive: one timer for every socket. A socket that didn't answer the last ping is dead.
  const keepAlive =
    env.WS_KEEPALIVE > 0
      ? setInterval(() => {
          for (const conn of connections.values()) {
            if (conn.socket.readyState !== OPEN) continue;
            if (!conn.alive) {
              conn.socket.terminate();
              continue;
            }
            conn.alive = false;
            conn.socket.ping();
          }
        }, env.WS_KEEPALIVE * 1000)
      : undefined;
  keepAlive?.unref();

  // Token expiry: one timer for every socket, armed for the earliest expiry among them. A sweep
  // closes each socket whose token has expired with 4403 (graphql-ws clients reconnect with fresh
  // connectionParams); sweeps run at most once a second, however many tokens expire apart.
  const expiry = {
    timer: undefined as NodeJS.Timeout | undefined,
    at: Infinity,
    lastSweep: 0,
    watch(at: number): void {
      if (at >= expiry.at) return;
      expiry.at = at;
      clearTimeout(expiry.timer);
      const now = Date.now();
      const delay = Math.max(at - now, expiry.lastSweep + 1000 - now, 0);
      expiry.timer = setTimeout(expiry.sweep, Math.min(delay, MAX_TIMER_MS));
      expiry.timer.unref();
    },
    sweep(): void {
      const now = (expiry.lastSweep = Date.now());
      expiry.at = Infinity;
      expiry.timer = undefined;
      let next = Infinity;
      for (const conn of connections.values()) {
        const at = conn.viewer?.expiresAt;
        if (at === undefined || conn.closed) continue;
        if (at <= now) conn.socket.close(4403, 'Token expired');
        else if (at < next) next = at;
      }
      if (next < Infinity) expiry.watch(next);
    },
  };

  // A revoked token closes every socket opened with it, on every instance.
  const off = services.pubsub.on(Topic.SessionsRevoked, (p) => {
    const hashes = new Set(p.tokenHashes);
    for (const conn of connections.values()) {
      if (conn.viewer && hashes.has(conn.viewer.tokenHash)) conn.socket.close(4403, 'Forbidden');
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
      clearInterval(keepAlive);
      clearTimeout(expiry.timer);
      for (const client of wss.clients) client.close(1001, 'Going away');
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      for (const client of wss.clients) client.terminate();
    },
  };
}
