import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';
import { GraphQLError, type ExecutionResult, type GraphQLFormattedError } from 'graphql';
import { CloseCode, MessageType, type SubscribePayload } from 'graphql-ws';
import WebSocket, { type WebSocketServer } from 'ws';
import type { Env } from '../config/env';
import type { InFlight } from '../core/in-flight';
import { clientIp, originAllowed } from '../core/http';
import { publicOrigin } from '../modules/message/attachment.links';
import type { Services } from '../modules/services';
import { RateLimitedError, ServiceUnavailableError } from '../shared/errors';
import type { OperationRecord } from '../shared/metrics';
import type { SocketRate } from '../shared/ratelimit';
import { isDependencyDown, operationErrors, type ErrorFormatter, type OperationErrors } from './errors';
import type { Fanout, FanoutOperation, FrameSink } from './fanout';
import { carryPing, corked, nextFrame, writeFrame, type NextFrame, type PingCarrier } from './frames';
import { anonymousBodyLimit, type DocumentLimits } from './limits';
import { isRefusal, type OperationPipeline } from './operation';
import { firstCode } from './operation-metrics';
import type { RealtimeSession, RealtimeSessions, SessionEnd, SessionOwner } from './session';
import { CLOSE_HANDSHAKE_MS, sendMessage, serveTransport, SocketConnection, type Transport, type TransportHooks } from './ws.transport';

const OPEN = 1;

/** Holds an operation's id while it is set up; its own object, so a setup can tell whether the id is still its. */
interface SetUp {
  readonly id: string;
  readonly settingUp: true;
}
type Op = FanoutOperation | SetUp;
const isRunning = (op: Op | undefined): op is FanoutOperation => !!op && 'stop' in op;

/** How an operation was answered, for the metrics (undefined: a protocol error closed the socket). */
type Outcome = Omit<OperationRecord, 'seconds'> | undefined;
const failed = (sent: readonly GraphQLFormattedError[]): Outcome => ({ code: firstCode(sent) });

/** A socket's connection with what Parley keeps of it: its session once authenticated, and its operations (still one object per socket). */
class ParleySocket extends SocketConnection implements SessionOwner {
  session: RealtimeSession | null = null;
  /**
   * Its operations (while one is being set up, the marker of that setup), each with its id: an
   * exact-size array replaced on each change, which is rare (a Map of a few costs an idle
   * socket 184 B, this 8 B each).
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

  /** Its operation `id`. */
  op(id: string): Op | undefined {
    return this.ops?.find((op) => op.id === id);
  }

  /** Sets `op` in place of the operation with its id, or adds it. */
  putOp(op: Op): void {
    const ops = this.ops ?? [];
    const at = ops.findIndex((o) => o.id === op.id);
    this.ops = at < 0 ? ops.concat(op) : ops.slice(0, at).concat(op, ops.slice(at + 1));
  }

  /** Forgets operation `id`. */
  dropOp(id: string): void {
    const ops = this.ops;
    const at = ops ? ops.findIndex((o) => o.id === id) : -1;
    if (at >= 0) this.ops = ops!.slice(0, at).concat(ops!.slice(at + 1));
  }

  /** Whether the setup `slot` of operation `id` is still wanted: not completed by the client (nor the id reused), socket open. */
  stillWanted(id: string, slot: SetUp): boolean {
    return !this.closed && this.op(id) === slot;
  }

  /** Its session ended, its close waiting for an operation's answer (see endSession): no subscription starts. */
  get ending(): boolean {
    return this.closing !== undefined;
  }

  /** Operations being run on it (a subscription while it is set up). */
  answering = 0;
  /** A close asked while one ran, made once the last one is answered (see endSession). */
  private closing: string | undefined = undefined;

  endSession(why: SessionEnd): void {
    // graphql-ws clients reconnect with fresh connectionParams.
    const reason = why === 'expired' ? 'Token expired' : 'Forbidden';
    // An operation of its own that ended the session (a logout, a deleted account) gets its answer
    // first: closed under it, its client could not tell it succeeded (an outside probe, 10 of 10).
    // Nothing new runs meanwhile (see operate), and the wait is short.
    if (this.answering > 0) {
      this.closing = reason;
      // Its subscriptions end now, silently (the close tells the client): the wait is for an
      // operation's answer, not for events (an outside probe: a revoked socket was sent other
      // users' messages for up to 2 s while an edit of its own ran).
      if (this.ops) for (const op of this.ops) if (isRunning(op)) op.stop();
      setTimeout(() => this.closeNow(), ANSWER_BEFORE_CLOSE_MS).unref();
      return;
    }
    this.socket.close(CloseCode.Forbidden, reason);
  }

  /** One of its operations was answered: a close asked meanwhile is made with the last. */
  answered(): void {
    if (--this.answering === 0) this.closeNow();
  }

  private closeNow(): void {
    if (this.closing === undefined) return;
    const reason = this.closing;
    this.closing = undefined;
    this.socket.close(CloseCode.Forbidden, reason);
  }
}

/** A socket as the fan-out writes to it: all on the prototype but the one reference to its server's operations. */
class SinkSocket extends WebSocket implements FrameSink<NextFrame>, PingCarrier {
  /** Set when the transport takes the socket (WebSocketOperations.create). */
  operations: WebSocketOperations | undefined = undefined;
  /** Its keep-alive ping waits for a frame to go with (see serveTransport). */
  pingDue = false;
  /** Its connection, for a reset (see drop). */
  tcp: Socket | undefined = undefined;

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
    if (!this.pingDue) return writeFrame(this, frame.framed, frame.payload);
    corked(this, () => {
      carryPing(this);
      writeFrame(this, frame.framed, frame.payload);
    });
  }
  writeMany(frames: NextFrame[]): void {
    corked(this, () => {
      carryPing(this);
      for (const f of frames) writeFrame(this, f.framed, f.payload);
    });
  }
  drop(): void {
    this.close(1013, 'Try again later');
    // A reader that stopped does not answer the close, and ws then closes its connection, the FIN
    // queued behind what the kernel still holds for it (megabytes, kept till TCP gives up): reset
    // it instead, just before ws's cut (see SSE's drop).
    const tcp = this.tcp;
    if (tcp) setTimeout(() => !tcp.destroyed && tcp.resetAndDestroy(), CLOSE_HANDSHAKE_MS * 0.9).unref();
  }
  ended(op: FanoutOperation, error?: unknown): void {
    this.operations?.operationEnded(this, op, error);
  }
}

/** What WebSocket operations stand on. */
export interface WebSocketDeps {
  env: Env;
  /** Authentication, the per-user cap, expiry, revocation, presence and memberships, shared with SSE. */
  sessions: RealtimeSessions;
  /** Prepares and runs every operation (compiled plans, shared with the other transports). */
  operations: OperationPipeline;
  /** The subscription fan-out, shared with the SSE transport. */
  fanout: Fanout;
  errors: OperationErrors;
  /** Operations running, which stopping waits for after it closed the sockets. */
  inFlight: InFlight;
  /** Each operation answered (a subscription: once set up or refused), for the per-operation metrics. */
  onOperation?: (op: OperationRecord) => void;
}

/** How long a socket whose session ended waits for its running operations' answers before it closes. */
const ANSWER_BEFORE_CLOSE_MS = 2000;

/** How long stopping waits for the operations running on sockets before it closes them (part of SHUTDOWN_TIMEOUT). */
const DRAIN_MS = 1500;

/** The close of a socket that could not open for a reason of the server's (a dependency away, slow): graphql-ws clients retry it. */
const TRY_AGAIN = [1013, 'Try again later'] as const;

/**
 * Parley's side of graphql-transport-ws, as the hooks ws.transport.ts calls: a socket
 * authenticates once, in connection_init (or the upgrade's Authorization header), and then runs
 * operations: queries and mutations with a context of their own, subscriptions through the
 * shared fan-out.
 */
class WebSocketOperations implements TransportHooks<ParleySocket> {
  constructor(private readonly deps: WebSocketDeps) {}

  create(socket: WebSocket, req: IncomingMessage, ip: string, rate: SocketRate): ParleySocket {
    (socket as SinkSocket).operations = this;
    (socket as SinkSocket).tcp = req.socket as Socket;
    return new ParleySocket(socket, ip, rate, publicOrigin(req, this.deps.env), req.headers.authorization);
  }

  /** connection_init: the token, then the session (per-user cap, presence, memberships); a close when refused. */
  async init(conn: ParleySocket, payload: Record<string, unknown> | null | undefined): Promise<readonly [number, string] | void> {
    const params = payload ?? {};
    // The first one given: an empty one (a client's unset header) is none, and the next is read.
    const authorization = [params.authorization, params.Authorization, params.token, conn.authorization].find((v) => v !== undefined && v !== null && v !== '');
    conn.authorization = undefined;
    // 1013 (try again later) for what is not the client's fault, which graphql-ws clients retry
    // with back-off: 4500 (and 4429) end them for good, and 4403 the client docs/CLIENTS.md
    // shows (a refused token). A socket opened while PostgreSQL was away was closed 4500 (4403
    // for a token not cached), and its client never came back (an outside probe: 24 of 24).
    try {
      const viewer = await this.deps.sessions.authenticate({ authorization }).catch((e) => {
        if (isDependencyDown(e)) throw e;
        return null;
      });
      if (conn.closed) return;
      if (!viewer) return [CloseCode.Forbidden, 'Forbidden'];
      const session = this.deps.sessions.start(conn, viewer, conn.ip, conn.origin);
      // From here the close hook undoes it, whenever the socket goes (a failed load closes it with 4500).
      conn.session = session;
      const opened = await session.openInTime();
      // Not open in time (its channels wait on Redis, away): told to come back, not left without an ack (the close hook undoes what was taken).
      if (opened === 'late') return TRY_AGAIN;
      if (!opened) return [1013, 'Too many connections'];
      if (!(await this.deps.sessions.stillValid(viewer))) return [CloseCode.Forbidden, 'Forbidden'];
    } catch (e) {
      if (isDependencyDown(e)) return TRY_AGAIN;
      throw e;
    }
  }

  /** Operations being run or set up on any socket (see drain). */
  private readonly running = new Set<Promise<Outcome>>();
  /** Stopping: new operations are refused, so those running can answer before the sockets close. */
  private stopping = false;

  /**
   * Stops taking operations (each new one is answered SERVICE_UNAVAILABLE, nothing run) and waits
   * up to `ms` for those running: a mutation that commits gets its answer on its socket before
   * the socket closes with 1001 (it was closed under them: stored and delivered, but the client
   * saw only the close; an outside probe, 20 of 20).
   */
  async drain(ms: number): Promise<void> {
    this.stopping = true;
    if (!this.running.size) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
    await Promise.race([Promise.allSettled([...this.running]), late]).finally(() => clearTimeout(timer));
  }

  /** Runs one operation and reports how it went (not when the frame was a protocol error that closed the socket). */
  async subscribe(conn: ParleySocket, id: string, payload: SubscribePayload, limited: boolean): Promise<void> {
    if (this.stopping) {
      // A subscription is left unanswered: a graphql-ws client takes an error as its end, and sends
      // one it got no answer for again once it reconnects (elsewhere). A query or mutation is told.
      const prepared = this.deps.operations.prepare(payload.query, payload.operationName, payload.variables);
      if (!isRefusal(prepared) && prepared.operation.operation === 'subscription') return;
      const refused = this.deps.errors.formatAll([new ServiceUnavailableError('The server is stopping; send it again (another instance will take it).')]);
      return sendMessage(conn.socket, { id, type: MessageType.Error, payload: refused });
    }
    const started = performance.now();
    conn.answering++;
    const running = this.deps.inFlight.track(this.operate(conn, id, payload, limited));
    this.running.add(running);
    const outcome = await running.finally(() => {
      this.running.delete(running);
      conn.answered();
    });
    // A new record: an outcome may be the operation's cached description itself.
    if (outcome) this.deps.onOperation?.({ name: outcome.name, type: outcome.type, rootFields: outcome.rootFields, code: outcome.code, seconds: (performance.now() - started) / 1000 });
  }

  complete(conn: ParleySocket, id: string): void {
    const op = conn.op(id);
    conn.dropOp(id);
    if (isRunning(op)) op.stop();
  }

  closed(conn: ParleySocket): void {
    if (conn.ops) for (const op of conn.ops) if (isRunning(op)) op.stop();
    conn.ops = null;
    conn.session?.close();
  }

  /** The transport serving these hooks, which knows each socket's connection (set by attachWebSocket). */
  transport: Transport<ParleySocket> | undefined = undefined;

  /** An operation ended on our side: its stream failed, or its socket went. (One that ends while still being set up is reported by operate().) */
  operationEnded(socket: WebSocket, op: FanoutOperation, error: unknown): void {
    const conn = this.transport?.connectionOf(socket);
    if (conn && conn.op(op.id) === op) this.ended(conn, op.id, error);
  }

  private async operate(conn: ParleySocket, id: string, payload: SubscribePayload, limited: boolean): Promise<Outcome> {
    const { socket } = conn;
    const session = conn.session!;
    const { errors } = this.deps;
    // Between the token's expiry and the sweep that closes its socket, nothing more runs on it; nor
    // once its session was revoked (its close may wait for an operation's answer: see endSession).
    if (session.expired) return void socket.close(CloseCode.Forbidden, 'Token expired');
    if (session.revoked) {
      // Its close waits for another operation's answer (a logout's): refused, not closed under it.
      if (conn.answering > 1) return failed(this.refuse(conn, id, [new GraphQLError('This session has ended; sign in again.', { extensions: { code: 'UNAUTHENTICATED' } })]));
      return void socket.close(CloseCode.Forbidden, 'Forbidden');
    }
    if (conn.op(id)) {
      // A close reason is at most 123 bytes; a long id would make close() throw.
      const reason = `Subscriber for ${id} already exists`;
      return void socket.close(CloseCode.SubscriberAlreadyExists, Buffer.byteLength(reason) <= 123 ? reason : 'Subscriber already exists');
    }
    if (limited) {
      const sent = [errors.format(new RateLimitedError(conn.rate.retryAfter(), 'Too many messages on this connection; slow down.'))];
      sendMessage(socket, { id, type: MessageType.Error, payload: sent });
      return failed(sent);
    }
    const slot: SetUp = { id, settingUp: true };
    conn.putOp(slot);
    session.touch();
    const max = this.deps.env.WS_MAX_SUBSCRIPTIONS;
    if (conn.ops!.length > max) {
      const e = new GraphQLError(`At most ${max} operations can run at once on one connection.`, { extensions: { code: 'RATE_LIMITED', reason: 'TOO_MANY_OPERATIONS' } });
      return failed(this.refuse(conn, id, [e]));
    }
    // Parsed and validated with the HTTP path's limits (and cached by text: clients repeat documents).
    const prepared = this.deps.operations.prepare(payload.query, payload.operationName, payload.variables);
    if (isRefusal(prepared)) return failed(this.refuse(conn, id, prepared.errors));
    let result: ExecutionResult;
    if (prepared.operation.operation === 'subscription') {
      const target = { id, sink: socket as SinkSocket, query: payload.query, variables: payload.variables, operationName: payload.operationName };
      const started = await this.deps.fanout.subscribe(prepared, session.context, target);
      if (!('stop' in started)) {
        result = started;
      } else {
        if (!conn.stillWanted(id, slot) || conn.ending) started.stop();
        else if (started.finished) this.ended(conn, id, started.failure);
        else conn.putOp(started);
        return prepared.described;
      }
    } else {
      result = await this.deps.operations.run(prepared, session.operationContext());
    }
    const answer = errors.shape(result);
    const { name, type, rootFields } = prepared.described;
    const outcome = { name, type, rootFields, code: firstCode(answer.errors) };
    if (!conn.stillWanted(id, slot)) return outcome;
    conn.dropOp(id);
    // A subscription that could not be set up for want of PostgreSQL or Redis (its check of the
    // conversation): the socket is told to come back, as one opened then is (1013), and the
    // client's retry subscribes again. Errors and complete ended it for good in graphql-ws, and
    // the client missed every later message (an outside probe: 650 of 859, 4 of 4 sockets).
    if (prepared.operation.operation === 'subscription' && outcome.code === 'SERVICE_UNAVAILABLE') {
      socket.close(...TRY_AGAIN);
      return outcome;
    }
    // One write for both frames (a heartbeat's whole answer), not a syscall each.
    corked(socket, () => {
      sendMessage(socket, { id, type: MessageType.Next, payload: answer });
      sendMessage(socket, { id, type: MessageType.Complete });
    });
    return outcome;
  }

  /** Answers operation `id` with errors; returns them as sent. */
  private refuse(conn: ParleySocket, id: string, errors: readonly GraphQLError[]): GraphQLFormattedError[] {
    conn.dropOp(id);
    const payload = this.deps.errors.formatAll(errors);
    sendMessage(conn.socket, { id, type: MessageType.Error, payload });
    return payload;
  }

  /** Tells the client an operation ended on our side: complete, or error when it failed. */
  private ended(conn: ParleySocket, id: string, error: unknown): void {
    conn.dropOp(id);
    sendMessage(conn.socket, error === undefined ? { id, type: MessageType.Complete } : { id, type: MessageType.Error, payload: this.deps.errors.failure(error) });
  }
}

export interface WebSocketHandle {
  wss: WebSocketServer;
  /** Closes every socket with `code` (1001 on shutdown). */
  closeAll(code: number, reason: string): void;
  dispose(): Promise<void>;
}

export interface WebSocketOptions extends Omit<WebSocketDeps, 'env' | 'errors'> {
  maxPayload: number;
  formatError: ErrorFormatter;
  /** Parse and validation with the same limits as HTTP (and its error scrubbing). */
  limits: DocumentLimits;
}

/**
 * GraphQL over WebSocket on the GraphQL path: the protocol ws.transport.ts speaks (graphql-ws
 * clients' graphql-transport-ws), with WebSocketOperations deciding. Without a valid token a socket
 * is closed 4403, as it is when its token expires or is revoked (RealtimeSessions).
 */
export function attachWebSocket(server: Server, services: Pick<Services, 'env' | 'logger'>, opts: WebSocketOptions): WebSocketHandle {
  const { env, logger } = services;
  const hooks = new WebSocketOperations(Object.assign({}, opts, { env, errors: operationErrors(opts.formatError, opts.limits) }));
  const transport = serveTransport<ParleySocket>({
    server,
    path: '/graphql',
    maxPayload: opts.maxPayload,
    pendingMaxPayload: anonymousBodyLimit(env),
    socketClass: SinkSocket,
    // Browsers send Origin on the upgrade; a page from an origin not in CORS_ORIGINS gets 403.
    originAllowed: (origin) => originAllowed(origin, env.CORS_ORIGINS),
    ipOf: (req) => clientIp(req, env),
    maxPendingPerIp: env.WS_MAX_PENDING_PER_IP,
    initTimeoutMs: env.WS_CONNECTION_INIT_TIMEOUT * 1000,
    keepAliveMs: env.WS_KEEPALIVE * 1000,
    rate: env.RATE_LIMIT_WS_MESSAGES,
    logger,
    production: env.NODE_ENV === 'production',
    hooks,
  });
  hooks.transport = transport;
  return {
    wss: transport.wss,
    closeAll: (code, reason) => transport.closeAll(code, reason),
    dispose: async () => {
      await hooks.drain(DRAIN_MS);
      await transport.dispose();
    },
  };
}
