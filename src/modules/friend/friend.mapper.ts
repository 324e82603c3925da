import type { FriendEventPayload } from '../../shared/pubsub/topics';
import { FriendRequestStatus, type FriendRequest } from './friend.entity';
import { FriendEventKind, type FriendEventType, type FriendRequestType } from './friend.types';

export function toFriendRequestType(r: FriendRequest): FriendRequestType {
  return { id: r.id, status: r.status, createdAt: r.createdAt, fromId: r.from.id, toId: r.to.id };
}

/** A request as a friend event carries it, after the change. */
export function toFriendEventRequest(r: FriendRequest): NonNullable<FriendEventPayload['request']> {
  return { id: r.id, status: r.status, createdAt: r.createdAt.toISOString() };
}

/** What friendEvent tells of a committed change: to both users unless `audience` names fewer. */
export const friendEvent = (kind: FriendEventPayload['kind'], userIds: [string, string], request: FriendRequest | null, audience: string[] = userIds): FriendEventPayload => ({
  kind,
  userIds,
  audience,
  request: request && toFriendEventRequest(request),
  at: new Date().toISOString(),
});

export function payloadToFriendEventType(p: FriendEventPayload): FriendEventType {
  const [fromId, toId] = p.userIds;
  const request = p.request ? { id: p.request.id, status: p.request.status as FriendRequestStatus, createdAt: new Date(p.request.createdAt), fromId, toId } : null;
  return { kind: p.kind as FriendEventKind, request, createdAt: new Date(p.at), userIds: p.userIds };
}
