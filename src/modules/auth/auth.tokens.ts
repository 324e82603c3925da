import { createHash, randomBytes } from 'node:crypto';
import { GraphQLError } from 'graphql';

/** 256 random bits, URL-safe. Only its hash is ever stored. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** Reads a bearer token from an Authorization header value or a bare token. */
export function bearerToken(value: unknown): string | null {
  if (typeof value !== 'string' || !value.trim()) return null;
  const v = value.trim();
  const m = /^Bearer\s+(.+)$/i.exec(v);
  return m ? m[1].trim() : v;
}

/** A token was sent but is unknown, revoked or expired: the whole request is refused (HTTP 401). */
export function invalidTokenError(): GraphQLError {
  return new GraphQLError('Your token is invalid, expired or revoked; sign in again.', {
    extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } },
  });
}
