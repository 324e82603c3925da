import type { IncomingMessage, Server } from 'node:http';
import { CloseCode, GRAPHQL_TRANSPORT_WS_PROTOCOL, MessageType, validateMessage, type SubscribePayload } from 'graphql-ws';
import WebSocket, { WebSocketServer, type RawData } from 'ws';
import type { Logger } from '../shared/logger';
import type { RateSpec } from '../config/env';
import { SocketRate } from '../shared/ratelimit';
import { carryPing, type PingCarrier } from './frames';
import { MAX_BODY_VALUES, tooManyValues } from './limits';

const OPEN = 1;

/** How long stopping waits for the sockets it closed to answer the close before it cuts them. */
const CLOSE_WAIT_MS = 500;
/**
 * How long a socket this server closed may take to answer the close before it is cut (ws waits
 * 30 s by default). A peer that never answers (a slow reader cut with 1013, its close frame
 * behind megabytes it will not read; a socket closed with 4408 by a client that sent nothing)
 * kept its place in WS_MAX_SOCKETS_PER_USER and WS_MAX_PENDING_PER_IP all that time: an outside
 * probe was refused for 30 s after the server had given up on those sockets.
 */
export const CLOSE_HANDSHAKE_MS = 2000;
/**
 * A keep-alive round is spread over slices about this long (at most KEEPALIVE_SLICES a round):
 * pinging 5,000 sockets in one turn of the event loop took ~50 ms of writes, and their pongs as
 * much again, with every request and delivery waiting behind them.
 */
const KEEPALIVE_SLICE_MS = 250;
const KEEPALIVE_SLICES = 48;

/**
 * One socket as the transport knows it. Kept small on purpose: an idle server holds one per
 * client (graphql-ws's server cost about five times a bare socket per connection, in closures,
 * promises and contexts per operation). The application extends it with its own fields (see
 * `TransportHooks.create`), so a connection is still one object.
 */
export class SocketConnection {
  /** connection_init arrived (a second one closes with 4429). */
  initReceived = false;
  acknowledged = false;
  /** Counted among its address's sockets not yet acknowledged (`maxPendingPerIp`). */
  pending = false;
  closed = false;
  /** Answered the last keep-alive ping. */
  alive = true;
  /** Its keep-alive slice: the turn of the round in which it is pinged. */
  keepAliveSlice = 0;
  initTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly socket: WebSocket,
    /** The client's address (rate limits, the pending cap). */
    readonly ip: string,
    readonly rate: SocketRate,
  ) {}
}

/** What the application decides; the transport does the protocol around it. */
export interface TransportHooks<C extends SocketConnection> {
  /** Makes the connection object of a new socket (a subclass of SocketConnection holding the application's state). */
  create(socket: WebSocket, req: IncomingMessage, ip: string, rate: SocketRate): C;
  /**
   * connection_init (the first one): authenticates. Resolves with a close (code, reason) to refuse,
   * or nothing to acknowledge. When the socket closed meanwhile, nothing is sent either way.
   */
  init(conn: C, payload: Record<string, unknown> | null | undefined): Promise<readonly [number, string] | void>;
  /** A subscribe on an acknowledged connection; `limited` when the socket is over its message rate. */
  subscribe(conn: C, id: string, payload: SubscribePayload, limited: boolean): Promise<void>;
  /** The client completed an operation. */
  complete(conn: C, id: string): void;
  /** The socket closed (after init or not): undo what init did. */
  closed(conn: C): void;
}

export interface TransportOptions<C extends SocketConnection> {
  server: Server;
  path: string;
  /** A bigger frame closes the socket with 1009. */
  maxPayload: number;
  /** The same before the socket is acknowledged: an unauthenticated socket must not make the server hold megabytes (as HTTP's anonymous body limit). */
  pendingMaxPayload: number;
  /** The socket class ws creates (the application's subclass, all on its prototype). */
  socketClass: typeof WebSocket;
  /** May a browser page of this origin open a socket? Otherwise the upgrade gets 403. */
  originAllowed(origin: string | undefined): boolean;
  /** The client's address, from the upgrade request. */
  ipOf(req: IncomingMessage): string;
  /** Sockets one address may hold that are not acknowledged yet; beyond, the upgrade gets 429. */
  maxPendingPerIp: number;
  /** A socket that sends no connection_init within this closes with 4408 (0: never). @default off */
  initTimeoutMs: number;
  /** Ping interval; a socket that missed the last pong is cut (0: off). */
  keepAliveMs: number;
  /** Frames per socket (`count/duration`): beyond, operations are `limited`; at twice the rate the socket closes with 1008. */
  rate: RateSpec;
  logger: Logger;
  /** Hide a failure's message in its 4500 close reason. */
  production: boolean;
  hooks: TransportHooks<C>;
}

export interface Transport<C extends SocketConnection> {
  wss: WebSocketServer;
  /** The connection of one of its sockets. */
  connectionOf(socket: WebSocket): C | undefined;
  /** Closes every socket with `code` (1001 on shutdown). */
  closeAll(code: number, reason: string): void;
  dispose(): Promise<void>;
}

/** Sends one protocol message if the socket is open. */
export function sendMessage(socket: WebSocket, message: object): void {
  if (socket.readyState === OPEN) socket.send(JSON.stringify(message));
}

/**
 * The longest operation id taken. A socket keeps each running operation's id (and an answer names
 * it): fifty ids of 100,000 characters held 5 MB on one socket (an outside probe); clients number
 * them or use UUIDs.
 */
export const MAX_OPERATION_ID = 128;

/** Client messages, by what graphql-ws's validateMessage accepts; a server's message type from a client is a bad request, as is an id past MAX_OPERATION_ID. */
function clientMessage(text: string) {
  try {
    const m = validateMessage(JSON.parse(text));
    if ((m.type === MessageType.Subscribe || m.type === MessageType.Complete) && m.id.length > MAX_OPERATION_ID) return null;
    return m.type === MessageType.ConnectionInit || m.type === MessageType.Ping || m.type === MessageType.Pong || m.type === MessageType.Subscribe || m.type === MessageType.Complete
      ? m
      : null;
  } catch {
    return null;
  }
}

/**
 * One socket's frame limit, changed while it is open. ws takes a single maxPayload per server and
 * keeps it on each socket's receiver (ws 8: `_receiver._maxPayload`, read as each frame's length
 * arrives); test/ws-hardening.test.ts fails if that stops limiting a pending socket's frames.
 */
function payloadLimit(socket: WebSocket, bytes: number): void {
  const receiver = (socket as unknown as { _receiver?: { _maxPayload?: number } })._receiver;
  if (receiver && typeof receiver._maxPayload === 'number') receiver._maxPayload = bytes;
}

/**
 * The graphql-transport-ws protocol over ws, as graphql-ws's own server speaks it (its message
 * validation, close codes and ping/pong), without graphql-ws's per-connection closures: one
 * SocketConnection per socket, listeners shared by every socket, one keep-alive timer for all
 * (a slice of them a turn). The application's decisions (who may connect, what an operation
 * does, what closing undoes) come in as `hooks`.
 */
export function serveTransport<C extends SocketConnection>(opts: TransportOptions<C>): Transport<C> {
  const { logger, hooks } = opts;
  const connections = new Map<WebSocket, C>();
  /** The keep-alive round's slices of sockets (none when keep-alive is off), the sockets dealt so far, and the turns taken. */
  const wheel = Array.from({ length: opts.keepAliveMs > 0 ? Math.max(1, Math.min(KEEPALIVE_SLICES, Math.floor(opts.keepAliveMs / KEEPALIVE_SLICE_MS))) : 0 }, () => new Set<C>());
  let joined = 0;
  let turn = 0;
  /** Sockets per client address that are not acknowledged yet (unauthenticated, or authenticating). */
  const pendingOf = new Map<string, number>();
  const wss = new WebSocketServer({
    WebSocket: opts.socketClass,
    server: opts.server,
    path: opts.path,
    maxPayload: opts.maxPayload,
    // Compressing costs each socket a zlib context and each message a deflate per socket; a
    // fan-out writes one frame to thousands of sockets as is (frames.ts).
    perMessageDeflate: false,
    // ws 8.18's option, not yet in @types/ws.
    ...{ closeTimeout: CLOSE_HANDSHAKE_MS },
    // Another subprotocol offered (the legacy `graphql-ws` of subscriptions-transport-ws) is echoed
    // so that its client completes the handshake and hears the 4406 below: refused in the
    // handshake, a standard client dropped the socket itself (1006) and never learnt why.
    handleProtocols: (protocols) => (protocols.has(GRAPHQL_TRANSPORT_WS_PROTOCOL) ? GRAPHQL_TRANSPORT_WS_PROTOCOL : (protocols.values().next().value ?? false)),
    // ws emits 'connection' synchronously after this, so the pending count is exact.
    verifyClient: (info, done) => {
      if (!opts.originAllowed(info.origin)) return done(false, 403, 'Origin not allowed');
      if ((pendingOf.get(opts.ipOf(info.req)) ?? 0) >= opts.maxPendingPerIp) {
        return done(false, 429, 'Too many pending connections', { 'retry-after': String(Math.max(1, Math.ceil(opts.initTimeoutMs / 1000))) });
      }
      done(true);
    },
  });
  // ws re-emits the HTTP server's errors (EADDRINUSE at listen, which startServer reports); unheard, they would crash.
  wss.on('error', (e: Error) => logger.debug({ err: e.message }, 'websocket server error'));

  const settled = (conn: C) => {
    if (!conn.pending) return;
    conn.pending = false;
    const n = (pendingOf.get(conn.ip) ?? 1) - 1;
    if (n > 0) pendingOf.set(conn.ip, n);
    else pendingOf.delete(conn.ip);
  };

  const send = sendMessage;

  async function init(conn: C, payload: Record<string, unknown> | null | undefined): Promise<void> {
    if (conn.initReceived) return conn.socket.close(CloseCode.TooManyInitialisationRequests, 'Too many initialisation requests');
    conn.initReceived = true;
    const refused = await hooks.init(conn, payload);
    if (conn.closed) return;
    if (refused) return conn.socket.close(refused[0], refused[1]);
    clearTimeout(conn.initTimer);
    conn.initTimer = undefined;
    conn.acknowledged = true;
    payloadLimit(conn.socket, opts.maxPayload);
    settled(conn);
    send(conn.socket, { type: MessageType.ConnectionAck });
  }

  async function handle(conn: C, data: RawData): Promise<void> {
    const { socket } = conn;
    const verdict = conn.rate.hit();
    if (verdict === 'abuse') return socket.close(1008, 'Rate limit exceeded');
    const text = String(data);
    // As an oversized frame: what it holds would cost the event loop more than its size says (see MAX_BODY_VALUES).
    if (tooManyValues(text)) return socket.close(1009, `More than ${MAX_BODY_VALUES} values in one message`);
    const message = clientMessage(text);
    if (!message) return socket.close(CloseCode.BadRequest, 'Invalid message received');
    switch (message.type) {
      case MessageType.ConnectionInit:
        return init(conn, message.payload);
      case MessageType.Ping:
        return send(socket, message.payload ? { type: MessageType.Pong, payload: message.payload } : { type: MessageType.Pong });
      case MessageType.Pong:
        return;
      case MessageType.Subscribe:
        if (!conn.acknowledged) return socket.close(CloseCode.Unauthorized, 'Unauthorized');
        return hooks.subscribe(conn, message.id, message.payload, verdict === 'limited');
      case MessageType.Complete:
        return hooks.complete(conn, message.id);
    }
  }

  // Listeners shared by every socket (ws calls them with the socket as `this`): none per connection.
  function onMessage(this: WebSocket, data: RawData): void {
    const conn = connections.get(this);
    if (!conn) return;
    handle(conn, data).catch((e: unknown) => {
      logger.error({ err: e }, 'websocket message failed');
      const reason = e instanceof Error && e.message.length < 124 ? e.message : 'Internal server error';
      this.close(CloseCode.InternalServerError, opts.production ? 'Internal server error' : reason);
    });
  }

  function onClose(this: WebSocket): void {
    const conn = connections.get(this);
    if (!conn) return;
    connections.delete(this);
    wheel[conn.keepAliveSlice]?.delete(conn);
    conn.closed = true;
    settled(conn);
    clearTimeout(conn.initTimer);
    hooks.closed(conn);
  }

  function onPong(this: WebSocket): void {
    const conn = connections.get(this);
    if (conn) conn.alive = true;
  }

  // ws closes the socket itself on a protocol error (1009 for a frame over maxPayload).
  function onError(e: Error & { code?: string }): void {
    logger.debug({ err: e.message, code: e.code }, 'websocket error');
  }

  function initTimedOut(conn: C): void {
    if (conn.initReceived) return;
    conn.socket.close(CloseCode.ConnectionInitialisationTimeout, 'Connection initialisation timeout');
    // No longer waiting for its connection_init: its address may open another at once (the 429's Retry-After).
    settled(conn);
  }

  wss.on('connection', (socket: WebSocket, req: IncomingMessage) => {
    socket.on('error', onError);
    if (socket.protocol !== GRAPHQL_TRANSPORT_WS_PROTOCOL) return socket.close(CloseCode.SubprotocolNotAcceptable, 'Subprotocol not acceptable');
    const ip = opts.ipOf(req);
    const conn = hooks.create(socket, req, ip, new SocketRate(opts.rate));
    connections.set(socket, conn);
    if (wheel.length) {
      conn.keepAliveSlice = joined++ % wheel.length;
      wheel[conn.keepAliveSlice].add(conn);
    }
    conn.pending = true;
    payloadLimit(socket, Math.min(opts.pendingMaxPayload, opts.maxPayload));
    pendingOf.set(ip, (pendingOf.get(ip) ?? 0) + 1);
    if (opts.initTimeoutMs > 0) conn.initTimer = setTimeout(initTimedOut, opts.initTimeoutMs, conn);
    socket.on('message', onMessage);
    socket.on('close', onClose);
    socket.on('pong', onPong);
  });

  // Keep-alive: each socket is pinged once a round, by a timer that takes one slice of them a turn
  // (a socket keeps its slice); one that didn't answer the last ping is dead. The ping waits up to
  // half a round for a frame to that socket and goes in its write (a busy socket's ping cost a
  // write of its own: 1.6% of many rooms' profile); what no frame took goes alone then, so the
  // pong still has half a round to come back.
  const half = Math.floor(wheel.length / 2);
  const keepAlive =
    wheel.length > 0
      ? setInterval(() => {
          const at = turn++ % wheel.length;
          if (half) for (const conn of wheel[(at + wheel.length - half) % wheel.length]) if (conn.socket.readyState === OPEN) carryPing(conn.socket as WebSocket & PingCarrier);
          for (const conn of wheel[at]) {
            if (conn.socket.readyState !== OPEN) continue;
            if (!conn.alive) {
              conn.socket.terminate();
              continue;
            }
            conn.alive = false;
            if (half) (conn.socket as WebSocket & PingCarrier).pingDue = true;
            else conn.socket.ping();
          }
        }, opts.keepAliveMs / wheel.length)
      : undefined;
  keepAlive?.unref();

  return {
    wss,
    connectionOf: (socket) => connections.get(socket),
    closeAll(code, reason) {
      for (const client of wss.clients) client.close(code, reason);
    },
    async dispose() {
      clearInterval(keepAlive);
      for (const client of wss.clients) client.close(1001, 'Going away');
      // A peer that stopped reading never answers the close (a phone gone out of range): ws's close
      // callback waited for it up to its own 30 s, and held the whole stop (HTTP not drained, then
      // killed at SHUTDOWN_TIMEOUT with requests in flight; an outside probe). Those left after a
      // moment are cut.
      const closed = new Promise<void>((resolve) => wss.close(() => resolve()));
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_WAIT_MS)));
      await Promise.race([closed, late]).finally(() => clearTimeout(timer));
      for (const client of wss.clients) client.terminate();
    },
  };
}
