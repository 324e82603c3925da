import type { FriendRequest } from './friend.entity';
import type { FriendRequestType } from './friend.types';

export function toFriendRequestType(r: FriendRequest): FriendRequestType {
  return { id: r.id, status: r.status, createdAt: r.createdAt, fromId: r.from.id, toId: r.to.id };
}
