import type { Server } from 'node:http';
import { GraphQLError, type ExecutionResult, type GraphQLFormattedError, type GraphQLSchema } from 'graphql';
import { CloseCode, MessageType, type SubscribePayload } from 'graphql-ws';
import WebSocket, { type WebSocketServer } from 'ws';
import type { Services } from '../modules/services';
import { clientIp, originAllowed } from '../core/http';
import { publicOrigin } from '../modules/message/attachment.links';
import { RateLimitedError } from '../shared/errors';
import type { SocketRate } from '../shared/ratelimit';
import { Topic } from '../shared/pubsub/topics';
import type { UserConnections } from './connections';
import { bearerToken } from '../modules/auth/auth.tokens';
import { SocketContext } from './context';
import type { Viewer } from '../modules/auth/auth.viewer';
import { operationErrors } from './errors';
import type { Fanout, FanoutOperation, FrameSink } from './fanout';
import { corked, nextFrame, writeFrame, type NextFrame } from './frames';
import type { DocumentLimits } from './limits';
import { isRefusal, type OperationPipeline } from './operation';
import { firstCode } from './operation-metrics';
import type { OperationRecord } from '../shared/metrics';
import { Connection, serveTransport, type Transport } from './ws.transport';
import type { InFlight } from '../core/in-flight';

const OPEN = 1;
/** Longest a timer can wait (setTimeout's limit is about 24.8 days; tokens live longer). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Holds an operation's id while it is set up; its own object, so a setup can tell whether the id is still its. */
interface SetUp {
  readonly id: string;
  readonly settingUp: true;
}
type Op = FanoutOperation | SetUp;
const isRunning = (op: Op | undefined): op is FanoutOperation => !!op && 'stop' in op;

/** The connection's operation `id`. */
const opOf = (conn: ParleyConnection, id: string): Op | undefined => conn.ops?.find((op) => op.id === id);

/** Sets `op` in place of the operation with its id, or adds it. */
function putOp(conn: ParleyConnection, op: Op): void {
  const ops = conn.ops ?? [];
  const at = ops.findIndex((o) => o.id === op.id);
  conn.ops = at < 0 ? ops.concat(op) : ops.slice(0, at).concat(op, ops.slice(at + 1));
}

/** Forgets operation `id`. */
function dropOp(conn: ParleyConnection, id: string): void {
  const ops = conn.ops;
  const at = ops ? ops.findIndex((o) => o.id === id) : -1;
  if (at >= 0) conn.ops = ops!.slice(0, at).concat(ops!.slice(at + 1));
}

/** A connection with what Parley keeps of it: who, through which token, and its operations (still one object per socket). */
class ParleyConnection extends Connection {
  viewer: Viewer | null = null;
  context: SocketContext | null = null;
  /** Holds a reference in the membership index. */
  tracked = false;
  /**
   * Its operations (while one is being set up, the marker of that setup), each with its id: an
   * exact-size array replaced on each change, which is rare (a Map of a few costs an idle
   * socket 184 B, this 8 B each). See opOf, putOp, dropOp.
   */
  ops: readonly Op[] | null = null;

  constructor(
    socket: WebSocket,
    ip: string,
    rate: SocketRate,
    /** Where the client reached us (for absolute links), from the upgrade request. */
    readonly origin: string | undefined,
    /** The upgrade's Authorization header, kept until connection_init (then dropped). */
    public authorization: string | undefined,
  ) {
    super(socket, ip, rate);
  }
}

export interface WebSocketHandle {
  wss: WebSocketServer;
  /** Closes every socket with `code` (1001 on shutdown). */
  closeAll(code: number, reason: string): void;
  dispose(): Promise<void>;
}

/**
 * GraphQL over WebSocket on the GraphQL path: Parley's side of the protocol that ws.transport.ts
 * speaks (graphql-ws clients' graphql-transport-ws). A socket authenticates once, in
 * connection_init (or the upgrade's Authorization header); without a valid token it is closed
 * 4403, as it is when its token expires or is revoked. Operations run here: queries and mutations
 * with a context of their own, subscriptions through the shared fan-out.
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
    /** Prepares and runs every operation (compiled plans, shared with the other transports). */
    operations: OperationPipeline;
    /** The subscription fan-out, shared with the SSE transport. */
    fanout: Fanout;
    /** Realtime connections per user, shared with the SSE transport. */
    connectionsOf: UserConnections;
    /** Operations running, which stopping waits for after it closed the sockets. */
    inFlight: InFlight;
    /** Each operation answered (a subscription: once set up or refused), for the per-operation metrics. */
    onOperation?: (op: OperationRecord) => void;
  },
): WebSocketHandle {
  const { logger, env } = services;
  const isProd = env.NODE_ENV === 'production';
  const { fanout, connectionsOf } = opts;
  const { format, formatAll, shape, failure } = operationErrors(opts.formatError, opts.limits);

  /** A socket as the fan-out writes to it: all on the prototype, nothing added per socket. */
  class SinkSocket extends WebSocket implements FrameSink<NextFrame> {
    get encodeNext() {
      return nextFrame;
    }
    get writable() {
      return this.readyState === OPEN;
    }
    get bufferedBytes() {
      return this.bufferedAmount;
    }
    write(frame: NextFrame): void {
      writeFrame(this, frame.framed, frame.payload);
    }
    writeMany(frames: NextFrame[]): void {
      corked(this, () => {
        for (const f of frames) writeFrame(this, f.framed, f.payload);
      });
    }
    drop(): void {
      this.close(1013, 'Try again later');
    }
    // The operation ended on our side: its stream failed, or its socket went. (One that ends
    // while still being set up is reported by subscribe().)
    ended(op: FanoutOperation, error?: unknown): void {
      const conn = transport.connections.get(this);
      if (conn && opOf(conn, op.id) === op) ended(conn, op.id, error);
    }
  }

  // Assigned below, before any socket can connect (the sink class above and the hooks refer to it).
  let transport: Transport<ParleyConnection>;
  const send = (socket: WebSocket, message: object) => transport.send(socket, message);
  /** Returns the errors as sent. */
  const sendError = (conn: ParleyConnection, id: string, errors: readonly GraphQLError[]) => {
    dropOp(conn, id);
    const payload = formatAll(errors);
    send(conn.socket, { id, type: MessageType.Error, payload });
    return payload;
  };

  /** Tells the client an operation ended on our side: complete, or error when it failed. */
  function ended(conn: ParleyConnection, id: string, error: unknown): void {
    dropOp(conn, id);
    send(conn.socket, error === undefined ? { id, type: MessageType.Complete } : { id, type: MessageType.Error, payload: failure(error) });
  }

  /** Whether the setup `slot` of operation `id` is still wanted: not completed by the client (nor the id reused), socket open. */
  const pending = (conn: ParleyConnection, id: string, slot: SetUp) => !conn.closed && opOf(conn, id) === slot;

  /** connection_init: the token, the per-user cap, presence and memberships; a close when refused. */
  async function init(conn: ParleyConnection, payload: Record<string, unknown> | null | undefined): Promise<readonly [number, string] | void> {
    const params = payload ?? {};
    const token = bearerToken(params.authorization ?? params.Authorization ?? params.token ?? conn.authorization);
    conn.authorization = undefined;
    const viewer = token ? await services.auth.authenticate(token).catch(() => null) : null;
    if (conn.closed) return;
    if (!viewer) return [CloseCode.Forbidden, 'Forbidden'];
    // 1013 (try again later), which graphql-ws clients retry with back-off; 4429 would be fatal to them.
    if (!connectionsOf.open(viewer.userId)) return [1013, 'Too many connections'];
    // From here the close hook undoes all of this, whenever the socket goes.
    conn.viewer = viewer;
    expiry.watch(viewer.expiresAt);
    conn.context = new SocketContext(services, viewer, conn.ip, true, conn.origin);
    services.presence.socketOpened(viewer.userId, viewer.sessionId);
    // Held from here; released by the close hook, or here if the socket closed during the load
    // (a failed load releases itself and closes the socket with 4500). Resolves once this instance
    // receives the user's channels, so nothing published after the ack is missed.
    await services.memberships.track(viewer.userId);
    if (conn.closed) return services.memberships.untrack(viewer.userId);
    conn.tracked = true;
  }

  /** Runs one operation and reports how it went (not when the frame was a protocol error that closed the socket). */
  async function subscribe(conn: ParleyConnection, id: string, payload: SubscribePayload, limited: boolean): Promise<void> {
    const started = performance.now();
    const outcome = await opts.inFlight.track(operate(conn, id, payload, limited));
    if (outcome) opts.onOperation?.({ ...outcome, seconds: (performance.now() - started) / 1000 });
  }

  type Outcome = Omit<OperationRecord, 'seconds'> | undefined;
  const failed = (sent: readonly GraphQLFormattedError[]): Outcome => ({ code: firstCode(sent) });

  async function operate(conn: ParleyConnection, id: string, payload: SubscribePayload, limited: boolean): Promise<Outcome> {
    const { socket } = conn;
    // Between the token's expiry and the sweep that closes its socket, nothing more runs on it.
    if (conn.viewer!.expiresAt <= Date.now()) return void socket.close(CloseCode.Forbidden, 'Token expired');
    if (opOf(conn, id)) {
      // A close reason is at most 123 bytes; a long id would make close() throw.
      const reason = `Subscriber for ${id} already exists`;
      return void socket.close(CloseCode.SubscriberAlreadyExists, Buffer.byteLength(reason) <= 123 ? reason : 'Subscriber already exists');
    }
    if (limited) {
      const err = new RateLimitedError(conn.rate.retryAfter(), 'Too many messages on this connection; slow down.');
      const sent = [format(err)];
      send(socket, { id, type: MessageType.Error, payload: sent });
      return failed(sent);
    }
    const slot: SetUp = { id, settingUp: true };
    putOp(conn, slot);
    const viewer = conn.viewer!;
    void services.presence.touch(viewer.userId, viewer.sessionId);
    if (conn.ops!.length > env.WS_MAX_SUBSCRIPTIONS) {
      const e = new GraphQLError(`At most ${env.WS_MAX_SUBSCRIPTIONS} operations can run at once on one connection.`, {
        extensions: { code: 'RATE_LIMITED', reason: 'TOO_MANY_OPERATIONS' },
      });
      return failed(sendError(conn, id, [e]));
    }
    // Parsed and validated with the HTTP path's limits (and cached by text: clients repeat documents).
    const prepared = opts.operations.prepare(payload.query, payload.operationName, payload.variables);
    if (isRefusal(prepared)) return failed(sendError(conn, id, prepared.errors));
    const described = prepared.described;

    let result: ExecutionResult;
    if (prepared.operation.operation === 'subscription') {
      const target = { id, sink: socket as SinkSocket, query: payload.query, variables: payload.variables, operationName: payload.operationName };
      const started = await fanout.subscribe(prepared, conn.context!, target);
      if (!('stop' in started)) {
        result = started;
      } else {
        if (!pending(conn, id, slot)) started.stop();
        else if (started.finished) ended(conn, id, started.failure);
        else putOp(conn, started);
        return described;
      }
    } else {
      // Queries and mutations get a context of their own, as over HTTP.
      result = await opts.operations.run(prepared, new SocketContext(services, viewer, conn.ip, false, conn.origin));
    }
    const answer = shape(result);
    const outcome = { ...described, code: firstCode(answer.errors) };
    if (!pending(conn, id, slot)) return outcome;
    dropOp(conn, id);
    // One write for both frames (a heartbeat's whole answer), not a syscall each.
    corked(socket, () => {
      send(socket, { id, type: MessageType.Next, payload: answer });
      send(socket, { id, type: MessageType.Complete });
    });
    return outcome;
  }

  transport = serveTransport<ParleyConnection>({
    server,
    path: '/graphql',
    maxPayload: opts.maxPayload,
    socketClass: SinkSocket,
    // Browsers send Origin on the upgrade; a page from an origin not in CORS_ORIGINS gets 403.
    originAllowed: (origin) => originAllowed(origin, env.CORS_ORIGINS),
    ipOf: (req) => clientIp(req, env),
    maxPendingPerIp: env.WS_MAX_PENDING_PER_IP,
    initTimeoutMs: env.WS_CONNECTION_INIT_TIMEOUT * 1000,
    keepAliveMs: env.WS_KEEPALIVE * 1000,
    rate: env.RATE_LIMIT_WS_MESSAGES,
    logger,
    production: isProd,
    hooks: {
      create: (socket, req, ip, rate) => new ParleyConnection(socket, ip, rate, publicOrigin(req, env), req.headers.authorization),
      init,
      subscribe,
      complete(conn, id) {
        const op = opOf(conn, id);
        dropOp(conn, id);
        if (isRunning(op)) op.stop();
      },
      closed(conn) {
        if (conn.ops) for (const op of conn.ops) if (isRunning(op)) op.stop();
        conn.ops = null;
        const viewer = conn.viewer;
        if (!viewer) return;
        connectionsOf.close(viewer.userId);
        if (conn.tracked) services.memberships.untrack(viewer.userId);
        services.presence.socketClosed(viewer.userId, viewer.sessionId);
      },
    },
  });
  const connections = transport.connections;

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
        if (at <= now) conn.socket.close(CloseCode.Forbidden, 'Token expired');
        else if (at < next) next = at;
      }
      if (next < Infinity) expiry.watch(next);
    },
  };

  // A revoked token closes every socket opened with it, on every instance.
  const off = services.pubsub.on(Topic.SessionsRevoked, (p) => {
    const hashes = new Set(p.tokenHashes);
    for (const conn of connections.values()) {
      if (conn.viewer && hashes.has(conn.viewer.tokenHash)) conn.socket.close(CloseCode.Forbidden, 'Forbidden');
    }
  });

  return {
    wss: transport.wss,
    closeAll: (code, reason) => transport.closeAll(code, reason),
    async dispose() {
      off();
      clearTimeout(expiry.timer);
      await transport.dispose();
    },
  };
}
