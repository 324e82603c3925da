import type { IncomingMessage, ServerResponse } from 'node:http';
import { GraphQLError, type ExecutionResult, type GraphQLFormattedError, type GraphQLSchema } from 'graphql';
import { createHandler, type OperationResult, type Response } from 'graphql-sse';
import type { Services } from '../modules/services';
import type { Viewer } from '../modules/auth/auth.viewer';
import { bearerToken, BodyTooLargeError, ClientGoneError, clientIp, RETRY_SOON, sendGraphQLError, sendJson, UnsupportedEncodingError } from '../core/http';
import { publicOrigin } from '../modules/message/attachment.links';
import { RateLimitedError, ServiceUnavailableError, UnauthenticatedError } from '../shared/errors';
import { operationErrors, type ErrorFormatter, type OperationErrors } from './errors';
import type { Fanout, FanoutOperation, FrameSink } from './fanout';
import { TOO_MANY_VALUES, tooManyValues, type DocumentLimits } from './limits';
import { isRefusal, type OperationPipeline, type PreparedOperation } from './operation';
import { firstCode } from './operation-metrics';
import type { OperationRecord } from '../shared/metrics';
import type { InFlight } from '../core/in-flight';
import type { BytesInFlight } from '../shared/concurrency';
import { fileTurn, isJsonContent, readTurnBody } from './http';
import type { RealtimeSession, RealtimeSessions, SessionEnd, SessionOwner } from './session';

/** What graphql-sse answers an event stream with, plus no buffering by proxies that honour it. */
const STREAM_HEADERS = {
  connection: 'keep-alive',
  'cache-control': 'no-cache',
  'content-encoding': 'none',
  'content-type': 'text/event-stream; charset=utf-8',
  'x-accel-buffering': 'no',
};
const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8' };

/**
 * Whether an Accept header takes `text/event-stream`: its most specific range that matches
 * (`text/event-stream`, else `text/` anything, else any type) with a q above 0. A match anywhere took it,
 * `text/event-stream;q=0, application/json` included (an outside probe).
 */
function takesEventStream(accept: string): boolean {
  let best = -1;
  let q = 0;
  for (const part of accept.split(',')) {
    const [range, ...params] = part.split(';').map((p) => p.trim().toLowerCase());
    const rank = range === 'text/event-stream' ? 2 : range === 'text/*' ? 1 : range === '*/*' ? 0 : -1;
    if (rank <= best) continue;
    const weight = params.map((p) => /^q\s*=\s*([\d.]+)$/.exec(p)).find(Boolean);
    best = rank;
    q = weight ? Number(weight[1]) : 1;
  }
  return best >= 0 && q > 0;
}

/** A `next` event of a distinct-connections stream: the result itself is the data (no operation id). */
const sseNext = (_id: string, result: string): Buffer => Buffer.from(`event: next\ndata: ${result}\n\n`);

const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

/** An ExecutionResult as graphql-sse recognises one (it looks for `data`; undefined is left out of the JSON). */
const asResult = (r: { errors?: readonly unknown[] }) => ({ data: undefined, ...r }) as ExecutionResult;

/** What a stream's client is told when its token ends. */
const SESSION_ENDED: Record<SessionEnd, string> = { expired: 'Your token expired; sign in again.', revoked: 'Your token was revoked; sign in again.' };

/** What every stream of one server shares. */
interface StreamDeps {
  errors: OperationErrors;
  /** Subscription streams open, for shutdown. */
  open: Set<Stream>;
  onOperation?: (op: OperationRecord) => void;
}

/**
 * One request: its response as the fan-out's sink and, for a subscription, what graphql-sse
 * iterates: nothing of its own (the fan-out writes each `next`), done when the operation ends,
 * so that graphql-sse writes `complete`. Its session is opened only for a subscription.
 */
class Stream implements FrameSink<Buffer>, AsyncIterableIterator<never>, SessionOwner {
  op: FanoutOperation | undefined;
  /** Authenticated by a stream ticket, not a bearer token: no mutations. */
  byTicket = false;
  /** The response is gone (client left, or ended). */
  closed = false;
  /** The operation is over; graphql-sse may complete. */
  private done = false;
  /** The token was revoked or expired before the operation was set up: answered 401 then (see subscribe), not cut. */
  endedEarly: SessionEnd | undefined;
  private wake: ((r: IteratorReturnResult<undefined>) => void) | undefined;
  readonly started = performance.now();
  readonly session: RealtimeSession;

  constructor(
    readonly res: ServerResponse,
    sessions: RealtimeSessions,
    viewer: Viewer,
    ip: string,
    /** The public origin the request came through (absolute attachment links). */
    origin: string | undefined,
    private readonly deps: StreamDeps,
  ) {
    this.session = sessions.start(this, viewer, ip, origin);
    this.session.presenceLater = true;
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
    // Reset rather than closed: a close queues its FIN behind what the kernel still holds for a
    // reader that stopped (3.85 MB in FIN-WAIT-1 in an outside probe), kept till TCP gives up; a
    // reset frees it now, and tells the client at once that its stream is gone.
    const socket = this.res.socket;
    if (socket && !socket.destroyed) socket.resetAndDestroy();
    else this.res.destroy();
  }
  ended(_op: FanoutOperation, error?: unknown): void {
    if (error !== undefined) this.write(sseNext('', JSON.stringify({ errors: this.deps.errors.failure(error) })));
    this.finish();
  }

  /** Opens its session (see RealtimeSession.openInTime): false when its user has as many connections as allowed, 'late' when it took too long. */
  async open(): Promise<boolean | 'late'> {
    const opened = await this.session.openInTime();
    if (opened !== true) return opened;
    if (!this.closed) this.deps.open.add(this);
    return true;
  }

  /** The token was revoked or expired: an UNAUTHENTICATED error, then `complete`. */
  endSession(why: SessionEnd): void {
    if (this.done) return void this.res.destroy();
    // Still being set up: its request answers 401 once it can (a cut connection told its client
    // nothing, and it retried as after a network failure: an outside probe, 15 of 30).
    if (!this.op) return void (this.endedEarly = why);
    this.write(sseNext('', JSON.stringify({ errors: [this.deps.errors.format(new UnauthenticatedError(SESSION_ENDED[why]))] })));
    this.finish();
  }

  /** Counts the operation in the metrics, once it is answered (a subscription: set up or refused). */
  answered(outcome: Omit<OperationRecord, 'seconds'>): void {
    this.deps.onOperation?.({ ...outcome, seconds: (performance.now() - this.started) / 1000 });
  }

  /** An operation that failed before it ran: counted, then its errors and complete. */
  refused(errors: GraphQLFormattedError[], described: Partial<OperationRecord> = {}): ExecutionResult {
    this.answered({ ...described, code: firstCode(errors) });
    return asResult({ errors });
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
    this.deps.open.delete(this);
    this.session.close();
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

/** A refusal before any stream: a JSON body with a status. */
const refusal = (status: number, body: string, headers: Record<string, string> = {}): Response => [body, { status, statusText: '', headers: { ...JSON_HEADERS, ...headers } }];

const BODY_SHAPE = 'The request body must be a JSON object with a `query`: { "query": …, "variables": …, "operationName": … }.';
/** The same said of a GET, which has no body (an outside probe: told of a body it never sent). */
const URL_SHAPE = 'A GET carries its operation in the URL: `?query=…`, with `variables` and `extensions` as JSON when given.';

/** Whether a request body is an object whose operationName is there but no string (nor null). */
function operationNameIsNoString(body: string): boolean {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return false;
  }
  const name = parsed !== null && typeof parsed === 'object' ? (parsed as { operationName?: unknown }).operationName : undefined;
  return name !== undefined && name !== null && typeof name !== 'string';
}

/** graphql-sse's words for a bad request, said as the field a client would fix. */
const CLEARER: Record<string, string> = {
  'Unparsable URL': "The URL's `variables` and `extensions`, when given, must be JSON.",
  'Invalid variables': '`variables` must be a JSON object.',
  'Invalid extensions': '`extensions` must be a JSON object.',
  'Invalid query': '`query` must be a GraphQL document (a string).',
  // Said of `{}`, and of a body that is JSON but no object (`[1,2,3]`).
  'Missing query': BODY_SHAPE,
};

/** graphql-sse's own refusals carry a message only: each gets a code, as every error here does. */
function withCodes(body: string | null, status: number, statusText: string, get: boolean): string {
  let errors: { message?: string; extensions?: Record<string, unknown> }[] | undefined;
  try {
    errors = body ? (JSON.parse(body) as { errors?: typeof errors }).errors : undefined;
  } catch {
    errors = undefined;
  }
  errors ??= [{ message: body || statusText || `HTTP ${status}` }];
  for (const e of errors) {
    if (e.message === 'Missing query' && get) e.message = URL_SHAPE;
    else if (e.message && CLEARER[e.message]) e.message = CLEARER[e.message];
    // JSON.parse's own words (the body as received, a position): said as what to send instead.
    else if (e.message && status === 400 && /JSON|Unexpected (token|end)/.test(e.message)) e.message = BODY_SHAPE;
  }
  const code = status === 429 ? 'RATE_LIMITED' : 'BAD_USER_INPUT';
  return JSON.stringify({ errors: errors.map((e) => (e.extensions?.code ? e : { ...e, extensions: { ...e.extensions, code } })) });
}

/** Seconds a user at the per-user cap of sockets and streams is told to wait before opening another stream. */
const FULL_RETRY_AFTER_S = 5;

export interface StreamOptions {
  bodyLimit: number;
  /** A body larger than this (a send with a file) waits its turn among `files` before it is read. */
  anonymousBodyLimit: number;
  /** Bodies with a file taken in at once, shared with /graphql (ATTACHMENT_BYTES_IN_FLIGHT). */
  files: BytesInFlight;
  formatError: ErrorFormatter;
  limits: DocumentLimits;
  /** Authentication, the per-user cap, expiry, revocation, presence and memberships, shared with WebSocket. */
  sessions: RealtimeSessions;
  /** Prepares and runs every operation (compiled plans, shared with the other transports). */
  operations: OperationPipeline;
  fanout: Fanout;
  /** Operations running, which stopping waits for after it ended the streams. */
  inFlight: InFlight;
  /** Each operation answered (a subscription: once set up or refused), for the per-operation metrics. */
  onOperation?: (op: OperationRecord) => void;
}

/** The /graphql/stream endpoint: authenticates each request, then lets graphql-sse speak the protocol around onSubscribe. */
class StreamServer {
  private readonly deps: StreamDeps;
  private readonly handler: ReturnType<typeof createHandler<IncomingMessage, Stream>>;

  constructor(
    schema: GraphQLSchema,
    private readonly services: Services,
    private readonly opts: StreamOptions,
  ) {
    this.deps = { errors: operationErrors(opts.formatError, opts.limits), open: new Set(), onOperation: opts.onOperation };
    this.handler = createHandler<IncomingMessage, Stream>({
      schema,
      // Every request is in distinct connections mode: no reserved streams to look up.
      authenticate: () => null,
      onSubscribe: (req, params) => this.operate(req.context, req.method, params),
    });
  }

  get size(): number {
    return this.deps.open.size;
  }

  /** A request that failed before its stream began: PostgreSQL or Redis away is SERVICE_UNAVAILABLE (503), as over HTTP; anything else is masked (500). */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await this.serve(req, res);
    } catch (e) {
      if (res.headersSent) return void res.end();
      const shaped = this.deps.errors.format(new GraphQLError(e instanceof Error ? e.message : String(e), { originalError: e instanceof Error ? e : undefined }));
      // A 503 says when to try again, as the open timeout's does (an outside probe found none during a PostgreSQL cut).
      if (shaped.extensions?.code === 'SERVICE_UNAVAILABLE') sendJson(res, 503, { errors: [shaped] }, RETRY_SOON);
      else sendJson(res, 500, { errors: [shaped] });
    }
  }

  /** Ends every stream without `complete`, so clients reconnect elsewhere. */
  dispose(): void {
    for (const s of this.deps.open) s.res.end();
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const { env } = this.services;
    // graphql-sse's single connection mode reserves a stream with PUT and ends operations with DELETE:
    // told what this endpoint serves instead (graphql-sse itself answered 415, naming neither).
    if (req.method !== 'GET' && req.method !== 'POST') {
      const message = 'This endpoint serves graphql-sse in its distinct connections mode: each operation is its own GET or POST request (no single connection mode).';
      res.setHeader('allow', 'GET, POST');
      return sendGraphQLError(res, 405, 'BAD_USER_INPUT', message);
    }
    // Every request here is a distinct connection, so any client that takes an event stream gets one
    // (graphql-sse itself wants exactly `text/event-stream` and answers 404 otherwise). Refused before
    // a ticket is read: one that can't be answered spends none (a ticket is good once).
    const accept = req.headers.accept;
    if (accept && !takesEventStream(accept)) {
      return sendGraphQLError(res, 406, 'BAD_USER_INPUT', 'This endpoint answers with an event stream (Accept: text/event-stream).');
    }
    // A POST's body is JSON, as /graphql reads it: one sent without that type opened a stream here
    // and was refused there (an outside probe); text/plain and forms were 415 only once a ticket was spent.
    if (req.method === 'POST' && !isJsonContent(req.headers['content-type'])) {
      return sendGraphQLError(res, 415, 'BAD_USER_INPUT', 'Send the request body as JSON (Content-Type: application/json).');
    }
    const ticket = new URL(req.url ?? '/', 'http://localhost').searchParams.get('ticket');
    const viewer = await this.opts.sessions.authenticate({ authorization: req.headers.authorization, ticket });
    if (!viewer) {
      const e = new UnauthenticatedError(
        req.headers.authorization || ticket
          ? 'Your token (or ticket) is invalid, expired or revoked; sign in again, or take a new ticket from mutation { streamTicket }.'
          : 'Send your bearer token in the Authorization header, or a ticket from mutation { streamTicket } as ?ticket=.',
      );
      return sendJson(res, 401, { errors: [this.deps.errors.format(e)] }, { 'www-authenticate': 'Bearer' });
    }
    // Read here, not by graphql-sse: it answers a body over the limit with a 400 and an empty message.
    let body: string | undefined;
    if (req.method === 'POST') {
      // As /graphql does: held till the stream ends (a send's answer is its one event).
      try {
        const read = await readTurnBody(req, this.opts.bodyLimit, this.opts.anonymousBodyLimit, (bytes) => fileTurn(this.opts.files, Promise.resolve(viewer.userId), bytes, req, res));
        if (read === null) return;
        body = read;
      } catch (e) {
        // Hung up mid-body: no one to answer, nothing to log as the server's error.
        if (e instanceof ClientGoneError) return;
        if (e instanceof UnsupportedEncodingError) return sendGraphQLError(res, 415, 'BAD_USER_INPUT', e.message);
        if (!(e instanceof BodyTooLargeError)) throw e;
        return sendGraphQLError(res, 413, 'PAYLOAD_TOO_LARGE', `Request body exceeds ${this.opts.bodyLimit} bytes.`);
      }
      if (tooManyValues(body)) return sendGraphQLError(res, 413, 'PAYLOAD_TOO_LARGE', TOO_MANY_VALUES);
      // graphql-sse takes any operationName (and looked up "5" as a name); /graphql refuses it, as this does.
      if (operationNameIsNoString(body)) return sendGraphQLError(res, 400, 'BAD_USER_INPUT', '`operationName` must be a string (or null).');
    }
    const stream = new Stream(res, this.opts.sessions, viewer, clientIp(req, env), publicOrigin(req, env), this.deps);
    // A ticket travels in a URL (logs, history): it reads, as an EventSource does, and changes nothing (no new tickets either).
    stream.byTicket = !bearerToken(req.headers.authorization) && !!ticket;
    const answer = await this.handler({
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      // The media type as graphql-sse compares it, in lower case: `APPLICATION/JSON`, JSON here as
      // on /graphql, passed the check above and was then refused 415 by graphql-sse, its ticket spent (a verification probe).
      headers: { get: (key) => (key === 'accept' ? 'text/event-stream' : key === 'content-type' ? req.headers['content-type']?.toLowerCase() : [req.headers[key] ?? ''].flat().join(', ') || undefined) },
      body: body ?? null,
      raw: req,
      context: stream,
    });
    await respond(res, stream, answer, req.method === 'GET');
  }

  /**
   * graphql-sse's onSubscribe: prepared with the HTTP path's limits (and the pipeline's cache),
   * then run here: a query or mutation executed, a subscription handed to the fan-out.
   */
  private async operate(stream: Stream, method: string, params: { query: string; operationName?: string | null; variables?: Record<string, unknown> | null }): Promise<Response | OperationResult> {
    const { errors } = this.deps;
    const prepared = this.opts.operations.prepare(params.query, params.operationName, params.variables);
    if (isRefusal(prepared)) return stream.refused(errors.formatAll(prepared.errors));
    const { operation, described } = prepared;
    if (stream.byTicket && operation.operation === 'mutation') {
      const e = new GraphQLError('A stream ticket reads (a subscription, a query); send mutations with your bearer token.', { extensions: { code: 'FORBIDDEN', reason: 'TICKET_READS_ONLY' } });
      stream.answered({ ...described, code: 'FORBIDDEN' });
      return refusal(403, JSON.stringify({ errors: [errors.format(e)] }));
    }
    if (operation.operation === 'mutation' && method === 'GET') {
      // As graphql-sse and GraphQL over HTTP say: a GET must not change anything.
      const e = new GraphQLError('Mutations are sent by POST.', { extensions: { code: 'BAD_USER_INPUT', reason: 'MUTATION_OVER_GET' } });
      stream.answered({ ...described, code: 'BAD_USER_INPUT' });
      return refusal(405, JSON.stringify({ errors: [errors.format(e)] }), { allow: 'POST' });
    }
    if (operation.operation === 'subscription') return this.subscribe(stream, prepared, params);
    if (!(await this.opts.sessions.stillValid(stream.session.viewer))) return this.revokedMeanwhile(stream, described);
    // Activity, as any authenticated request over HTTP or a socket is.
    stream.session.touch();
    const executed = errors.shape(await this.opts.inFlight.track(Promise.resolve(this.opts.operations.run(prepared, stream.session.operationContext()))));
    stream.answered({ ...described, code: firstCode(executed.errors) });
    return asResult(executed);
  }

  /** The request's token was revoked (or expired) after it was authenticated, before its operation ran: 401, as such a token is. */
  private revokedMeanwhile(stream: Stream, described: Partial<OperationRecord>, why: SessionEnd = 'revoked'): Response {
    stream.answered({ ...described, code: 'UNAUTHENTICATED' });
    const e = new UnauthenticatedError(SESSION_ENDED[why]);
    return refusal(401, JSON.stringify({ errors: [this.deps.errors.format(e)] }), { 'www-authenticate': 'Bearer' });
  }

  /** A subscription: its rate and the per-user cap, then the fan-out writes its events to the stream. */
  private async subscribe(stream: Stream, prepared: PreparedOperation, params: { query: string; operationName?: string | null; variables?: Record<string, unknown> | null }): Promise<Response | OperationResult> {
    const { errors } = this.deps;
    const { described } = prepared;
    const { userId } = stream.session.viewer;
    try {
      await this.services.rates.streams.consume(userId, 'Too many subscription requests; slow down.');
    } catch (e) {
      if (!(e instanceof RateLimitedError)) throw e;
      stream.answered({ ...described, code: 'RATE_LIMITED' });
      return refusal(429, JSON.stringify({ errors: [errors.format(e)] }), { 'retry-after': String(Math.ceil(Number(e.extensions.retryAfter) || 1)) });
    }
    const opened = await stream.open();
    if (opened === 'late') {
      // Its channels wait on Redis, slow to answer: told to come back, as a socket is (1013), not left without an answer.
      const e = new ServiceUnavailableError();
      stream.answered({ ...described, code: 'SERVICE_UNAVAILABLE' });
      return refusal(503, JSON.stringify({ errors: [errors.format(e)] }), RETRY_SOON);
    }
    if (!opened) {
      // No time is known (a stream or socket of theirs must close first): a few seconds, as graphql-ws's back-off waits after a 1013.
      const e = new GraphQLError(`At most ${this.services.env.WS_MAX_SOCKETS_PER_USER} WebSockets and streams can be open at once per user.`, {
        extensions: { code: 'RATE_LIMITED', reason: 'TOO_MANY_CONNECTIONS', retryAfter: FULL_RETRY_AFTER_S },
      });
      stream.answered({ ...described, code: 'RATE_LIMITED' });
      return refusal(429, JSON.stringify({ errors: [errors.format(e)] }), { 'retry-after': String(FULL_RETRY_AFTER_S) });
    }
    if (stream.closed) return asResult({});
    // Revoked since this request was authenticated (its body sent slowly): the revocation did not reach a stream not yet open.
    if (!(await this.opts.sessions.stillValid(stream.session.viewer))) return this.revokedMeanwhile(stream, described);
    stream.session.touch();
    const target = { id: '', sink: stream, query: params.query, variables: params.variables, operationName: params.operationName };
    const started = await this.opts.fanout.subscribe(prepared, stream.session.context, target);
    // The field's subscribe refused (not a member): its errors, then complete. One that could not
    // check (PostgreSQL or Redis away) is a 503 to come back after, as a stream that can't open.
    if (!('stop' in started)) {
      const refused = errors.shape(started).errors as GraphQLFormattedError[];
      if (firstCode(refused) !== 'SERVICE_UNAVAILABLE') return stream.refused(refused, described);
      stream.answered({ ...described, code: 'SERVICE_UNAVAILABLE' });
      return refusal(503, JSON.stringify({ errors: refused }), RETRY_SOON);
    }
    if (stream.endedEarly && !stream.res.headersSent) {
      started.stop();
      return this.revokedMeanwhile(stream, described, stream.endedEarly);
    }
    stream.answered({ ...described, code: null });
    stream.session.present();
    stream.op = started;
    if (stream.closed) started.stop();
    else if (started.finished) stream.ended(started, started.failure);
    // Ended while it was set up, an event already written: the error, then complete.
    else if (stream.endedEarly) stream.endSession(stream.endedEarly);
    return stream;
  }
}

/** Writes graphql-sse's answer: a refusal or a single result as it is, or the stream until it ends. */
async function respond(res: ServerResponse, stream: Stream, [body, init]: Response, get: boolean): Promise<void> {
  if (body === null || typeof body === 'string') {
    const text = init.status >= 400 ? withCodes(body, init.status, init.statusText, get) : (body ?? '');
    res.writeHead(init.status, { ...init.headers, ...(init.status >= 400 ? JSON_HEADERS : {}) });
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
export function attachStreams(schema: GraphQLSchema, services: Services, opts: StreamOptions): StreamHandle {
  return new StreamServer(schema, services, opts);
}
