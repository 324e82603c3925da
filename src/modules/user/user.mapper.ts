import type { UserPayload } from '../../shared/pubsub/topics';
import type { User } from './user.entity';
import type { ProfileRow } from './user.repository';
import type { UserType } from './user.types';
import { dateOf, isoTime } from '../../shared/time';

export function toUserType(u: User): UserType {
  return { id: u.id, username: u.username, displayName: u.displayName ?? null, createdAt: u.createdAt, storedLastSeenAt: u.lastSeenAt ?? null };
}

export function profileToUserType(r: ProfileRow): UserType {
  return { id: r.id, username: r.username, displayName: r.display_name, createdAt: dateOf(r.created_at), storedLastSeenAt: r.last_seen_at && dateOf(r.last_seen_at) };
}

/** The public profile an event carries: ISO dates, no lastSeenAt (presence has it live). */
export function toUserPayload(u: Pick<UserType, 'id' | 'username' | 'createdAt'> & { displayName?: string | null }): UserPayload {
  return { id: u.id, username: u.username, displayName: u.displayName ?? null, createdAt: isoTime(u.createdAt.getTime()) };
}

/** A user as an event carried them. */
export function payloadToUserType(p: UserPayload): UserType {
  return { id: p.id, username: p.username, displayName: p.displayName, createdAt: new Date(p.createdAt), storedLastSeenAt: null };
}

/** What a deleted account is shown as (its username becomes `deleted-` and its id). */
export const DELETED_DISPLAY_NAME = 'Deleted user';

/** Stands in as the owner of the lobby, which no user owns. */
export const SYSTEM_USER: UserType = {
  id: '00000000-0000-0000-0000-000000000000',
  username: 'parley',
  displayName: 'Parley',
  createdAt: new Date(0),
  storedLastSeenAt: null,
};
