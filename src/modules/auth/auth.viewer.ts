import { UnauthenticatedError } from '../../shared/errors';

/** The authenticated caller: which user, through which token. */
export interface Viewer {
  userId: string;
  sessionId: string;
  tokenHash: string;
  /** When the token expires (ms since the epoch): a socket opened with it is closed then. */
  expiresAt: number;
}

/** The viewer, or UNAUTHENTICATED. For resolvers behind @Authorized() this never throws. */
export function viewerOf(ctx: { viewer: Viewer | null }): Viewer {
  if (!ctx.viewer) throw new UnauthenticatedError();
  return ctx.viewer;
}
