import { createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Env } from '../../config/env';
import { serverSecret } from '../../core/secrets';

/** A host as a Host header may name it: a name or IPv4 address, or a bracketed IPv6 one, and an optional port. */
const HOST = /^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/** The last entry of a forwarded header: the one the trusted proxy in front wrote (a client writes any before it, as with X-Forwarded-For). */
const lastOf = (v: string | string[] | undefined) => (Array.isArray(v) ? v.join(',') : v)?.split(',').pop()?.trim();

/**
 * The address clients reach this server at, for absolute links: PUBLIC_URL, else the request's
 * scheme and Host (X-Forwarded-Proto and -Host behind a trusted proxy). Undefined when the
 * request names no usable host (links are then relative).
 */
export function publicOrigin(req: IncomingMessage, env: Pick<Env, 'PUBLIC_URL' | 'TRUST_PROXY'>): string | undefined {
  if (env.PUBLIC_URL) return env.PUBLIC_URL;
  const forwardedProto = env.TRUST_PROXY ? lastOf(req.headers['x-forwarded-proto'])?.toLowerCase() : undefined;
  const host = (env.TRUST_PROXY && lastOf(req.headers['x-forwarded-host'])) || req.headers.host;
  if (!host || !HOST.test(host)) return undefined;
  const encrypted = !!(req.socket as TLSSocket).encrypted;
  const scheme = forwardedProto === 'https' || forwardedProto === 'http' ? forwardedProto : encrypted ? 'https' : 'http';
  const origin = `${scheme}://${host}`;
  // Every socket holds its origin for its lifetime: one string per origin, not one per socket.
  const known = ORIGINS.get(origin);
  if (known !== undefined) return known;
  if (ORIGINS.size < MAX_ORIGINS) ORIGINS.set(origin, origin);
  return origin;
}

/** Origins seen, each kept once (bounded: the Host header is the client's to write). */
const ORIGINS = new Map<string, string>();
const MAX_ORIGINS = 64;

/**
 * Signed, short-lived links to attachments, for `<img src>` and `<a href>` that can't send an
 * Authorization header: `/attachments/<id>?expires=<unix seconds>&signature=<HMAC of id and expiry>`.
 * Whoever holds a link may fetch that one file until it expires; a link altered in any way
 * (another id, a later expiry) is refused.
 */
export class AttachmentLinks {
  private key: Buffer | undefined;

  constructor(private readonly env: Pick<Env, 'ATTACHMENT_URL_TTL' | 'ATTACHMENT_URL_SECRET'>) {
    if (env.ATTACHMENT_URL_SECRET) this.key = Buffer.from(env.ATTACHMENT_URL_SECRET, 'utf8');
  }

  /** Loads the key shared through the database when none is configured. */
  async start(em: EntityManager): Promise<void> {
    this.key ??= await serverSecret(em, 'attachment-url');
  }

  /**
   * The link to attachment `id`, valid for at least ATTACHMENT_URL_TTL. The expiry is rounded up
   * to a fifth of the TTL, so the same attachment keeps one URL for a while (browsers cache it,
   * and a subscription frame shared by many sockets stays the same).
   */
  url(id: string, origin = '', now = Date.now()): string {
    const ttl = this.env.ATTACHMENT_URL_TTL;
    const step = Math.max(1, Math.floor(ttl / 5));
    const expires = Math.ceil((now / 1000 + ttl) / step) * step;
    return `${origin}/attachments/${encodeURIComponent(id)}?expires=${expires}&signature=${this.sign(id, expires)}`;
  }

  /** Whether `expires` and `signature` (from a link's query) are a valid, unexpired signature of `id`. */
  verify(id: string, expires: string | null, signature: string | null, now = Date.now()): boolean {
    // Only the expiry as url() writes it (no leading zero): any other spelling is an altered link.
    if (!expires || !signature || !/^[1-9]\d{0,11}$/.test(expires) || Number(expires) * 1000 <= now) return false;
    const expected = Buffer.from(this.sign(id, Number(expires)));
    const given = Buffer.from(signature);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }

  private sign(id: string, expires: number): string {
    if (!this.key) throw new Error('AttachmentLinks used before start()');
    return createHmac('sha256', this.key).update(`${id}\n${expires}`).digest('base64url');
  }
}
