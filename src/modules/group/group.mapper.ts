import type { Group } from './group.entity';
import type { GroupType } from './group.types';

export function toGroupType(g: Group): GroupType {
  return { id: g.id, name: g.name, isPrivate: g.isPrivate, isLobby: g.isLobby, memberCount: g.memberCount, createdAt: g.createdAt, ownerId: g.owner?.id ?? null };
}
