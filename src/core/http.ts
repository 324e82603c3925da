import type { IncomingMessage, ServerResponse } from 'node:http';
import { HeaderMap, type ApolloServer, type HTTPGraphQLResponse } from '@apollo/server';
import type { Env } from '../config/env';
import { invalidTokenError } from '../graphql/context';
import { documentTooLargeMessage, oversizedDocument } from '../graphql/limits';

/** The client address, from the socket or (behind a trusted proxy) X-Forwarded-For. */
export function clientIp(req: IncomingMessage, env: Pick<Env, 'TRUST_PROXY'>): string {
  if (env.TRUST_PROXY) {
    // The last entry is the one the proxy appended; the client wrote any before it.
    const fwd = req.headers['x-forwarded-for'];
    const last = (Array.isArray(fwd) ? fwd.join(',') : fwd)?.split(',').map((a) => a.trim()).filter(Boolean).pop();
    if (last) return last;
  }
  return req.socket.remoteAddress ?? 'unknown';
}

/** Whether a browser origin may call the API: no Origin (not a browser page), '*', or listed in CORS_ORIGINS. */
export function originAllowed(origin: string | undefined, allowed: readonly string[]): boolean {
  if (!origin || allowed.includes('*')) return true;
  return allowed.includes(origin.replace(/\/$/, ''));
}

/**
 * CORS for one request. A preflight is answered here (204); a request from an origin that is
 * not allowed is refused with 403 rather than executed and hidden from the page only by the
 * browser. Returns true when the request was answered.
 */
export function handleCors(req: IncomingMessage, res: ServerResponse, allowed: readonly string[]): boolean {
  const origin = req.headers.origin;
  if (!originAllowed(origin, allowed)) {
    sendGraphQLError(res, 403, 'FORBIDDEN', 'This origin is not allowed.');
    return true;
  }
  if (origin) {
    res.setHeader('access-control-allow-origin', allowed.includes('*') ? '*' : origin);
    res.setHeader('vary', 'Origin');
    res.setHeader('access-control-expose-headers', 'x-request-id, retry-after');
  }
  if (req.method === 'OPTIONS') {
    res.writeHead(204, {
      'access-control-allow-methods': 'GET, POST, OPTIONS',
      'access-control-allow-headers': 'authorization, content-type, apollo-require-preflight, x-apollo-operation-name, x-request-id',
      'access-control-max-age': '600',
    });
    res.end();
    return true;
  }
  return false;
}

export class BodyTooLargeError extends Error {}

/** Reads the request body, refusing more than `limit` bytes. */
export function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume();
      reject(new BodyTooLargeError());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        req.destroy();
        reject(new BodyTooLargeError());
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** One GraphQL error in the shape clients expect, for failures before GraphQL runs. */
export function sendGraphQLError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { errors: [{ message, extensions: { code } }] });
}

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
  const headers = new HeaderMap();
  for (const k in req.headers) {
    const v = req.headers[k];
    if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v);
  }
  const q = req.url?.indexOf('?') ?? -1;
  const search = q >= 0 ? req.url!.slice(q) : '';
  // The body may be megabytes (attachments in variables); the document itself is refused before Apollo parses and caches it.
  const query = req.method === 'POST' ? (body as { query?: unknown } | null | undefined)?.query : new URLSearchParams(search).get('query');
  if (typeof query === 'string' && oversizedDocument(query, opts.maxDocumentBytes)) {
    return sendGraphQLError(res, 413, 'PAYLOAD_TOO_LARGE', documentTooLargeMessage(opts.maxDocumentBytes));
  }
  const response: HTTPGraphQLResponse = await apollo.executeHTTPGraphQLRequest({
    httpGraphQLRequest: { method: req.method ?? 'GET', headers, search, body },
    context: opts.context,
  });
  for (const [k, v] of response.headers) res.setHeader(k, v);
  res.statusCode = response.status ?? 200;
  if (response.body.kind === 'complete') {
    // A known length: one write of head and body, not chunked framing.
    res.setHeader('content-length', Buffer.byteLength(response.body.string));
    res.end(response.body.string);
    return;
  }
  for await (const chunk of response.body.asyncIterator) res.write(chunk);
  res.end();
}
