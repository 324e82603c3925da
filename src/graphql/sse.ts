import type { IncomingMessage, ServerResponse } from 'node:http';
import { GraphQLError, type ExecutionResult, type GraphQLFormattedError, type GraphQLSchema } from 'graphql';
import { createHandler, type OperationResult, type Response } from 'graphql-sse';
import type { Services } from '../modules/services';
import { BodyTooLargeError, clientIp, readBody, sendJson } from '../core/http';
import { publicOrigin } from '../modules/message/attachment.links';
import { RateLimitedError, UnauthenticatedError } from '../shared/errors';
import { Topic } from '../shared/pubsub/topics';
import type { UserConnections } from './connections';
import { bearerToken } from '../modules/auth/auth.tokens';
import { SocketContext } from './context';
import type { Viewer } from '../modules/auth/auth.viewer';
import { operationErrors } from './errors';
import type { Fanout, FanoutOperation, FrameSink } from './fanout';
import type { DocumentLimits } from './limits';
import { isRefusal, type OperationPipeline } from './operation';
import { firstCode } from './operation-metrics';
import type { OperationRecord } from '../shared/metrics';
import type { InFlight } from '../core/in-flight';

/** What graphql-sse answers an event stream with, plus no buffering by proxies that honour it. */
const STREAM_HEADERS = {
  connection: 'keep-alive',
  'cache-control': 'no-cache',
  'content-encoding': 'none',
  'content-type': 'text/event-stream; charset=utf-8',
  'x-accel-buffering': 'no',
};

/** A `next` event of a distinct-connections stream: the result itself is the data (no operation id). */
const sseNext = (_id: string, result: string): Buffer => Buffer.from(`event: next\ndata: ${result}\n\n`);

const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };
/** Longest a timer can wait (setTimeout's limit is about 24.8 days; tokens live longer). */
const MAX_TIMER_MS = 2 ** 31 - 1;


export interface StreamHandle {
  /** Answers one request to /graphql/stream. */
  handle(req: IncomingMessage, res: ServerResponse): Promise<void>;
  /** Subscription streams open now. */
  readonly size: number;
  /** Ends every stream without `complete`, so clients reconnect elsewhere. */
  dispose(): void;
}

/**
 * GraphQL over Server-Sent Events at /graphql/stream: graphql-sse's distinct connections mode
 * (one POST, or a GET with the operation in the URL, per operation), for networks that block
 * WebSockets and for a plain EventSource. graphql-sse's handler speaks the protocol (parameters,
 * headers, keep-alive comments, `complete`); a subscription's `next` events are written by the
 * WebSocket's fan-out, so one execution per event and shape serves both transports.
 *
 * The request authenticates with its Authorization header or, for an EventSource that can't
 * send one, `?ticket=` from `mutation { streamTicket }`; otherwise 401. A subscription stream
 * counts as a connection of its user (WS_MAX_SOCKETS_PER_USER, with their sockets) and as a
 * live socket for presence; each subscription request counts against RATE_LIMIT_WS_MESSAGES per
 * user. Queries and mutations are answered as graphql-sse answers them: one `next`, then
 * `complete` (mutations only by POST).
 */
export function attachStreams(
  schema: GraphQLSchema,
  services: Services,
  opts: {
    bodyLimit: number;
    formatError: (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError;
    limits: DocumentLimits;
    /** Prepares and runs every operation (compiled plans, shared with the other transports). */
    operations: OperationPipeline;
    fanout: Fanout;
    connectionsOf: UserConnections;
    /** Operations running, which stopping waits for after it ended the streams. */
    inFlight: InFlight;
    /** Each operation answered (a subscription: once set up or refused), for the per-operation metrics. */
    onOperation?: (op: OperationRecord) => void;
  },
): StreamHandle {
  const { env } = services;
  const { fanout, connectionsOf } = opts;
  const { format, formatAll, shape, failure } = operationErrors(opts.formatError, opts.limits);
  /** Subscription streams, for revocation and shutdown. */
  const streams = new Set<Stream>();
  /** An ExecutionResult as graphql-sse recognises one (it looks for `data`; undefined is left out of the JSON). */
  const result = (r: { errors?: readonly unknown[] }) => ({ data: undefined, ...r }) as ExecutionResult;

  /**
   * One request: its response as the fan-out's sink and, for a subscription, what graphql-sse
   * iterates: nothing of its own (the fan-out writes each `next`), done when the operation ends,
   * so that graphql-sse writes `complete`.
   */
  class Stream implements FrameSink<Buffer>, AsyncIterableIterator<never> {
    op: FanoutOperation | undefined;
    /** The response is gone (client left, or ended). */
    closed = false;
    /** The operation is over; graphql-sse may complete. */
    private done = false;
    private wake: ((r: IteratorReturnResult<undefined>) => void) | undefined;
    /** Holds a connection count, a presence socket and a place in `streams`; released on close. */
    private held = false;
    /** Holds a reference in the membership index. */
    private tracked = false;
    /** Ends the stream when its token expires. */
    private expiry: NodeJS.Timeout | undefined;
    readonly context: SocketContext;
    readonly started = performance.now();

    constructor(
      readonly res: ServerResponse,
      readonly viewer: Viewer,
      readonly ip: string,
      /** The public origin the request came through (absolute attachment links). */
      readonly origin: string | undefined,
    ) {
      this.context = new SocketContext(services, viewer, ip, true, origin);
      res.once('close', () => this.close());
    }

    get encodeNext() {
      return sseNext;
    }
    get writable() {
      return !this.done && this.res.writable;
    }
    get bufferedBytes() {
      return this.res.writableLength;
    }
    write(frame: Buffer): void {
      if (!this.res.writable) return;
      // An event can arrive between the subscription starting and graphql-sse's answer being written.
      if (!this.res.headersSent) this.res.writeHead(200, STREAM_HEADERS);
      this.res.write(frame);
    }
    drop(): void {
      this.res.destroy();
    }
    ended(_op: FanoutOperation, error?: unknown): void {
      if (error !== undefined) this.write(sseNext('', JSON.stringify({ errors: failure(error) })));
      this.finish();
    }

    /** Counts the stream for its user; false when they have as many connections as allowed. */
    async open(): Promise<boolean> {
      const { userId, sessionId } = this.viewer;
      // Gone already (during the rate check): nothing to hold, and no close left to release it.
      if (this.closed) return true;
      if (!connectionsOf.open(userId)) return false;
      this.held = true;
      streams.add(this);
      // A stream lives no longer than its token, as a socket.
      this.expiry = setTimeout(() => this.revoke('Your token expired; sign in again.'), Math.min(Math.max(this.viewer.expiresAt - Date.now(), 0), MAX_TIMER_MS));
      this.expiry.unref();
      services.presence.socketOpened(userId, sessionId);
      // A failed load releases its own reference; the close handler releases the rest.
      await services.memberships.track(userId);
      if (this.closed) services.memberships.untrack(userId);
      else this.tracked = true;
      return true;
    }

    /** The token was revoked or expired: an UNAUTHENTICATED error, then `complete`. */
    revoke(message: string): void {
      if (!this.op || this.done) return void this.res.destroy();
      this.write(sseNext('', JSON.stringify({ errors: [format(new UnauthenticatedError(message))] })));
      this.finish();
    }

    /** Counts the operation in the metrics, once it is answered (a subscription: set up or refused). */
    answered(outcome: Omit<OperationRecord, 'seconds'>): void {
      opts.onOperation?.({ ...outcome, seconds: (performance.now() - this.started) / 1000 });
    }

    private finish(): void {
      if (this.done) return;
      this.done = true;
      this.op?.stop();
      this.wake?.(DONE);
    }

    private close(): void {
      this.closed = true;
      this.finish();
      if (!this.held) return;
      this.held = false;
      clearTimeout(this.expiry);
      streams.delete(this);
      const { userId, sessionId } = this.viewer;
      connectionsOf.close(userId);
      if (this.tracked) services.memberships.untrack(userId);
      services.presence.socketClosed(userId, sessionId);
    }

    [Symbol.asyncIterator]() {
      return this;
    }
    next(): Promise<IteratorResult<never>> {
      return this.done ? Promise.resolve(DONE) : new Promise((resolve) => (this.wake = resolve));
    }
    async return(): Promise<IteratorResult<never>> {
      this.finish();
      return DONE;
    }
    async throw(): Promise<IteratorResult<never>> {
      this.finish();
      return DONE;
    }
  }

  const refuse = (status: number, error: GraphQLError, headers: Record<string, string> = {}): Response => [
    JSON.stringify({ errors: [format(error)] }),
    { status, statusText: '', headers: { 'content-type': 'application/json; charset=utf-8', ...headers } },
  ];

  /** An operation that failed before it ran: its errors, then complete. */
  const refused = (stream: Stream, errors: GraphQLFormattedError[], described: Partial<OperationRecord> = {}) => {
    stream.answered({ ...described, code: firstCode(errors) });
    return result({ errors });
  };

  const handler = createHandler<IncomingMessage, Stream>({
    schema,
    // Every request is in distinct connections mode: no reserved streams to look up.
    authenticate: () => null,
    // Parsed and validated with the HTTP path's limits (and its cache), then run here: a query or
    // mutation executed, a subscription handed to the fan-out.
    async onSubscribe(req, params): Promise<Response | OperationResult> {
      const stream = req.context;
      const prepared = opts.operations.prepare(params.query, params.operationName, params.variables);
      if (isRefusal(prepared)) return refused(stream, formatAll(prepared.errors));
      const { operation, described } = prepared;
      if (operation.operation === 'mutation' && req.method === 'GET') {
        // As graphql-sse and GraphQL over HTTP say: a GET must not change anything.
        const e = new GraphQLError('Mutations are sent by POST.', { extensions: { code: 'BAD_USER_INPUT', reason: 'MUTATION_OVER_GET' } });
        stream.answered({ ...described, code: 'BAD_USER_INPUT' });
        return refuse(405, e, { allow: 'POST' });
      }
      if (operation.operation !== 'subscription') {
        // A context of its own, as over HTTP.
        const contextValue = new SocketContext(services, stream.viewer, stream.ip, false, stream.origin);
        const executed = shape(await opts.inFlight.track(Promise.resolve(opts.operations.run(prepared, contextValue))));
        stream.answered({ ...described, code: firstCode(executed.errors) });
        return result(executed);
      }

      const { userId } = stream.viewer;
      try {
        await services.rates.streams.consume(userId, 'Too many subscription requests; slow down.');
      } catch (e) {
        if (!(e instanceof RateLimitedError)) throw e;
        stream.answered({ ...described, code: 'RATE_LIMITED' });
        return refuse(429, e, { 'retry-after': String(Math.ceil(Number(e.extensions.retryAfter) || 1)) });
      }
      if (!(await stream.open())) {
        const e = new GraphQLError(`At most ${env.WS_MAX_SOCKETS_PER_USER} WebSockets and streams can be open at once per user.`, {
          extensions: { code: 'RATE_LIMITED', reason: 'TOO_MANY_CONNECTIONS' },
        });
        stream.answered({ ...described, code: 'RATE_LIMITED' });
        return refuse(429, e);
      }
      if (stream.closed) return result({});
      void services.presence.touch(userId, stream.viewer.sessionId);
      const target = { id: '', sink: stream, query: params.query, variables: params.variables, operationName: params.operationName };
      const started = await fanout.subscribe(prepared, stream.context, target);
      // The field's subscribe refused (not a member): its errors, then complete.
      if (!('stop' in started)) return refused(stream, shape(started).errors as GraphQLFormattedError[], described);
      stream.answered({ ...described, code: null });
      stream.op = started;
      if (stream.closed) started.stop();
      else if (started.finished) stream.ended(started, started.failure);
      return stream;
    },
  });

  /** graphql-sse's own refusals carry a message only: each gets a code, as every error here does. */
  function withCodes(body: string | null, status: number, statusText: string): string {
    let errors: { message?: string; extensions?: Record<string, unknown> }[] | undefined;
    try {
      errors = body ? (JSON.parse(body) as { errors?: typeof errors }).errors : undefined;
    } catch {
      errors = undefined;
    }
    errors ??= [{ message: body || statusText || `HTTP ${status}` }];
    const code = status === 429 ? 'RATE_LIMITED' : 'BAD_USER_INPUT';
    return JSON.stringify({ errors: errors.map((e) => (e.extensions?.code ? e : { ...e, extensions: { ...e.extensions, code } })) });
  }

  /** The viewer of a request: its Authorization header, or its ticket, redeemed. */
  async function viewerOf(req: IncomingMessage): Promise<Viewer | null> {
    const token = bearerToken(req.headers.authorization);
    if (token) return services.auth.authenticate(token);
    const ticket = new URL(req.url ?? '/', 'http://localhost').searchParams.get('ticket');
    const tokenHash = ticket ? await services.tickets.redeem(ticket) : null;
    return tokenHash ? services.auth.sessionOf(tokenHash) : null;
  }

  /** A request that failed before its stream began: PostgreSQL or Redis away is SERVICE_UNAVAILABLE (503), as over HTTP; anything else is masked (500). */
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await serve(req, res);
    } catch (e) {
      if (res.headersSent) return void res.end();
      const shaped = format(new GraphQLError(e instanceof Error ? e.message : String(e), { originalError: e instanceof Error ? e : undefined }));
      sendJson(res, shaped.extensions?.code === 'SERVICE_UNAVAILABLE' ? 503 : 500, { errors: [shaped] });
    }
  }

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const viewer = await viewerOf(req);
    if (!viewer) {
      const e = new UnauthenticatedError('Send your bearer token in the Authorization header, or a ticket from mutation { streamTicket } as ?ticket=.');
      return sendJson(res, 401, { errors: [format(e)] }, { 'www-authenticate': 'Bearer' });
    }
    // Every request here is a distinct connection, so any client that takes an event stream gets one
    // (graphql-sse itself wants exactly `text/event-stream` and answers 404 otherwise).
    const accept = req.headers.accept;
    if (accept && !/text\/event-stream|\*\/\*|text\/\*/.test(accept)) {
      return sendJson(res, 406, { errors: [{ message: 'This endpoint answers with an event stream (Accept: text/event-stream).', extensions: { code: 'BAD_USER_INPUT' } }] });
    }
    const stream = new Stream(res, viewer, clientIp(req, env), publicOrigin(req, env));
    let answer: Response;
    try {
      answer = await handler({
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        headers: { get: (key) => (key === 'accept' ? 'text/event-stream' : [req.headers[key] ?? ''].flat().join(', ') || undefined) },
        body: () => readBody(req, opts.bodyLimit),
        raw: req,
        context: stream,
      });
    } catch (e) {
      if (!(e instanceof BodyTooLargeError)) throw e;
      return sendJson(res, 413, { errors: [{ message: `Request body exceeds ${opts.bodyLimit} bytes.`, extensions: { code: 'PAYLOAD_TOO_LARGE' } }] });
    }
    const [body, init] = answer;
    if (body === null || typeof body === 'string') {
      const text = init.status >= 400 ? withCodes(body, init.status, init.statusText) : (body ?? '');
      res.writeHead(init.status, { ...init.headers, ...(init.status >= 400 ? { 'content-type': 'application/json; charset=utf-8' } : {}) });
      res.end(text);
      return;
    }
    if (!res.headersSent) res.writeHead(200, STREAM_HEADERS);
    const stop = () => void body.return(undefined);
    res.once('close', stop);
    // The client may have left while the operation was set up.
    if (stream.closed) stop();
    try {
      for await (const chunk of body) if (res.writable) res.write(chunk);
    } finally {
      res.off('close', stop);
      res.end();
    }
  }

  // A revoked token ends every stream opened with it, on every instance.
  const off = services.pubsub.on(Topic.SessionsRevoked, (p) => {
    const hashes = new Set(p.tokenHashes);
    for (const s of streams) if (hashes.has(s.viewer.tokenHash)) s.revoke('Your token was revoked; sign in again.');
  });

  return {
    handle,
    get size() {
      return streams.size;
    },
    dispose() {
      off();
      for (const s of streams) s.res.end();
    },
  };
}
