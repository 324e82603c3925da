import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { GraphQLError } from 'graphql';
import { createLoaders, type Loaders } from '../core/loaders';
import type { Services } from '../core/services';
import { UnauthenticatedError } from '../shared/errors';
import type { Logger } from '../shared/logger';

/** The authenticated caller: which user, through which token. */
export interface Viewer {
  userId: string;
  sessionId: string;
  tokenHash: string;
  /** When the token expires (ms since the epoch): a socket opened with it is closed then. */
  expiresAt: number;
}

export interface Context {
  /** A fork of the EntityManager for this one operation. */
  em: EntityManager;
  viewer: Viewer | null;
  services: Services;
  loaders: Loaders;
  /** Client address, for rate limits. */
  ip: string;
  /** The request's User-Agent (a login tells the account's other sessions). */
  userAgent?: string | null;
  requestId: string;
  logger: Logger;
  /** Where the client reached this server (`https://host`), for absolute links; absent: links are relative. */
  origin?: string;
}

/** The viewer, or UNAUTHENTICATED. For resolvers behind @Authorized() this never throws. */
export function viewerOf(ctx: Pick<Context, 'viewer'>): Viewer {
  if (!ctx.viewer) throw new UnauthenticatedError();
  return ctx.viewer;
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

/** Builds the context of one operation (HTTP, or a query or mutation over WebSocket); `em` and the loaders are created on first use. */
export function createContext(
  services: Services,
  viewer: Viewer | null,
  meta: { ip: string; requestId: string; logger: Logger; userAgent?: string | null; origin?: string },
): Context {
  let em: EntityManager | undefined;
  let loaders: Loaders | undefined;
  return {
    viewer,
    services,
    ip: meta.ip,
    userAgent: meta.userAgent ?? null,
    requestId: meta.requestId,
    logger: meta.logger,
    origin: meta.origin,
    get em() {
      return (em ??= services.orm.em.fork() as EntityManager);
    },
    get loaders() {
      return (loaders ??= createLoaders(this.em, services, viewer?.userId ?? null));
    },
  };
}

/**
 * A context on a WebSocket. For a connection's subscriptions (`perEvent`) it lives as long as the
 * socket, so it holds only the viewer and address, and every read of `em` or `loaders` is a fresh
 * one (each event is executed with its own, nothing cached from an earlier one). For a query or
 * mutation over the socket, `em` and the loaders are made once on first use, as over HTTP. Either
 * way the request id and logger are made only when something logs: a heartbeat logs nothing.
 */
export class SocketContext implements Context {
  private id: string | undefined;
  private forked: EntityManager | undefined;
  private loaded: Loaders | undefined;

  constructor(
    readonly services: Services,
    readonly viewer: Viewer,
    readonly ip: string,
    private readonly perEvent: boolean,
    readonly origin?: string,
  ) {}

  get em(): EntityManager {
    if (this.perEvent) return this.services.orm.em.fork() as EntityManager;
    return (this.forked ??= this.services.orm.em.fork() as EntityManager);
  }

  get loaders(): Loaders {
    if (this.perEvent) return createLoaders(this.em, this.services, this.viewer.userId);
    return (this.loaded ??= createLoaders(this.em, this.services, this.viewer.userId));
  }

  get requestId(): string {
    return (this.id ??= randomUUID());
  }

  get logger(): Logger {
    return this.services.logger.child({ requestId: this.requestId });
  }
}
