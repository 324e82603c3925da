import DataLoader from 'dataloader';
import type { EntityManager } from '@mikro-orm/postgresql';
import { roleOf, toGroupType } from './group/group.mapper';
import { groupRepository } from './group/group.repository';
import type { GroupRole, GroupType } from './group/group.types';
import { messageRepository } from './message/message.repository';
import { toMessageType } from './message/message.mapper';
import type { MessageType } from './message/message.types';
import type { PinService } from './message/pin.service';
import type { ThreadService } from './message/thread.service';
import type { BadgeSpan } from './message/mention.repository';
import type { PresenceService, PresenceState } from './presence/presence.service';
import type { ProjectService } from './project/project.service';
import { hidePresence } from './safety/block.presence';
import type { BlockService } from './safety/block.service';
import type { ProjectType } from './project/project.types';
import type { ReactionSummary } from '../shared/pubsub/topics';
import { profileToUserType } from './user/user.mapper';
import { userRepository } from './user/user.repository';
import { isId } from '../shared/validation';
import type { UserType } from './user/user.types';

/** Per-operation batch loaders: one query for every user or presence a response needs. */
export interface Loaders {
  user: DataLoader<string, UserType | null>;
  presence: DataLoader<string, PresenceState>;
  /** Projects as the viewer sees them (null when not a member); each loaded once per operation, however many entries name it. */
  project: DataLoader<string, ProjectType | null>;
  /** Groups by id, for rows that already prove the viewer a member (a conversation's group). */
  group: DataLoader<string, GroupType | null>;
  /**
   * Groups as the viewer may see them (groupRepository.visibleByIds), each read once per
   * operation: Message.group of a page of 50 messages is one query, not 50.
   */
  visibleGroup: DataLoader<string, GroupType | null>;
  /** The viewer's role in each group (null: not a member), in one query (Group.myRole of a page of groups). */
  groupRole: DataLoader<string, GroupRole | null>;
  /** Messages by id, for rows that already prove the viewer may see them (a conversation's last message). */
  message: DataLoader<string, MessageType | null>;
  /** Reactions of every message in a response, in one query. */
  reactions: DataLoader<string, ReactionSummary[]>;
  /** Pins of every message in a response, in one query. */
  pin: DataLoader<string, { at: Date; byId: string | null } | null>;
  /** The first participants of every thread root in a response, in one query. */
  threadParticipants: DataLoader<string, UserType[]>;
  /** Which thread roots in a response have replies the viewer has not read (in threads they follow), in one query. */
  unreadReplies: DataLoader<string, boolean>;
  /** Who every message in a response mentions (user ids), in one query. */
  mentions: DataLoader<string, string[]>;
  /** The viewer's unread mentions per conversation, each between the marker and the newest message a row shows, in one query. */
  mentionsBetween: DataLoader<BadgeSpan, number, string>;
}

export function createLoaders(
  em: EntityManager,
  services: { presence: PresenceService; projects: ProjectService; pins: PinService; blocks: BlockService; threads: ThreadService },
  viewerId: string | null,
): Loaders {
  const { presence, projects, pins, threads } = services;
  const visibilityCache = {};
  return {
    user: new DataLoader(async (ids) => inOrder(ids, await userRepository.profiles(em, ids), profileToUserType)),
    // As the viewer may see it: the visibility rule (modules/presence/presence.visibility.ts, one
    // contacts read per operation), and a user the viewer blocks reads as OFFLINE, never seen
    // (modules/safety; from the database, as the viewer may hold no session here).
    presence: new DataLoader(async (ids) => {
      const others = viewerId ? ids.filter((id) => id !== viewerId) : [];
      const [states, blocked] = await Promise.all([presence.statesFor(viewerId, [...ids], visibilityCache), others.length ? services.blocks.blockedAmong(em, viewerId!, others) : null]);
      // The viewer is active now, this request says so: ONLINE to themselves though its activity,
      // batched, may not be in the store yet (the first request after going OFFLINE read OFFLINE).
      const mine = (st: PresenceState) => (st.userId === viewerId && st.status !== 'ONLINE' ? { userId: st.userId, status: 'ONLINE' as const, lastSeenAt: new Date() } : st);
      return hidePresence(states, blocked).map(mine);
    }),
    // The viewer's projects among `ids` with their members, in two queries for the whole response
    // (an inbox page of 20 actions read each one's project apart: 40 queries).
    project: new DataLoader(async (ids) => {
      const wanted = viewerId ? ids.filter(isId) : [];
      const byId = new Map((wanted.length ? await projects.list(em, viewerId!, wanted) : []).map((p) => [p.id, p]));
      return ids.map((id) => byId.get(id.toLowerCase()) ?? null);
    }),
    group: new DataLoader(async (ids) => inOrder(ids, await groupRepository.byIds(em, ids), toGroupType)),
    visibleGroup: new DataLoader(async (ids) => inOrder(ids, viewerId ? await groupRepository.visibleByIds(em, ids, viewerId) : [], toGroupType)),
    groupRole: new DataLoader(async (ids) => {
      if (!viewerId) return ids.map(() => null);
      const roles = await groupRepository.rolesOf(em, viewerId, ids);
      return ids.map((id) => roleOf(roles.get(id) ?? { ownerId: null, role: null }, viewerId));
    }),
    message: new DataLoader(async (ids) => inOrder(ids, await messageRepository.byIds(em, ids), toMessageType)),
    reactions: new DataLoader(async (ids) => {
      const byId = await messageRepository.reactions(em, ids);
      return ids.map((id) => byId.get(id) ?? []);
    }),
    pin: new DataLoader((ids) => pins.pinsOf(em, ids)),
    threadParticipants: new DataLoader((ids) => threads.participants(em, ids)),
    unreadReplies: new DataLoader((ids) => (viewerId ? threads.unreadReplies(em, viewerId, ids) : Promise.resolve(ids.map(() => false)))),
    mentions: new DataLoader((ids) => threads.mentionIds(em, ids)),
    mentionsBetween: new DataLoader((spans) => (viewerId ? threads.unreadBetween(em, viewerId, spans) : Promise.resolve(spans.map(() => 0))), {
      cacheKeyFn: (s) => `${s.key} ${s.from} ${s.to}`,
    }),
  };
}

/** The rows read for a loader's `ids` as `toType` makes them, in the ids' order (null where none came back). */
function inOrder<R extends { id: string }, T>(ids: readonly string[], rows: readonly R[], toType: (row: R) => T): (T | null)[] {
  const byId = new Map(rows.map((r) => [r.id, toType(r)]));
  return ids.map((id) => byId.get(id) ?? null);
}
