import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError, ForbiddenError, NotFoundError } from '../../shared/errors';
import type { ConversationScope, MessagePayload, ReadReceiptPayload } from '../../shared/pubsub/topics';
import { isId } from '../../shared/validation';
import type { FriendService } from '../friend/friend.service';
import type { GroupService } from '../group/group.service';
import type { ProjectService } from '../project/project.service';
import { userRepository } from '../user/user.repository';
import { directKey, groupKey, projectKey, type ConversationKind } from './conversation.keys';

/**
 * One conversation as the viewer may use it. Group, direct and project conversations share
 * one keyset index through `key`; inside a project, private messages carry a recipient and are
 * seen by their two users only (`privateWith` narrows to one such thread).
 */
export interface Conversation {
  key: string;
  kind: ConversationKind;
  groupId: string | null;
  projectId: string | null;
  /** Direct: the other user. */
  peerId: string | null;
  /** Project: only the private thread between the viewer and this user. */
  privateWith: string | null;
  /** As the viewer's sidebar names it: the group's name, the project's title, the peer's display name (else username). */
  title: string;
  /** Group: its owner (who may delete any message in it). */
  ownerId: string | null;
  /** Direct: when the two became friends (the conversation's `updatedAt` before its first message). */
  since?: Date;
}

/** How a client names a conversation: exactly one of a group, a user (direct) or a project (with a user: its private thread). */
export interface ConversationArgs {
  groupId?: string | null;
  userId?: string | null;
  projectId?: string | null;
}

/** What a subscription to one conversation keeps to filter its events: held per subscription, so nothing more. */
export type ConversationFilter = Pick<Conversation, 'key' | 'privateWith'>;

/** Where a message was sent, as far as reading it goes (a published message is one). */
export type MessagePlace = Pick<MessagePayload, 'groupId' | 'projectId' | 'senderId' | 'recipientId'>;

/** A group's conversation; the title and owner only where the caller read them. */
export function groupConversation(groupId: string, title = '', ownerId: string | null = null): Conversation {
  return { key: groupKey(groupId), kind: 'group', groupId, projectId: null, peerId: null, privateWith: null, title, ownerId };
}

/** A project's conversation, or with `privateWith` its private thread with that member. */
function projectConversation(projectId: string, title = '', privateWith: string | null = null): Conversation {
  return { key: projectKey(projectId), kind: 'project', groupId: null, projectId, peerId: null, privateWith, title, ownerId: null };
}

/** What a subscription to `conv` filters on. */
export const filterOf = (conv: Conversation): ConversationFilter => ({ key: conv.key, privateWith: conv.privateWith });

/** Who a conversation's events reach: the membership index answers for groups and projects, the pair for direct ones. */
export function scopeOf(conv: Conversation, viewerId: string): ConversationScope {
  return { conversationKey: conv.key, groupId: conv.groupId, projectId: conv.projectId, userIds: conv.peerId ? [viewerId, conv.peerId] : null };
}

/** The argument naming the other user: sendMessage's input calls it toUserId (an outside probe: told `userId` of a field it never sent), ConversationInput userId. */
const userField = (field: string) => (field === 'input' ? 'toUserId' : 'userId');

export interface ConversationAccessDeps {
  groups: GroupService;
  friends: FriendService;
  projects: ProjectService;
}

/**
 * Who may see and use which conversation, in one place: resolving what a client names (with the
 * errors every operation on a conversation gives), and whether a published event belongs in a
 * viewer's view. The checks against events read memory only (the membership index), so a
 * subscription costs no query per event and a leave stops delivery at once.
 */
export class ConversationAccess {
  private readonly groups: GroupService;
  private readonly friends: FriendService;
  private readonly projects: ProjectService;

  constructor(deps: ConversationAccessDeps) {
    this.groups = deps.groups;
    this.friends = deps.friends;
    this.projects = deps.projects;
  }

  /**
   * The conversation `c` names, as the viewer may use it: NOT_FOUND for what they can't see,
   * FORBIDDEN for what they see but may not use (a public group they haven't joined, a non-friend),
   * BAD_USER_INPUT (on `field`) for naming none or several.
   */
  async resolve(em: EntityManager, viewerId: string, c: ConversationArgs, field = 'conversation'): Promise<Conversation> {
    const given = [c.groupId, c.projectId, c.projectId ? null : c.userId].filter((v) => v !== null && v !== undefined);
    // sendMessage's input names the direct conversation's user toUserId.
    if (given.length !== 1) throw new BadUserInputError(`Name exactly one conversation: a groupId, a ${userField(field)}, or a projectId.`, field);
    // Given means given: an empty id names a group (or project) that doesn't exist, not a direct conversation.
    if (c.groupId !== null && c.groupId !== undefined) {
      const g = await this.groups.memberOf(em, c.groupId, viewerId);
      return groupConversation(g.id, g.name, g.ownerId);
    }
    if (c.projectId !== null && c.projectId !== undefined) {
      const { project } = await this.projects.asMember(em, c.projectId, viewerId);
      let privateWith: string | null = null;
      // An empty toUserId names no one here: the project's open conversation (forms send '' for "nobody").
      if (c.userId) {
        if (c.userId === viewerId) throw new BadUserInputError('A private message needs another member.', userField(field));
        if (!isId(c.userId) || !(await this.projects.isMember(em, project.id, c.userId))) throw new NotFoundError('Project member');
        privateWith = c.userId;
      }
      return projectConversation(project.id, project.title, privateWith);
    }
    const peerId = c.userId!;
    if (peerId === viewerId) throw new BadUserInputError('A direct conversation needs another user.', userField(field));
    const peer = isId(peerId) ? await userRepository.activeProfile(em, peerId) : null;
    if (!peer) throw new NotFoundError('User');
    const since = await this.friends.friendsSince(em, viewerId, peerId);
    if (!since) throw new ForbiddenError('Direct messages are between friends.');
    const title = peer.displayName ?? peer.username;
    return { key: directKey(viewerId, peerId), kind: 'direct', groupId: null, projectId: null, peerId, privateWith: null, title, ownerId: null, since };
  }

  /**
   * A whole group or project the membership index already knows the viewer in (they hold a
   * socket here), answered from memory without a title; null for anything else, which `resolve`
   * answers instead.
   */
  known(viewerId: string, c: ConversationArgs): Conversation | null {
    if (c.groupId && !c.projectId && !c.userId && this.groups.isMemberCached(viewerId, c.groupId)) return groupConversation(c.groupId);
    if (c.projectId && !c.groupId && !c.userId && this.projects.isMemberCached(viewerId, c.projectId)) return projectConversation(c.projectId);
    return null;
  }

  /** The filter of a subscription to one conversation, checked as `resolve` checks it (the same errors). */
  async subscriptionFilter(em: EntityManager, viewerId: string, c: ConversationArgs): Promise<ConversationFilter> {
    return filterOf(await this.resolve(em, viewerId, c));
  }

  /** Whether a published message belongs in this viewer's view of a conversation (null: any of theirs). Memory only. */
  visibleTo(viewerId: string, p: MessagePayload, only: ConversationFilter | null): boolean {
    if (only && p.conversationKey !== only.key) return false;
    if (p.groupId) return this.groups.isMemberCached(viewerId, p.groupId);
    if (p.projectId) {
      if (!this.projects.isMemberCached(viewerId, p.projectId)) return false;
      if (only?.privateWith) {
        return !!p.recipientId && ((p.senderId === viewerId && p.recipientId === only.privateWith) || (p.senderId === only.privateWith && p.recipientId === viewerId));
      }
      return !p.recipientId || p.senderId === viewerId || p.recipientId === viewerId;
    }
    return p.senderId === viewerId || p.recipientId === viewerId;
  }

  /** Whether an event of this conversation (not of one message) reaches the viewer. Memory only. */
  inScope(viewerId: string, s: ConversationScope): boolean {
    if (s.groupId) return this.groups.isMemberCached(viewerId, s.groupId);
    if (s.projectId) return this.projects.isMemberCached(viewerId, s.projectId);
    return !!s.userIds?.includes(viewerId);
  }

  /** Whether a read receipt reaches the viewer: a marker on a private message names it to its pair only (`only`, `except`). Memory only. */
  receiptReaches(viewerId: string, p: ReadReceiptPayload): boolean {
    return (p.only ? p.only.includes(viewerId) : !p.except?.includes(viewerId)) && this.inScope(viewerId, p);
  }

  /** Whether a stored message is one of `conv`'s as the viewer sees it (a private one, only its pair does). No query. */
  inView(conv: Conversation, viewerId: string, m: Pick<MessagePayload, 'conversationKey' | 'senderId' | 'recipientId'>): boolean {
    return m.conversationKey === conv.key && (!m.recipientId || m.senderId === viewerId || m.recipientId === viewerId);
  }

  /**
   * As `canRead`, inside the transaction of a change to the message, NOT_FOUND if not: a group's
   * (or project's) row held first, so that a removal, ban or demotion answered before refuses the
   * change rather than being passed by it, and one under way waits for it (see groupRepository.hold).
   */
  async stillReads(em: EntityManager, viewerId: string, m: MessagePlace): Promise<void> {
    await this.hold(em, m);
    if (!(await this.canRead(em, viewerId, m))) throw new NotFoundError('Message');
  }

  /** Inside a transaction: holds off changes of the members (and roles) of a message's group or project until it ends. */
  async hold(em: EntityManager, m: MessagePlace): Promise<void> {
    if (m.groupId) await this.groups.hold(em, m.groupId);
    else if (m.projectId) await this.projects.hold(em, m.projectId);
  }

  /** Whether the viewer may read a stored message (or its attachment), asked of the database: as `resolve` would let them read its conversation. */
  async canRead(em: EntityManager, viewerId: string, m: MessagePlace): Promise<boolean> {
    try {
      if (m.groupId) await this.groups.memberOf(em, m.groupId, viewerId);
      else if (m.projectId) {
        await this.projects.asMember(em, m.projectId, viewerId);
        if (m.recipientId && viewerId !== m.senderId && viewerId !== m.recipientId) return false;
      } else {
        if (viewerId !== m.senderId && viewerId !== m.recipientId) return false;
        // Between friends only, as history is: an unfriended or blocked pair no longer reads (nor edits, reacts to, downloads) it by id.
        const peer = viewerId === m.senderId ? m.recipientId : m.senderId;
        if (peer && peer !== viewerId && !(await this.friends.areFriends(em, viewerId, peer))) return false;
      }
      return true;
    } catch {
      return false;
    }
  }
}
