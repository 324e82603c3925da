import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { MembershipIndex } from '../membership/membership.index';
import { ForbiddenError, NotFoundError } from '../../shared/errors';
import { decodeCursor, decodeTimeCursor, pageRequest, toConnection, type PageArgs } from '../../shared/graphql/connection';
import type { Outbox } from '../../shared/pubsub/outbox';
import { transact } from '../../shared/pubsub/outbox';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type GroupEventPayload } from '../../shared/pubsub/topics';
import { cleanName, cleanSearch, isId } from '../../shared/validation';
import type { User } from '../user/user.entity';
import { toUserType } from '../user/user.mapper';
import { userRepository } from '../user/user.repository';
import type { Group } from './group.entity';
import { toGroupType } from './group.mapper';
import { groupRepository } from './group.repository';
import { conversationRepository } from '../conversation/conversation.repository';
import { renamed } from '../conversation/conversation.events';
import { groupKey } from '../conversation/conversation.keys';

/** Groups, their members and the lobby. Every membership rule of the feature lives here. */
export class GroupService {
  private lobbyId?: string;

  constructor(
    private readonly pubsub: PubSub,
    private readonly memberships: MembershipIndex,
  ) {}

  /** Creates the lobby on first start; idempotent across instances starting together. */
  async ensureLobby(em: EntityManager): Promise<string> {
    await groupRepository.ensureLobby(em, randomUUID());
    const lobby = await groupRepository.lobby(em);
    this.lobbyId = lobby!.id;
    return this.lobbyId;
  }

  async lobby(em: EntityManager): Promise<string> {
    return this.lobbyId ?? this.ensureLobby(em);
  }

  /** Signup: every user is a lobby member from the start. */
  async joinLobby(em: EntityManager, user: User, outbox: Outbox): Promise<void> {
    const lobbyId = await this.lobby(em);
    await groupRepository.addMember(em, lobbyId, user.id, randomUUID());
    this.joined(outbox, lobbyId, false, user.id);
  }

  // ---- the rules, reused by queries, mutations and subscription filters ----

  /** A group the viewer may see: public, or private with the viewer in it. NOT_FOUND otherwise. */
  async visible(em: EntityManager, groupId: string, viewerId: string): Promise<Group> {
    const group = isId(groupId) ? await groupRepository.byId(em, groupId) : null;
    if (!group) throw new NotFoundError('Group');
    if (group.isPrivate && !(await groupRepository.membership(em, group.id, viewerId))) throw new NotFoundError('Group');
    return group;
  }

  /**
   * The membership rule, in one query: the id of a group the viewer belongs to. NOT_FOUND when it
   * is invisible to them (missing, or private without them), FORBIDDEN when public but not joined.
   */
  async memberOf(em: EntityManager, groupId: string, viewerId: string): Promise<{ id: string; name: string; ownerId: string | null }> {
    const access = isId(groupId) ? await groupRepository.access(em, groupId, viewerId) : null;
    if (!access || (access.isPrivate && !access.member)) throw new NotFoundError('Group');
    if (!access.member) throw new ForbiddenError('Only members of this group can do that.');
    return { id: access.id, name: access.name, ownerId: access.ownerId };
  }

  async asOwner(em: EntityManager, groupId: string, viewerId: string): Promise<Group> {
    const group = await this.visible(em, groupId, viewerId);
    if (group.isLobby) throw new ForbiddenError('The lobby belongs to everyone; no one can change it.');
    if (group.owner?.id !== viewerId) throw new ForbiddenError('Only the owner of this group can do that.');
    return group;
  }

  /** For subscription filters: answered from memory. */
  isMemberCached(userId: string, groupId: string): boolean {
    return this.memberships.has('group', userId, groupId);
  }

  groupIdsOf(em: EntityManager, userId: string): Promise<string[]> {
    return groupRepository.groupIdsOf(em, userId);
  }

  // ---- queries ----

  async find(em: EntityManager, groupId: string, viewerId: string): Promise<Group | null> {
    try {
      return await this.visible(em, groupId, viewerId);
    } catch (e) {
      if (e instanceof NotFoundError) return null;
      throw e;
    }
  }

  /** Alphabetically (case-insensitive, then by id), forward by default; `given` tells a client's `first` from its default. */
  async list(em: EntityManager, viewerId: string, args: PageArgs & { search?: string | null }, given?: (name: keyof PageArgs) => boolean) {
    const { limit, backward, cursor, cursorField } = pageRequest(args, { def: 20, forward: true, given });
    const from = cursor ? decodeCursor(cursor, cursorField) : null;
    const { rows, total } = await groupRepository.visible(em, viewerId, { search: cleanSearch(args.search), from, backward, limit });
    return toConnection(rows, {
      limit,
      backward,
      hasCursor: !!from,
      totalCount: total,
      key: (g) => ({ k: g.name.toLowerCase(), id: g.id }),
      node: toGroupType,
    });
  }

  /** By join time, oldest first: forward with first/after (the default), back from the newest with last/before. */
  async members(em: EntityManager, group: { id: string; memberCount: number }, args: PageArgs) {
    const { limit, backward, cursor, cursorField } = pageRequest(args, { def: 50, forward: true });
    const from = cursor ? decodeTimeCursor(cursor, cursorField) : null;
    const rows = await groupRepository.members(em, group.id, { from, backward, limit });
    return toConnection(rows, {
      limit,
      backward,
      hasCursor: !!from,
      totalCount: group.memberCount,
      key: (m) => ({ k: m.joinedAt.toISOString(), id: m.id }),
      node: (m) => toUserType(m.user.getEntity()),
    });
  }

  // ---- mutations ----

  async create(em: EntityManager, viewerId: string, name: string, isPrivate: boolean): Promise<Group> {
    const clean = cleanName(name, 'name');
    return transact(em, this.pubsub, async (tem, outbox) => {
      const group = await groupRepository.insert(tem, { name: clean, ownerId: viewerId, isPrivate: !!isPrivate });
      await groupRepository.addMember(tem, group.id, viewerId, randomUUID());
      group.memberCount = 1;
      this.member(outbox, group.id, [{ userId: viewerId, member: true }]);
      this.event(outbox, 'CREATED', group, viewerId, isPrivate ? [viewerId] : null);
      return group;
    });
  }

  async rename(em: EntityManager, viewerId: string, groupId: string, name: string): Promise<Group> {
    const clean = cleanName(name, 'name');
    return transact(em, this.pubsub, async (tem, outbox) => {
      const group = await this.asOwner(tem, groupId, viewerId);
      group.name = clean;
      await tem.flush();
      outbox.add(Topic.ConversationUpdated, renamed(groupKey(group.id), 'GROUP', clean, await conversationRepository.head(tem, groupKey(group.id))));
      this.event(outbox, 'RENAMED', group, viewerId, await groupRepository.memberIds(tem, group.id));
      return group;
    });
  }

  async delete(em: EntityManager, viewerId: string, groupId: string): Promise<boolean> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      const group = await this.asOwner(tem, groupId, viewerId);
      await this.destroy(tem, group, viewerId, outbox);
      return true;
    });
  }

  async join(em: EntityManager, viewerId: string, groupId: string): Promise<Group> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      const group = await this.visible(tem, groupId, viewerId);
      // Private groups are joined only through addGroupMember; to a non-member they don't exist.
      if (await groupRepository.addMember(tem, group.id, viewerId, randomUUID())) {
        await groupRepository.reload(tem, group);
        this.joined(outbox, group.id, group.isPrivate, viewerId, await groupRepository.memberIds(tem, group.id));
      }
      return group;
    });
  }

  async addMember(em: EntityManager, viewerId: string, groupId: string, userId: string): Promise<Group> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      const group = await this.asOwner(tem, groupId, viewerId);
      const user = isId(userId) ? await userRepository.activeById(tem, userId) : null;
      if (!user) throw new NotFoundError('User');
      if (await groupRepository.addMember(tem, group.id, user.id, randomUUID())) {
        await groupRepository.reload(tem, group);
        this.joined(outbox, group.id, group.isPrivate, user.id, await groupRepository.memberIds(tem, group.id));
      }
      return group;
    });
  }

  async leave(em: EntityManager, viewerId: string, groupId: string): Promise<boolean> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      const group = await this.visible(tem, groupId, viewerId);
      if (group.isLobby) throw new ForbiddenError('Everyone stays in the lobby.');
      await this.removeMember(tem, group, viewerId, outbox);
      return true;
    });
  }

  /** Account deletion: leave every group by the same rules as leaveGroup (the lobby too). */
  async leaveAll(em: EntityManager, userId: string, outbox: Outbox): Promise<void> {
    for (const groupId of await groupRepository.groupIdsOf(em, userId)) {
      const group = await groupRepository.byIdOrFail(em, groupId);
      await this.removeMember(em, group, userId, outbox);
    }
  }

  private async removeMember(em: EntityManager, group: Group, userId: string, outbox: Outbox): Promise<void> {
    // Lock the group row so two members leaving at once can't both see themselves as last.
    await groupRepository.lock(em, group.id);
    const before = await groupRepository.memberIds(em, group.id);
    if (!before.includes(userId)) throw new ForbiddenError('You are not a member of this group.');
    if (before.length === 1 && !group.isLobby) {
      await this.destroy(em, group, userId, outbox);
      return;
    }
    await groupRepository.removeMember(em, group.id, userId);
    if (group.owner?.id === userId) {
      const next = await groupRepository.successor(em, group.id, userId);
      group.owner = next ? next.user : null;
      await em.flush();
    }
    this.member(outbox, group.id, [{ userId, member: false }]);
    this.event(outbox, 'MEMBER_LEFT', group, userId, before);
  }

  private async destroy(em: EntityManager, group: Group, actorId: string, outbox: Outbox): Promise<void> {
    const members = await groupRepository.memberIds(em, group.id);
    // The conversation goes with the group, attachments included.
    await groupRepository.destroy(em, group.id);
    this.member(outbox, group.id, members.map((userId) => ({ userId, member: false })));
    this.event(outbox, 'DELETED', group, actorId, members);
  }

  private joined(outbox: Outbox, groupId: string, isPrivate: boolean, userId: string, audience?: string[]): void {
    this.member(outbox, groupId, [{ userId, member: true }]);
    outbox.add(Topic.GroupEvent, {
      kind: 'MEMBER_JOINED',
      groupId,
      isPrivate,
      userId,
      audience: audience ?? null,
      createdAt: new Date().toISOString(),
    });
  }

  private member(outbox: Outbox, groupId: string, changes: { userId: string; member: boolean }[]): void {
    outbox.add(Topic.MembershipChanged, { scope: 'group', id: groupId, changes });
  }

  private event(outbox: Outbox, kind: GroupEventPayload['kind'], group: Group, userId: string | null, audience: string[] | null): void {
    outbox.add(Topic.GroupEvent, { kind, groupId: group.id, isPrivate: group.isPrivate, userId, audience, createdAt: new Date().toISOString() });
  }
}
