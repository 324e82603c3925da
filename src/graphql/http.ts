import type { IncomingMessage, ServerResponse } from 'node:http';
import { HeaderMap, type ApolloServer, type HTTPGraphQLResponse } from '@apollo/server';
import { BodyTooLargeError, readBody, sendGraphQLError } from '../core/http';
import { invalidTokenError } from '../modules/auth/auth.tokens';
import { documentTooLargeMessage, oversizedDocument } from './limits';

const JSON_CONTENT = /^\s*application\/json\s*(;|$)/i;

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
    maxDocumentBytes: number;
    context: () => Promise<TContext>;
    /** Answers a POSTed operation it already knows without Apollo's pipeline (false: Apollo takes it), and learns Apollo's content types. */
    fast?: { handle: (body: unknown) => Promise<boolean>; learn: (accept: string | undefined, type: string | undefined) => void };
  },
): Promise<void> {
  let body: unknown = undefined;
  if (req.method === 'POST') {
    const anonymous = !(await opts.authenticated().catch(() => true));
    const limit = anonymous ? opts.anonymousBodyLimit : opts.bodyLimit;
    let raw: string;
    try {
      raw = await readBody(req, limit);
    } catch (e) {
      if (!(e instanceof BodyTooLargeError)) throw e;
      // A token that was sent but is no good is the reason, not the size: said so, as the context would.
      if (anonymous && req.headers.authorization) return sendGraphQLError(res, 401, 'UNAUTHENTICATED', invalidTokenError().message);
      return sendGraphQLError(res, 413, 'PAYLOAD_TOO_LARGE', `Request body exceeds ${limit} bytes${anonymous ? ' (without a token)' : ''}.`);
    }
    const type = req.headers['content-type'] ?? '';
    if (type.includes('application/json') || type.includes('application/graphql-response+json')) {
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
  // Only what Apollo would read as a JSON POST (it refuses other content types its own way).
  if (req.method === 'POST' && opts.fast && JSON_CONTENT.test(req.headers['content-type'] ?? '') && (await opts.fast.handle(body))) return;
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
