import DataLoader from 'dataloader';
import type { EntityManager } from '@mikro-orm/postgresql';
import { toGroupType } from './group/group.mapper';
import { groupRepository } from './group/group.repository';
import type { GroupType } from './group/group.types';
import { messageRepository } from './message/message.repository';
import { toMessageType } from './message/message.mapper';
import type { MessageType } from './message/message.types';
import type { PinService } from './message/pin.service';
import type { PresenceService, PresenceState } from './presence/presence.service';
import type { ProjectService } from './project/project.service';
import { hidePresence } from './safety/block.presence';
import type { BlockService } from './safety/block.service';
import type { ProjectType } from './project/project.types';
import type { ReactionSummary } from '../shared/pubsub/topics';
import { profileToUserType } from './user/user.mapper';
import { userRepository } from './user/user.repository';
import type { UserType } from './user/user.types';

/** Per-operation batch loaders: one query for every user or presence a response needs. */
export interface Loaders {
  user: DataLoader<string, UserType | null>;
  presence: DataLoader<string, PresenceState>;
  /** Projects as the viewer sees them (null when not a member); each loaded once per operation, however many entries name it. */
  project: DataLoader<string, ProjectType | null>;
  /** Groups by id, for rows that already prove the viewer a member (a conversation's group). */
  group: DataLoader<string, GroupType | null>;
  /** Messages by id, for rows that already prove the viewer may see them (a conversation's last message). */
  message: DataLoader<string, MessageType | null>;
  /** Reactions of every message in a response, in one query. */
  reactions: DataLoader<string, ReactionSummary[]>;
  /** Pins of every message in a response, in one query. */
  pin: DataLoader<string, { at: Date; byId: string | null } | null>;
}

export function createLoaders(
  em: EntityManager,
  services: { presence: PresenceService; projects: ProjectService; pins: PinService; blocks: BlockService },
  viewerId: string | null,
): Loaders {
  const { presence, projects, pins } = services;
  return {
    user: new DataLoader(async (ids) => {
      const byId = new Map((await userRepository.profiles(em, ids)).map((u) => [u.id, profileToUserType(u)]));
      return ids.map((id) => byId.get(id) ?? null);
    }),
    // A user the viewer blocks reads as OFFLINE, never seen (modules/safety).
    presence: new DataLoader(async (ids) => {
      const others = viewerId ? ids.filter((id) => id !== viewerId) : [];
      const [states, blocked] = await Promise.all([presence.states([...ids]), others.length ? services.blocks.blockedAmong(em, viewerId!, others) : null]);
      return hidePresence(states, blocked);
    }),
    project: new DataLoader((ids) => Promise.all(ids.map((id) => (viewerId ? projects.find(em, id, viewerId) : null)))),
    group: new DataLoader(async (ids) => {
      const groups = await groupRepository.byIds(em, ids);
      const byId = new Map(groups.map((g) => [g.id, toGroupType(g)]));
      return ids.map((id) => byId.get(id) ?? null);
    }),
    message: new DataLoader(async (ids) => {
      const byId = new Map((await messageRepository.byIds(em, ids)).map((r) => [r.id, toMessageType(r)]));
      return ids.map((id) => byId.get(id) ?? null);
    }),
    reactions: new DataLoader(async (ids) => {
      const byId = await messageRepository.reactions(em, ids);
      return ids.map((id) => byId.get(id) ?? []);
    }),
    pin: new DataLoader((ids) => pins.pinsOf(em, ids)),
  };
}
