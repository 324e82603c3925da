import type { EntityManager } from '@mikro-orm/postgresql';
import type { GraphQLResolveInfo } from 'graphql';
import type { Logger } from '../shared/logger';
import type { Viewer } from './auth/auth.viewer';
import type { Loaders } from './loaders';
import type { Services } from './services';

/**
 * Decoded attachment bytes one response may still carry (`Attachment.base64`): a few aliased
 * pages of history must not turn a short query into hundreds of megabytes.
 */
export class ByteBudget {
  constructor(private left: number) {}

  /** Spends `bytes` if they fit; false (nothing spent) when they don't. */
  take(bytes: number): boolean {
    if (bytes > this.left) return false;
    this.left -= bytes;
    return true;
  }

  /** Bytes taken for a file then refused (its rate): they carry nothing, and the others may have them. */
  giveBack(bytes: number): void {
    this.left += bytes;
  }
}

/** What every resolver sees: one per operation, built by src/graphql/context.ts (HTTP and WebSocket). */
export interface Context {
  /** A fork of the EntityManager for this one operation. */
  em: EntityManager;
  viewer: Viewer | null;
  services: Services;
  loaders: Loaders;
  /**
   * Forgets what the loaders read: a mutation's root fields run one after another, and what one
   * changed (a role, a membership) read through loaders filled by the one before was out of date.
   */
  freshLoaders?(): void;
  /** Client address, for rate limits. */
  ip: string;
  /** The request's User-Agent (a login tells the account's other sessions). */
  userAgent?: string | null;
  requestId: string;
  logger: Logger;
  /** What is left of ATTACHMENT_MAX_BYTES_PER_RESPONSE for this operation's response. */
  attachmentBudget: ByteBudget;
  /** Where the client reached this server (`https://host`), for absolute links; absent: links are relative. */
  origin?: string;
}

/**
 * Whether this run is a subscription event's to a member of the group or project connected here
 * (the membership index says so): such a run may read the scope's row as every subscriber here
 * reads it (GroupSnapshots, ProjectSnapshots), whom it is visible to being known.
 */
export function eventToLocalMember(ctx: Context, info: GraphQLResolveInfo, scope: 'group' | 'project', id: string): boolean {
  const viewer = ctx.viewer?.userId;
  return info.operation.operation === 'subscription' && !!viewer && !!ctx.services.memberships.localMembers(scope, id)?.has(viewer);
}
