import type { GroupEventPayload } from '../../shared/pubsub/topics';
import type { Group } from './group.entity';
import { GroupEventKind, GroupRole, type GroupEventType, type GroupType } from './group.types';
import type { MemberRole } from './group.entity';

export function toGroupType(g: Group): GroupType {
  return { id: g.id, name: g.name, isPrivate: g.isPrivate, isLobby: g.isLobby, memberCount: g.memberCount, createdAt: g.createdAt, slowModeSeconds: g.slowModeSeconds ?? 0, ownerId: g.owner?.id ?? null };
}

export function payloadToGroupEventType(e: GroupEventPayload): GroupEventType {
  return { kind: e.kind as GroupEventKind, groupId: e.groupId, createdAt: new Date(e.createdAt), userId: e.userId, name: e.name, slowModeSeconds: e.slowModeSeconds };
}

/** A user's role from their membership row (null: not a member) and the group's owner. */
export function roleOf(s: { ownerId: string | null; role: MemberRole | null }, userId: string): GroupRole | null {
  if (s.role === null) return null;
  return s.ownerId === userId ? GroupRole.OWNER : s.role === 'ADMIN' ? GroupRole.ADMIN : GroupRole.MEMBER;
}
