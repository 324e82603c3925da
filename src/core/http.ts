import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Env } from '../config/env';

/** The client's address as limits count it (see limitAddress), from the socket or (behind a trusted proxy) X-Forwarded-For. */
export function clientIp(req: IncomingMessage, env: Pick<Env, 'TRUST_PROXY'>): string {
  if (env.TRUST_PROXY) {
    // The last entry is the one the proxy appended; the client wrote any before it.
    const fwd = req.headers['x-forwarded-for'];
    const last = (Array.isArray(fwd) ? fwd.join(',') : fwd)?.split(',').map((a) => a.trim()).filter(Boolean).pop();
    if (last) return limitAddress(last);
  }
  return limitAddress(req.socket.remoteAddress ?? 'unknown');
}

/**
 * The address per-address limits count by: an IPv4 address (also one written inside IPv6: mapped,
 * translated, NAT64's 64:ff9b::/96, the old compatible form), or an IPv6 address's /64. One host is
 * commonly handed a whole /64, so counting its addresses one by one would give it 2^64 allowances of
 * every limit (wrong passwords, signups, pending sockets). A port or zone written with it is dropped.
 */
export function limitAddress(address: string): string {
  let ip = address.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(ip);
  if (bracketed) ip = bracketed[1];
  const withPort = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(ip);
  if (withPort) ip = withPort[1];
  ip = ip.split('%')[0];
  if (isIP(ip) !== 6) return ip;
  const g = ipv6Groups(ip);
  const zero = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  const inner = `${g[6] >> 8}.${g[6] & 255}.${g[7] >> 8}.${g[7] & 255}`;
  if (zero(0, 5) && g[5] === 0xffff) return inner;
  if (zero(0, 4) && g[4] === 0xffff && g[5] === 0) return inner;
  if (g[0] === 0x64 && g[1] === 0xff9b && zero(2, 6)) return inner;
  if (zero(0, 6) && g[6] !== 0) return inner;
  return `${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64`;
}

/** The eight groups of a valid IPv6 address (no zone). */
function ipv6Groups(ip: string): number[] {
  // The URL parser writes an IPv6 host canonically: lower case, a dotted tail as two hex groups.
  const canonical = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const [head, tail] = canonical.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...fill, ...right].map((x) => parseInt(x, 16));
}

/**
 * Whether a browser origin may call the API: no Origin (not a browser page), '*', or listed in
 * CORS_ORIGINS (kept lower-cased: an app's scheme keeps its host as the page wrote it).
 */
export function originAllowed(origin: string | undefined, allowed: readonly string[]): boolean {
  if (!origin || allowed.includes('*')) return true;
  return allowed.includes(origin.replace(/\/$/, '').toLowerCase());
}

/** Headers a page may send besides the CORS-safelisted ones, when its preflight names none we can read. */
const ALLOWED_HEADERS = 'authorization, content-type, apollo-require-preflight, x-apollo-operation-name, x-request-id';
/** A preflight's header list: comma-separated header names (RFC 9110 tokens), of a sane length. */
const HEADER_LIST = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:[ \t]*,[ \t]*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*$/;

/**
 * CORS for one request. A preflight is answered here (204); a request from an origin that is
 * not allowed is refused with 403 rather than executed and hidden from the page only by the
 * browser. Returns true when the request was answered.
 *
 * With `*` every answer carries `Access-Control-Allow-Origin: *`, asked with an Origin or not; with
 * a list, every answer says `Vary: Origin`. Else a browser that cached an answer without them (an
 * `<img>` of an attachment link sends no Origin) reused it for a later `fetch()` of the same URL and
 * failed it (a browser probe). Credentials (cookies) are never allowed: the API reads bearer tokens.
 */
export function handleCors(req: IncomingMessage, res: ServerResponse, allowed: readonly string[]): boolean {
  const origin = req.headers.origin;
  const any = allowed.includes('*');
  if (!any) res.setHeader('vary', 'Origin');
  if (!originAllowed(origin, allowed)) {
    sendGraphQLError(res, 403, 'FORBIDDEN', 'This origin is not allowed.');
    return true;
  }
  if (any) res.setHeader('access-control-allow-origin', '*');
  else if (origin) res.setHeader('access-control-allow-origin', origin);
  if (any || origin) res.setHeader('access-control-expose-headers', 'x-request-id, retry-after, content-disposition');
  if (req.method === 'OPTIONS') {
    // The headers the page asks for, whatever its client library adds (Apollo Client's
    // apollographql-client-name, tracing headers): a token, not a cookie, is what authorizes.
    const asked = req.headers['access-control-request-headers'];
    const headers = typeof asked === 'string' && asked.length <= 1000 && HEADER_LIST.test(asked.trim()) ? asked.trim() : ALLOWED_HEADERS;
    res.writeHead(204, {
      'access-control-allow-methods': 'GET, POST, OPTIONS',
      'access-control-allow-headers': headers,
      'access-control-max-age': '600',
      vary: any ? 'Access-Control-Request-Headers' : 'Origin, Access-Control-Request-Headers',
    });
    res.end();
    return true;
  }
  return false;
}

/** A request body sent compressed (Content-Encoding): 415. */
export class UnsupportedEncodingError extends Error {
  constructor(encoding: string) {
    super(`Content-Encoding '${encoding}' is not supported: send the request body uncompressed.`);
  }
}

export class BodyTooLargeError extends Error {}
/** The client hung up before its body was whole: nothing to answer, and no fault of the server's. */
export class ClientGoneError extends Error {}

/** A body that grows past `past` bytes waits for `turn` before more is read; false: refused, and answered (BodyRefusedError). */
export interface BodyGrowth {
  past: number;
  turn(): Promise<boolean>;
}
/** The body's turn refused it and its answer was written (or the client left while it waited). */
export class BodyRefusedError extends Error {}

/**
 * Reads the request body, refusing more than `limit` bytes; ClientGoneError when the connection
 * ends before it is whole. With `growth`, reading stops as the body passes its size until its turn comes.
 */
export function readBody(req: IncomingMessage, limit: number, growth?: BodyGrowth): Promise<string> {
  return new Promise((resolve, reject) => {
    // Bodies are read as sent, never inflated: a compressed one was refused as JSON that is not valid.
    const encoding = req.headers['content-encoding']?.trim().toLowerCase();
    if (encoding && encoding !== 'identity') {
      req.resume();
      reject(new UnsupportedEncodingError(encoding.slice(0, 40)));
      return;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      req.resume();
      reject(new BodyTooLargeError());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    let asked = false;
    req.on('data', (c: Buffer) => {
      if (over) return;
      size += c.length;
      if (size > limit) {
        // Answered 413 while the rest is read and dropped, as a declared length over the limit is
        // (HTTP_REQUEST_TIMEOUT bounds it): destroyed here, a chunked body's client saw its
        // connection reset instead of the answer (an outside probe).
        over = true;
        chunks.length = 0;
        reject(new BodyTooLargeError());
        return;
      }
      chunks.push(c);
      if (growth && !asked && size > growth.past) {
        asked = true;
        req.pause();
        const refused = (e: unknown) => {
          over = true;
          chunks.length = 0;
          reject(e);
        };
        growth.turn().then((go) => (go ? req.resume() : refused(new BodyRefusedError())), refused);
      }
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    // Node says 'aborted' (ECONNRESET) as an error of the request: the client's doing, as is a close before the end.
    const gone = () => reject(new ClientGoneError('the client closed the connection before the body was whole'));
    req.on('error', (e) => (req.complete ? reject(e) : gone()));
    req.on('close', () => req.complete || gone());
  });
}

/**
 * The request's id, on its response from the start: the client's X-Request-Id (64 characters at
 * most), else a new one. Asked again (the router, then /graphql), it is the same.
 */
export function requestIdOf(req: IncomingMessage, res: ServerResponse): string {
  const set = res.getHeader('x-request-id');
  if (typeof set === 'string') return set;
  const id = (req.headers['x-request-id'] as string | undefined)?.slice(0, 64) || randomUUID();
  res.setHeader('x-request-id', id);
  return id;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** A 503 says when to come back (a second), as SSE's and the WebSocket upgrade's refusals do. */
export const RETRY_SOON: Readonly<Record<string, string>> = { 'retry-after': '1' };

/** One GraphQL error in the shape clients expect, for failures before GraphQL runs. */
export function sendGraphQLError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { errors: [{ message, extensions: { code } }] }, status === 503 ? RETRY_SOON : {});
}

/** Reads a bearer token from an Authorization header value or a bare token. */
export function bearerToken(value: unknown): string | null {
  if (typeof value !== 'string' || !value.trim()) return null;
  const v = value.trim();
  const m = /^Bearer\s+(.+)$/i.exec(v);
  return m ? m[1].trim() : v;
}
