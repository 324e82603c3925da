import type { User } from './user.entity';
import type { UserType } from './user.types';

export function toUserType(u: User): UserType {
  return { id: u.id, username: u.username, displayName: u.displayName ?? null, createdAt: u.createdAt, storedLastSeenAt: u.lastSeenAt ?? null };
}

/** Stands in as the owner of the lobby, which no user owns. */
export const SYSTEM_USER: UserType = {
  id: '00000000-0000-0000-0000-000000000000',
  username: 'parley',
  displayName: 'Parley',
  createdAt: new Date(0),
  storedLastSeenAt: null,
};
