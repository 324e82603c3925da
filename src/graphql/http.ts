import type { IncomingMessage, ServerResponse } from 'node:http';
import { HeaderMap, type ApolloServer, type HTTPGraphQLResponse } from '@apollo/server';
import { GraphQLError } from 'graphql';
import type { Env } from '../config/env';
import type { InFlight } from '../core/in-flight';
import { bearerToken, BodyRefusedError, BodyTooLargeError, ClientGoneError, clientIp, readBody, requestIdOf, RETRY_SOON, sendGraphQLError, sendJson, UnsupportedEncodingError } from '../core/http';
import { invalidTokenError } from '../modules/auth/auth.tokens';
import type { Viewer } from '../modules/auth/auth.viewer';
import type { Context } from '../modules/context';
import { publicOrigin } from '../modules/message/attachment.links';
import { FILE_WAIT_MS } from '../modules/message/message.service';
import type { Services } from '../modules/services';
import { BytesInFlight } from '../shared/concurrency';
import { requestScope } from '../shared/logger';
import { RequestContext } from './context';
import { isDependencyDown } from './errors';
import type { FastPath } from './fast-path';
import { anonymousBodyLimit, documentTooLargeMessage, oversizedDocument, selectsSubscription, signsIn, subscriptionOverHttp, TOO_MANY_VALUES, tooManyValues } from './limits';

/** What the /graphql route stands on. */
export interface GraphQLRouteDeps {
  apollo: ApolloServer<Context>;
  fastPath: FastPath;
  services: Services;
  env: Env;
  /** Operations running, which stopping waits for once HTTP drained. */
  inFlight: InFlight;
  /** The largest request body (bodyLimit in limits.ts). */
  bodyLimit: number;
  /** Bodies with a file taken in at once (fileBodies). */
  files: BytesInFlight;
  /** The text of a persisted query Apollo holds by this hash. */
  persisted?: (hash: string) => Promise<string | undefined>;
}

/** A user's bodies with a file taken in at once on an instance (see ATTACHMENT_BYTES_IN_FLIGHT): the rest wait. */
const FILE_BODIES_PER_USER = 4;

/** Bodies with a file that HTTP and SSE take in at once on this instance (ATTACHMENT_BYTES_IN_FLIGHT). */
export function fileBodies(env: Pick<Env, 'ATTACHMENT_BYTES_IN_FLIGHT'>, bodyLimit: number): BytesInFlight {
  return new BytesInFlight(env.ATTACHMENT_BYTES_IN_FLIGHT ?? 16 * bodyLimit, FILE_BODIES_PER_USER, FILE_WAIT_MS, () => new FilesBusyError());
}

/** A body with a file waited too long for its turn (see ATTACHMENT_BYTES_IN_FLIGHT). */
class FilesBusyError extends Error {
  constructor() {
    super('Many files are being sent here at once; try again in a few seconds.');
  }
}

/**
 * A body with a file's turn (see ATTACHMENT_BYTES_IN_FLIGHT), before it is read and held till its
 * answer is out: parsing it, decoding its file and storing it hold copies of it. False when there
 * is nothing more to do: its client left while it waited (the line left too), or it waited too
 * long (answered 503). Its client gone as its turn came, the turn is given back at once (its place
 * was lost for good: an outside probe, 2 of 2).
 */
export async function fileTurn(files: BytesInFlight, holder: Promise<string>, bytes: number, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const gone = new AbortController();
  let release: (() => void) | undefined;
  if (res.closed) return false;
  res.once('close', () => (release ? release() : gone.abort(new ClientGoneError('the client closed the connection while its file waited its turn'))));
  try {
    release = await files.take(await holder, bytes, gone.signal);
  } catch (e) {
    if (e instanceof ClientGoneError) return false;
    if (!(e instanceof FilesBusyError)) throw e;
    req.resume();
    res.setHeader('connection', 'close');
    sendGraphQLError(res, 503, 'SERVICE_UNAVAILABLE', e.message);
    return false;
  }
  if (res.closed) release();
  return !res.closed;
}

/**
 * Reads a request's body; an authenticated one larger than a token-less body may be (a send with a
 * file) takes its turn among the files first (`turn`: fileTurn): at its Content-Length before it
 * is read, or, sent without one (chunked), once it grows past that size, at the whole limit. A
 * chunked body took its turn at the limit before a byte was read: a small query waited behind a
 * user's four uploads, and got 503 after 30 s (an outside probe). Null when the turn refused it
 * (answered already).
 */
export async function readTurnBody(req: IncomingMessage, limit: number, small: number, turn: ((bytes: number) => Promise<boolean>) | undefined): Promise<string | null> {
  const length = req.headers['content-length'];
  try {
    if (length === undefined) return await readBody(req, limit, turn && { past: small, turn: () => turn(limit) });
    // A Content-Length that is no number counts as 0: read under the usual limit.
    const declared = Number(length) || 0;
    if (turn && declared > small && declared <= limit && !(await turn(declared))) return null;
    return await readBody(req, limit);
  } catch (e) {
    if (e instanceof BodyRefusedError) return null;
    throw e;
  }
}

/**
 * POST and GET /graphql: a request id (the client's X-Request-Id, or a new one) on the response
 * and on every line logged meanwhile, the context built once on first use (the viewer from the
 * bearer token; a bad token refuses the request), then the fast path or Apollo.
 */
export function graphqlRoute(d: GraphQLRouteDeps): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const { env, services, files } = d;
  return (req, res) => {
    // The router wrote the id on the response and logs the access line.
    const requestId = requestIdOf(req, res);
    let token = bearerToken(req.headers.authorization);
    let authenticating: Promise<Viewer | null> | undefined;
    let authenticatedAt = 0;
    const authenticate = () => {
      if (!authenticating) authenticatedAt = performance.now();
      return (authenticating ??= token ? services.auth.authenticate(token) : Promise.resolve(null));
    };
    let context: Promise<RequestContext> | undefined;
    const contextOf = () =>
      (context ??= (async () => {
        // Asked again when the body took a while (the token is checked before it is read, for its
        // size limit): a token revoked meanwhile must not run the operation. A cache lookup.
        if (authenticating && performance.now() - authenticatedAt > REAUTHENTICATE_AFTER_MS) authenticating = undefined;
        // A token that can't be checked (PostgreSQL away) is the server's trouble: 503, as the
        // drain answers, not the 500 of a failed context (an outside probe).
        const viewer = await authenticate().catch((e) => {
          throw isDependencyDown(e) ? new GraphQLError('Service temporarily unavailable; try again shortly.', { extensions: { code: 'SERVICE_UNAVAILABLE', http: { status: 503 } } }) : e;
        });
        if (token && !viewer) throw invalidTokenError();
        if (viewer) void services.presence.touch(viewer.userId, viewer.sessionId);
        const userAgent = req.headers['user-agent']?.slice(0, 512) || null;
        return new RequestContext(services, viewer, clientIp(req, env), requestId, publicOrigin(req, env), userAgent);
      })());
    // Inside the scope, lines logged by services (not only through ctx.logger) carry the id too.
    return requestScope.run({ requestId }, () =>
      d.inFlight.track(
        handleGraphQL(d.apollo, req, res, {
          bodyLimit: d.bodyLimit,
          anonymousBodyLimit: anonymousBodyLimit(env),
          authenticated: async () => !!(await authenticate()),
          fileTurn: (bytes) => fileTurn(files, authenticate().then((viewer) => viewer!.userId), bytes, req, res),
          maxDocumentBytes: env.GRAPHQL_MAX_DOCUMENT_BYTES,
          maxTokens: env.GRAPHQL_MAX_TOKENS,
          context: contextOf,
          // A sign-in with a token that is no good (kept after a logout): answered as without one.
          signingIn: () => void ((authenticating = undefined), (token = null)),
          persisted: d.persisted,
          fast: { handle: (body) => d.fastPath.handle(res, body, req.headers.accept, requestId, contextOf), learn: d.fastPath.learn },
        }),
      ),
    );
  };
}

const JSON_CONTENT = /^\s*application\/json\s*(;|$)/i;

/** Whether a Content-Type header says JSON (parameters aside). */
export const isJsonContent = (type: string | undefined): boolean => JSON_CONTENT.test(type ?? '');

/** The sha256Hash of a request's `persistedQuery` extension (a JSON string over GET), if any. */
function persistedHash(extensions: unknown): string | undefined {
  let e = extensions;
  if (typeof e === 'string') {
    try {
      e = JSON.parse(e);
    } catch {
      return undefined;
    }
  }
  const hash = (e as { persistedQuery?: { sha256Hash?: unknown } } | null | undefined)?.persistedQuery?.sha256Hash;
  return typeof hash === 'string' ? hash : undefined;
}

/** A request whose body took longer than this after its token was checked has it checked again. */
const REAUTHENTICATE_AFTER_MS = 250;

/** Bridges a Node request to Apollo Server (what an integration package would do). */
export async function handleGraphQL<TContext extends object>(
  apollo: ApolloServer<TContext>,
  req: IncomingMessage,
  res: ServerResponse,
  opts: {
    bodyLimit: number;
    /** The body limit of a request without a valid token: it can't send an attachment, and must not make the server hold megabytes. */
    anonymousBodyLimit: number;
    /** Whether the request carries a valid token (rejecting: the large limit applies and the context reports the failure). */
    authenticated: () => Promise<boolean>;
    /** Waits for the turn of an authenticated body larger than a token-less one may be, before it is read (see fileTurn). */
    fileTurn?: (bytes: number) => Promise<boolean>;
    maxDocumentBytes: number;
    /** The parser's token limit (GRAPHQL_MAX_TOKENS), for the documents read here before Apollo. */
    maxTokens: number;
    context: () => Promise<TContext>;
    /** The request is a sign-in (login, signup) carrying a token that is no good: drop the token. */
    signingIn?: () => void;
    /** The text of a persisted query Apollo holds by this hash (automatic persisted queries). */
    persisted?: (hash: string) => Promise<string | undefined>;
    /** Answers a POSTed operation it already knows without Apollo's pipeline (false: Apollo takes it), and learns Apollo's content types. */
    fast?: { handle: (body: unknown) => Promise<boolean>; learn: (accept: string | undefined, type: string | undefined) => void };
  },
): Promise<void> {
  // Every answer is one user's (a token, their messages) and of its moment: never stored, by a
  // browser (a GET) or a proxy. Apollo's cache-control plugin, which said so, is off (see server.ts).
  res.setHeader('cache-control', 'no-store');
  let body: unknown = undefined;
  if (req.method === 'POST') {
    const anonymous = !(await opts.authenticated().catch(() => true));
    const limit = anonymous ? opts.anonymousBodyLimit : opts.bodyLimit;
    let raw: string;
    try {
      // Its turn among the files being taken in: unread till then, so that it holds no memory here.
      const read = await readTurnBody(req, limit, opts.anonymousBodyLimit, anonymous ? undefined : opts.fileTurn);
      if (read === null) return;
      raw = read;
    } catch (e) {
      // Hung up mid-body: no one to answer, nothing to log as the server's error.
      if (e instanceof ClientGoneError) return;
      if (e instanceof UnsupportedEncodingError) return sendGraphQLError(res, 415, 'BAD_USER_INPUT', e.message);
      if (!(e instanceof BodyTooLargeError)) throw e;
      // A token that was sent but is no good is the reason, not the size: said so, as the context would.
      if (anonymous && req.headers.authorization) return sendGraphQLError(res, 401, 'UNAUTHENTICATED', invalidTokenError().message);
      return sendGraphQLError(res, 413, 'PAYLOAD_TOO_LARGE', `Request body exceeds ${limit} bytes${anonymous ? ' (without a token)' : ''}.`);
    }
    // Media types are case-insensitive (RFC 9110): `Application/JSON` was passed on unparsed (an outside probe).
    const type = (req.headers['content-type'] ?? '').toLowerCase();
    if (type.includes('application/json') || type.includes('application/graphql-response+json')) {
      if (tooManyValues(raw)) return sendGraphQLError(res, 413, 'PAYLOAD_TOO_LARGE', TOO_MANY_VALUES);
      try {
        body = raw.length ? JSON.parse(raw) : undefined;
      } catch {
        return sendGraphQLError(res, 400, 'BAD_USER_INPUT', 'The request body is not valid JSON.');
      }
    } else {
      body = raw;
    }
  }
  const q = req.url?.indexOf('?') ?? -1;
  const search = q >= 0 ? req.url!.slice(q) : '';
  // The body may be megabytes (attachments in variables); the document itself is refused before Apollo parses and caches it.
  const query = req.method === 'POST' ? (body as { query?: unknown } | null | undefined)?.query : new URLSearchParams(search).get('query');
  if (typeof query === 'string' && oversizedDocument(query, opts.maxDocumentBytes)) {
    return sendGraphQLError(res, 413, 'PAYLOAD_TOO_LARGE', documentTooLargeMessage(opts.maxDocumentBytes));
  }
  // Before Apollo validates it (see selectsSubscription): HTTP answers every subscription alike.
  const operationName = req.method === 'POST' ? (body as { operationName?: unknown } | null | undefined)?.operationName : new URLSearchParams(search).get('operationName');
  if (opts.signingIn && req.headers.authorization && !(await opts.authenticated().catch(() => true))) {
    // A persisted query sent by its hash alone is read as Apollo will read it: one not held yet is
    // answered PERSISTED_QUERY_NOT_FOUND as without a token, so the client sends its text (a sign-in
    // with a stale token was refused 401 before, which the client never got past: an outside probe).
    const hash = typeof query === 'string' ? undefined : persistedHash(req.method === 'POST' ? (body as { extensions?: unknown } | null | undefined)?.extensions : new URLSearchParams(search).get('extensions'));
    const text = hash !== undefined ? await opts.persisted?.(hash) : query;
    if ((hash !== undefined && text === undefined) || signsIn(text, operationName, opts.maxTokens)) opts.signingIn();
  }
  if (selectsSubscription(query, operationName, opts.maxTokens)) {
    const e = subscriptionOverHttp();
    return sendJson(res, 400, { errors: [{ message: e.message, extensions: { code: e.extensions.code, reason: e.extensions.reason } }] });
  }
  // Only what Apollo would read as a JSON POST (it refuses other content types its own way).
  if (req.method === 'POST' && opts.fast && isJsonContent(req.headers['content-type']) && (await opts.fast.handle(body))) return;
  // Only for Apollo: the fast path reads the few headers it needs from the request itself.
  const headers = new HeaderMap();
  for (const k in req.headers) {
    const v = req.headers[k];
    if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
  }
  const response: HTTPGraphQLResponse = await apollo.executeHTTPGraphQLRequest({
    httpGraphQLRequest: { method: req.method ?? 'GET', headers, search, body },
    context: opts.context,
  });
  for (const [k, v] of response.headers) res.setHeader(k, v);
  res.statusCode = response.status ?? 200;
  // A token that couldn't be checked (PostgreSQL away): when to come back, as every 503 says.
  if (res.statusCode === 503 && !res.hasHeader('retry-after')) res.setHeader('retry-after', RETRY_SOON['retry-after']);
  if (req.method === 'POST' && res.statusCode === 200) opts.fast?.learn(req.headers.accept, response.headers.get('content-type'));
  if (response.body.kind === 'complete') {
    // A known length: one write of head and body, not chunked framing.
    res.setHeader('content-length', Buffer.byteLength(response.body.string));
    res.end(response.body.string);
    return;
  }
  for await (const chunk of response.body.asyncIterator) res.write(chunk);
  res.end();
}
