import type { GroupEventPayload } from '../../shared/pubsub/topics';
import type { Group } from './group.entity';
import { GroupEventKind, type GroupEventType, type GroupType } from './group.types';

export function toGroupType(g: Group): GroupType {
  return { id: g.id, name: g.name, isPrivate: g.isPrivate, isLobby: g.isLobby, memberCount: g.memberCount, createdAt: g.createdAt, slowModeSeconds: g.slowModeSeconds ?? 0, ownerId: g.owner?.id ?? null };
}

export function payloadToGroupEventType(e: GroupEventPayload): GroupEventType {
  return { kind: e.kind as GroupEventKind, groupId: e.groupId, createdAt: new Date(e.createdAt), userId: e.userId };
}
