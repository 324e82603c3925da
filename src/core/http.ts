import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Env } from '../config/env';

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
