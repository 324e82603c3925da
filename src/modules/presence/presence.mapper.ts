import type { PresencePayload } from '../../shared/pubsub/topics';
import { PresenceStatus } from '../user/user.types';
import type { PresenceState } from './presence.service';
import type { PresenceType } from './presence.types';

export function toPresenceType(s: PresenceState): PresenceType {
  return { userId: s.userId, status: s.status as PresenceStatus, lastSeenAt: s.lastSeenAt };
}

/** A published presence change (plain JSON) as the API shows it. */
export function payloadToPresenceType(p: PresencePayload): PresenceType {
  return { userId: p.userId, status: p.status as PresenceStatus, lastSeenAt: p.lastSeenAt ? new Date(p.lastSeenAt) : null };
}
