import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { MembershipIndex } from '../membership/membership.index';
import { BadUserInputError, ConflictError, ForbiddenError, NotFoundError, RateLimitedError, UnauthenticatedError } from '../../shared/errors';
import { decodeCursor, decodeTimeCursor, pageRequest, cursorSideOf, toConnection, type PageArgs } from '../../shared/graphql/connection';
import type { Outbox } from '../../shared/pubsub/outbox';
import { transact } from '../../shared/pubsub/outbox';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type GroupEventPayload } from '../../shared/pubsub/topics';
import { cleanName, cleanSearch, isId } from '../../shared/validation';
import type { User } from '../user/user.entity';
import { toUserType } from '../user/user.mapper';
import { userRepository } from '../user/user.repository';
import type { Group, MemberRole } from './group.entity';
import { roleOf, toGroupType } from './group.mapper';
import { groupRepository, type Standing } from './group.repository';
import { GroupRole } from './group.types';
import type { ConnectionShape } from '../../shared/graphql/connection';
import type { UserType } from '../user/user.types';
import { conversationRepository } from '../conversation/conversation.repository';
import { ownRowUpdate, renamed } from '../conversation/conversation.events';
import { groupKey } from '../conversation/conversation.keys';

/** Most seconds of slow mode: six hours. */
export const MAX_SLOW_MODE = 6 * 3600;
/** Most banned users Group.bannedUsers lists. */
const MAX_BANNED_LISTED = 500;

export interface GroupServiceOptions {
  /** Lower-cased usernames of the lobby's admins (LOBBY_ADMINS). */
  lobbyAdmins?: readonly string[];
}

/** Groups, their members, roles, bans, invitations and the lobby. Every membership rule of the feature lives here. */
export class GroupService {
  private lobbyId?: string;
  private readonly lobbyAdmins: readonly string[];

  constructor(
    private readonly pubsub: PubSub,
    private readonly memberships: MembershipIndex,
    options: GroupServiceOptions = {},
  ) {
    this.lobbyAdmins = options.lobbyAdmins ?? [];
  }

  /** Creates the lobby on first start (idempotent across instances starting together) and gives its members their configured roles. */
  async ensureLobby(em: EntityManager): Promise<string> {
    await groupRepository.ensureLobby(em, randomUUID());
    const lobby = await groupRepository.lobby(em);
    this.lobbyId = lobby!.id;
    await groupRepository.syncLobbyAdmins(em, this.lobbyId, this.lobbyAdmins);
    return this.lobbyId;
  }

  /** A lobby member's role: ADMIN when LOBBY_ADMINS names them. */
  private lobbyRole(username: string): MemberRole {
    return this.lobbyAdmins.includes(username.toLowerCase()) ? 'ADMIN' : 'MEMBER';
  }

  async lobby(em: EntityManager): Promise<string> {
    return this.lobbyId ?? this.ensureLobby(em);
  }

  /**
   * A rename: an admin of the lobby by LOBBY_ADMINS who renamed away holds the name no more, and is
   * a member again at once (the next start did it; until then they kept the rights, and whoever
   * signed up under the freed name was made an admin too; an outside probe). Told as ROLE_CHANGED.
   */
  async renamed(em: EntityManager, userId: string, from: string, to: string, outbox: Outbox): Promise<void> {
    const role = this.lobbyRole(to);
    if (role === this.lobbyRole(from)) return;
    const lobby = await groupRepository.byIdOrFail(em, await this.lobby(em));
    if (!(await groupRepository.setRole(em, lobby.id, userId, role))) return;
    // No longer exempt, as a demotion by setGroupRole: slow mode counts from their last message (an outside probe).
    if (role === 'MEMBER' && lobby.slowModeSeconds > 0) await groupRepository.stampSlowMode(em, lobby.id, lobby.slowModeSeconds, userId);
    await this.event(em, outbox, 'ROLE_CHANGED', lobby, userId, null);
  }

  /**
   * Signup: every user is a lobby member from the start. Run last in the signup's transaction, and
   * the lobby's row updated last in it (its count and the event's place in one statement): every
   * signup updates that row, so each holds it only from there to its commit. Counted first, 16
   * signups at once waited on each other's whole transactions (an outside volume probe, 50,000
   * members: p50 392 ms, p99 912 ms).
   */
  async joinLobby(em: EntityManager, user: User, outbox: Outbox): Promise<void> {
    const lobbyId = await this.lobby(em);
    if (!(await groupRepository.addMember(em, lobbyId, user.id, randomUUID(), this.lobbyRole(user.username), false))) return;
    this.member(outbox, lobbyId, [{ userId: user.id, member: true }]);
    this.tellJoined(outbox, lobbyId, false, user.id, null, await groupRepository.joinedLobby(em, lobbyId));
  }

  // ---- the rules, reused by queries, mutations and subscription filters ----

  /** A group the viewer may see: public, or private with the viewer in it or invited to it. NOT_FOUND otherwise. */
  async visible(em: EntityManager, groupId: string, viewerId: string): Promise<Group> {
    const group = isId(groupId) ? await groupRepository.byId(em, groupId) : null;
    if (!group) throw new NotFoundError('Group');
    if (group.isPrivate && !(await groupRepository.membership(em, group.id, viewerId))) {
      const s = await groupRepository.standing(em, group.id, viewerId);
      if (!s?.invited) throw new NotFoundError('Group');
    }
    return group;
  }

  /** The viewer's role in a group: null when not a member. */
  roleIn(s: Pick<Standing, 'ownerId' | 'role'>, userId: string): GroupRole | null {
    return roleOf(s, userId);
  }

  /** Inside a transaction: holds off changes of the group's members and roles until it ends (see groupRepository.hold). */
  hold(em: EntityManager, groupId: string): Promise<void> {
    return groupRepository.hold(em, groupId);
  }

  /** Whether the user is the group's owner or an admin (deleting others' messages, reports). */
  async moderates(em: EntityManager, groupId: string, userId: string): Promise<boolean> {
    const s = isId(groupId) ? await groupRepository.standing(em, groupId, userId) : null;
    const role = s && this.roleIn(s, userId);
    return role === GroupRole.OWNER || role === GroupRole.ADMIN;
  }

  /** The owner and admins of a group: the audience of its reports. */
  moderatorIds(em: EntityManager, groupId: string): Promise<string[]> {
    return groupRepository.moderatorIds(em, groupId);
  }

  /** The groups whose reports a user handles. */
  moderatedBy(em: EntityManager, userId: string): Promise<string[]> {
    return groupRepository.moderatedBy(em, userId);
  }

  /**
   * Slow mode, after a gated send wrote nothing (the gate enforces it; this only says when):
   * RATE_LIMITED with `retryAfter` if a plain member sent within the group's interval.
   */
  async slowMode(em: EntityManager, groupId: string, userId: string): Promise<void> {
    const s = await groupRepository.standing(em, groupId, userId);
    if (!s || !s.slowModeSeconds || this.roleIn(s, userId) !== GroupRole.MEMBER || !s.slowSentAt) return;
    const wait = s.slowSentAt.getTime() + s.slowModeSeconds * 1000 - s.now.getTime();
    if (wait <= 0) return;
    const at = new Date(s.now.getTime() + wait).toISOString();
    throw new RateLimitedError(wait / 1000, `Slow mode: one message every ${s.slowModeSeconds} s here; you can send again in ${Math.ceil(wait / 1000)} s (at ${at}).`);
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

  /**
   * The group, locked for the rest of the transaction, when the viewer owns it: a join, an
   * acceptance or the owner's own leave committed meanwhile is seen (and told DELETED), or waits.
   */
  async asOwner(em: EntityManager, groupId: string, viewerId: string): Promise<Group> {
    const group = await this.lockVisible(em, groupId, viewerId);
    if (group.isLobby) throw new ForbiddenError('The lobby belongs to everyone; no one can change it.');
    if (group.owner?.id !== viewerId) throw new ForbiddenError('Only the owner of this group can do that.');
    return group;
  }

  /** For subscription filters: answered from memory. */
  isMemberCached(userId: string, groupId: string): boolean {
    return this.memberships.has('group', userId, groupId);
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
    const from = cursor ? decodeCursor(cursor, cursorField, undefined, 'groups') : null;
    const search = cleanSearch(args.search);
    const { rows, total, keyOf } = await groupRepository.visible(em, viewerId, { search, from, backward, limit });
    return toConnection(rows, {
      limit,
      backward,
      hasCursor: !!from,
      cursorSide: cursorSideOf(from, { backward, ascending: true }, async (at, back) => (await groupRepository.visible(em, viewerId, { search, from: at, backward: back, limit: 0 })).rows),
      totalCount: total,
      key: (g) => ({ k: keyOf(g.id), id: g.id }),
      node: toGroupType,
      scope: 'groups',
    });
  }

  /** A page of members with their roles (the owner: OWNER, whatever their row says), by join time: oldest first with first/after (the default), back from the newest with last/before. */
  async members(em: EntityManager, group: { id: string; memberCount: number; ownerId: string | null }, args: PageArgs): Promise<ConnectionShape<UserType>> {
    const { limit, backward, cursor, cursorField } = pageRequest(args, { def: 50, forward: true });
    const from = cursor ? decodeTimeCursor(cursor, cursorField, undefined, 'members') : null;
    const rows = await groupRepository.members(em, group.id, { from, backward, limit });
    const page = toConnection(rows, {
      limit,
      backward,
      hasCursor: !!from,
      cursorSide: cursorSideOf(from, { backward, ascending: true }, (at, back) => groupRepository.members(em, group.id, { from: at, backward: back, limit: 0 })),
      totalCount: group.memberCount,
      key: (m) => ({ k: m.joinedAt.toISOString(), id: m.id }),
      scope: 'members',
      node: (m): { user: UserType; role: GroupRole } => ({ user: toUserType(m.user.getEntity()), role: this.roleIn({ ownerId: group.ownerId, role: m.role ?? 'MEMBER' }, m.user.id)! }),
    });
    return { ...page, edges: page.edges.map((e) => ({ cursor: e.cursor, node: e.node.user, role: e.node.role })) };
  }

  // ---- mutations ----

  async create(em: EntityManager, viewerId: string, name: string, isPrivate: boolean): Promise<Group> {
    const clean = cleanName(name, 'name');
    return transact(em, this.pubsub, async (tem, outbox) => {
      await this.stillThere(tem, viewerId);
      const group = await groupRepository.insert(tem, { name: clean, ownerId: viewerId, isPrivate: !!isPrivate });
      await groupRepository.addMember(tem, group.id, viewerId, randomUUID());
      group.memberCount = 1;
      this.member(outbox, group.id, [{ userId: viewerId, member: true }]);
      await this.event(tem, outbox, 'CREATED', group, viewerId, isPrivate ? [viewerId] : null);
      // The owner's new sidebar row, as a member who joins gets theirs: a sidebar kept by conversationUpdated shows it on every device.
      const row = await conversationRepository.row(tem, viewerId, groupKey(group.id));
      if (row) outbox.add(Topic.ConversationUpdated, ownRowUpdate(row, viewerId, 0, true));
      return group;
    });
  }

  /** Owner and admins; not the lobby. */
  async rename(em: EntityManager, viewerId: string, groupId: string, name: string): Promise<Group> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      // Who may is told before what is wrong with the name (NOT_FOUND, FORBIDDEN, then BAD_USER_INPUT).
      const { group } = await this.asModerator(tem, groupId, viewerId, { lobby: false });
      // The name it has: nothing changes, so nobody is told (as renameProject and editMessage), and
      // a name made before today's rules is not checked again (as a display name is not).
      if (name === group.name) return group;
      const clean = cleanName(name, 'name');
      if (group.name === clean) return group;
      group.name = clean;
      await tem.flush();
      const at = await this.event(tem, outbox, 'RENAMED', group, viewerId, await this.seers(tem, group));
      outbox.add(Topic.ConversationUpdated, renamed(groupKey(group.id), 'GROUP', clean, await conversationRepository.head(tem, groupKey(group.id)), at));
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

  /**
   * Public groups, and any group the viewer holds an invitation to (which it takes). A banned user:
   * FORBIDDEN. `made` says a join was made (RateLimit.spendWhenMade): one already a member is
   * told the group and announced to no one, so it costs nothing (an outside probe).
   */
  async join(em: EntityManager, viewerId: string, groupId: string, made: () => void = () => undefined): Promise<Group> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      await this.stillThere(tem, viewerId);
      // Private groups are joined only by invitation (or addGroupMember); to others they don't exist.
      // Locked as a ban locks it: a ban committed meanwhile is seen, and one after finds the member.
      const group = await this.lockVisible(tem, groupId, viewerId);
      const s = (await groupRepository.standing(tem, group.id, viewerId))!;
      if (s.role !== null) return group;
      if (s.banned) throw new ForbiddenError('You are banned from this group.');
      made();
      await this.admit(tem, outbox, group, viewerId);
      return group;
    });
  }

  /** Owner and admins (lobby admins too): adds a user at once, without an invitation. */
  async addMember(em: EntityManager, viewerId: string, groupId: string, userId: string): Promise<Group> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      // The account's row before the group's, in its deletion's order (see ProjectService.addParticipant).
      if (isId(userId)) await userRepository.lockActive(tem, userId);
      const { group } = await this.asModerator(tem, groupId, viewerId);
      const target = await this.target(tem, group.id, userId);
      if (target.role !== null) return group;
      if (target.banned) throw new ConflictError('This user is banned from the group; unban them first.', 'userId');
      // Added is invited and accepted at once: whom an invitation may not reach may not be added either
      // (a user blocked by the invitee pulled them into groups with it; an outside probe).
      for (const check of this.inviteGuards) await check(tem, viewerId, target.id);
      await this.admit(tem, outbox, group, target.id);
      return group;
    });
  }

  /**
   * Owner and admins: a pending invitation and a live INVITED to the members and the invitee.
   * Inviting again changes nothing. `made` says an invitation was made (RateLimit.spendWhenMade):
   * a refusal, or one already pending, costs nothing.
   */
  async invite(em: EntityManager, viewerId: string, groupId: string, userId: string, made: () => void = () => undefined): Promise<boolean> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      // The invitee's account before the group's, in its deletion's order (see addMember).
      if (isId(userId)) await userRepository.lockActive(tem, userId);
      const { group } = await this.asModerator(tem, groupId, viewerId, { lobby: false });
      const target = await this.target(tem, group.id, userId);
      if (target.role !== null) throw new ConflictError('This user is already a member of the group.', 'userId');
      if (target.banned) throw new ConflictError('This user is banned from the group; unban them first.', 'userId');
      for (const check of this.inviteGuards) await check(tem, viewerId, target.id);
      if (await groupRepository.invite(tem, group.id, target.id, viewerId)) {
        made();
        const members = await groupRepository.memberIds(tem, group.id);
        await this.event(tem, outbox, 'INVITED', group, target.id, [...members, target.id]);
        for (const hook of this.invitedHooks) await hook(tem, { groupId: group.id, inviterId: viewerId, userId: target.id });
      }
      return true;
    });
  }

  /**
   * The invitee joins; NOT_FOUND without an invitation (the same answer whether or not the group
   * exists). `made` as for `join`: past the limit the invitation stays, untouched.
   */
  async acceptInvite(em: EntityManager, viewerId: string, groupId: string, made: () => void = () => undefined): Promise<Group> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      await this.stillThere(tem, viewerId);
      // The group first, as a ban locks it before it takes the invitation (the other order deadlocked).
      if (isId(groupId)) await groupRepository.lock(tem, groupId.toLowerCase());
      const group = isId(groupId) ? await groupRepository.byId(tem, groupId) : null;
      if (!group || !(await groupRepository.uninvite(tem, group.id, viewerId))) throw new NotFoundError('Invitation');
      if (!(await groupRepository.membership(tem, group.id, viewerId))) {
        made();
        await this.admit(tem, outbox, group, viewerId);
      }
      return group;
    });
  }

  /** The invitation goes; NOT_FOUND without one. */
  async declineInvite(em: EntityManager, viewerId: string, groupId: string): Promise<boolean> {
    return transact(em, this.pubsub, async (tem) => {
      if (!isId(groupId) || !(await groupRepository.uninvite(tem, groupId, viewerId))) throw new NotFoundError('Invitation');
      return true;
    });
  }

  async leave(em: EntityManager, viewerId: string, groupId: string): Promise<boolean> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      // Locked before it is read, as a deletion locks it: a group deleted meanwhile is NOT_FOUND.
      const group = await this.lockVisible(tem, groupId, viewerId);
      if (group.isLobby) throw new ForbiddenError('Everyone stays in the lobby.');
      await this.removeMember(tem, group, viewerId, outbox);
      return true;
    });
  }

  /**
   * Owner and admins (lobby admins too): the member goes, with a live MEMBER_REMOVED to the
   * members and to them; their sockets stop receiving the group on every instance. They may
   * join again (a public group) unless banned.
   */
  async remove(em: EntityManager, viewerId: string, groupId: string, userId: string): Promise<Group> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      const { group, role } = await this.asModerator(tem, groupId, viewerId);
      const target = await this.target(tem, group.id, userId);
      if (target.role === null) throw new NotFoundError('Member');
      this.mayModerate(role, target, viewerId, 'remove');
      await this.expel(tem, outbox, group, target.id, 'MEMBER_REMOVED');
      return group;
    });
  }

  /** Owner and admins: removes the user if a member, takes their invitation and keeps them out until unbanned. Banning twice changes nothing. */
  async ban(em: EntityManager, viewerId: string, groupId: string, userId: string): Promise<Group> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      const { group, role } = await this.asModerator(tem, groupId, viewerId);
      const target = await this.target(tem, group.id, userId);
      this.mayModerate(role, target, viewerId, 'ban');
      if (!(await groupRepository.ban(tem, group.id, target.id, viewerId))) return group;
      if (target.role !== null) await this.expel(tem, outbox, group, target.id, 'MEMBER_BANNED');
      else await this.event(tem, outbox, 'MEMBER_BANNED', group, target.id, await this.audience(tem, group, target.id));
      return group;
    });
  }

  /** Owner and admins: the user may join, be added or invited again. Unbanning someone not banned changes nothing. */
  async unban(em: EntityManager, viewerId: string, groupId: string, userId: string): Promise<Group> {
    return transact(em, this.pubsub, async (tem) => {
      const { group } = await this.asModerator(tem, groupId, viewerId);
      // NOT_FOUND for no such (or a deleted) user, as every other moderation answers.
      const target = await this.target(tem, group.id, userId);
      await groupRepository.unban(tem, group.id, target.id);
      return group;
    });
  }

  /** Owner only: ADMIN or MEMBER; OWNER hands ownership over (the old owner becomes an ADMIN). */
  async setRole(em: EntityManager, viewerId: string, groupId: string, userId: string, role: GroupRole): Promise<Group> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      const group = await this.lockVisible(tem, groupId, viewerId);
      if (group.isLobby) throw new ForbiddenError("The lobby's admins are set by the server's configuration (LOBBY_ADMINS).");
      if (group.owner?.id !== viewerId) throw new ForbiddenError('Only the owner of this group can change roles.');
      const target = await this.target(tem, group.id, userId);
      if (target.role === null) throw new NotFoundError('Member');
      if (target.id === viewerId) throw new BadUserInputError('The owner changes role by handing ownership to another member (role OWNER).', 'userId');
      const members = await groupRepository.memberIds(tem, group.id);
      if (role === GroupRole.OWNER) {
        await groupRepository.setOwner(tem, group.id, target.id);
        await groupRepository.setRole(tem, group.id, viewerId, 'ADMIN');
        await groupRepository.setRole(tem, group.id, target.id, 'ADMIN');
        await groupRepository.reload(tem, group);
        await this.event(tem, outbox, 'OWNER_CHANGED', group, target.id, members);
      } else if (await groupRepository.setRole(tem, group.id, target.id, role === GroupRole.ADMIN ? 'ADMIN' : 'MEMBER')) {
        // No longer exempt: slow mode counts from their last message, sent while they were.
        if (role === GroupRole.MEMBER && group.slowModeSeconds > 0) await groupRepository.stampSlowMode(tem, group.id, group.slowModeSeconds, target.id);
        await this.event(tem, outbox, 'ROLE_CHANGED', group, target.id, members);
      }
      return group;
    });
  }

  /** Owner and admins (lobby admins too): 0 turns slow mode off; at most MAX_SLOW_MODE seconds. */
  async setSlowMode(em: EntityManager, viewerId: string, groupId: string, seconds: number): Promise<Group> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      // Who may is told before what is wrong with the value, as for a rename.
      const { group } = await this.asModerator(tem, groupId, viewerId);
      if (!Number.isInteger(seconds) || seconds < 0 || seconds > MAX_SLOW_MODE) {
        throw new BadUserInputError(`Slow mode is 0 (off) to ${MAX_SLOW_MODE} seconds.`, 'seconds');
      }
      if (await groupRepository.setSlowMode(tem, group.id, seconds)) {
        await groupRepository.reload(tem, group);
        await this.event(tem, outbox, 'SLOW_MODE_CHANGED', group, viewerId, await this.audience(tem, group));
      }
      return group;
    });
  }

  /** Owner and admins: users banned, newest first (others get an empty list: the bans are not theirs to see). */
  async bannedIds(em: EntityManager, groupId: string, viewerId: string): Promise<string[]> {
    return (await this.moderates(em, groupId, viewerId)) ? groupRepository.bannedIds(em, groupId, MAX_BANNED_LISTED) : [];
  }

  /**
   * Account deletion: leave every group but the lobby (leaveLobby, last) by the same rules as
   * leaveGroup, and drop the account's pending invitations (its row stays, anonymized, so nothing
   * goes by cascade; bans stay, and bannedUsers leaves deleted accounts out).
   */
  async leaveAll(em: EntityManager, userId: string, outbox: Outbox): Promise<void> {
    // Set by set, not group by group: each group's leaving held its members' sends (a send writes
    // every member's sort key, the leaver's row too) until the deletion committed, and took ~8
    // statements: an account in 200 groups held them 2.2-4.7 s (1,700 statements; PostgreSQL's
    // own time 0.19 s of it). A group deleted or left meanwhile is none to leave.
    const groups = (await groupRepository.lockGroupsOf(em, userId, await this.lobby(em))).filter((g) => g.members.includes(userId));
    // Their last member: the group goes with them, as leaveGroup deletes it.
    for (const g of groups) if (g.members.length === 1) await this.destroy(em, g, userId, outbox);
    const left = groups.filter((g) => g.members.length > 1);
    if (left.length) {
      const places = await groupRepository.leaveMany(em, userId, left.map((g) => g.id));
      for (const g of left) {
        this.member(outbox, g.id, [{ userId, member: false }]);
        this.tell(outbox, 'MEMBER_LEFT', g, userId, g.members, places.get(g.id)!);
      }
      // The oldest admin takes over what they owned, else the oldest member.
      const owned = left.filter((g) => g.ownerId === userId);
      const next = owned.length ? await groupRepository.handOver(em, owned.map((g) => g.id), userId) : new Map<string, { ownerId: string; pos: number }>();
      for (const g of owned) {
        const n = next.get(g.id);
        if (n) this.tell(outbox, 'OWNER_CHANGED', g, n.ownerId, g.members.filter((id) => id !== userId), n.pos);
      }
    }
    await groupRepository.dropInvitesOf(em, userId);
  }

  /**
   * Account deletion's last step: out of the lobby, whose row every signup updates, so a deletion
   * holds it only from here to its commit. Left with the other groups, a heavy account's deletion
   * (1,200 groups, 12 s) held every signup for its whole length (an outside volume probe: 9.2 s).
   */
  async leaveLobby(em: EntityManager, userId: string, outbox: Outbox): Promise<void> {
    const lobby = await groupRepository.byId(em, await this.lobby(em));
    if (lobby) await this.removeMember(em, lobby, userId, outbox, true);
  }

  private readonly inviteGuards: ((em: EntityManager, inviterId: string, inviteeId: string) => Promise<void>)[] = [];

  /** Runs before every invitation is written, and may refuse it by throwing (a block: modules/safety). */
  guardInvite(check: (em: EntityManager, inviterId: string, inviteeId: string) => Promise<void>): void {
    this.inviteGuards.push(check);
  }

  private readonly invitedHooks: ((em: EntityManager, i: { groupId: string; inviterId: string; userId: string }) => Promise<void>)[] = [];

  /** Run in the invitation's transaction (the offline notification). */
  onInvited(hook: (em: EntityManager, i: { groupId: string; inviterId: string; userId: string }) => Promise<void>): void {
    this.invitedHooks.push(hook);
  }

  /**
   * The viewer's account, held until the transaction ends, the first lock it takes (as the
   * account's deletion takes it first): a deletion under way finishes, and then this is refused,
   * rather than leaving a group owned by, or a membership of, a deleted account.
   */
  private async stillThere(em: EntityManager, viewerId: string): Promise<void> {
    if (!(await userRepository.lockActive(em, viewerId))) throw new UnauthenticatedError('This account was deleted.');
  }

  // ---- the role rules ----

  /** The group, locked for the rest of the transaction, if the viewer may see it (NOT_FOUND otherwise). */
  private async lockVisible(em: EntityManager, groupId: string, viewerId: string): Promise<Group> {
    if (!isId(groupId)) throw new NotFoundError('Group');
    await groupRepository.lock(em, groupId.toLowerCase());
    return this.visible(em, groupId, viewerId);
  }

  /**
   * The group, locked, when the viewer is its owner or an admin: NOT_FOUND when they may not see
   * it, FORBIDDEN otherwise. `lobby: false`: the lobby is refused (FORBIDDEN) whoever asks.
   */
  private async asModerator(em: EntityManager, groupId: string, viewerId: string, opts: { lobby?: boolean } = {}): Promise<{ group: Group; role: GroupRole }> {
    const group = await this.lockVisible(em, groupId, viewerId);
    // The lobby's rule first: a member told "only the owner or an admin" looked for one who could (an outside probe).
    if (group.isLobby && opts.lobby === false) throw new ForbiddenError('The lobby belongs to everyone; no one can do that there.');
    const s = (await groupRepository.standing(em, group.id, viewerId))!;
    const role = this.roleIn(s, viewerId);
    if (role !== GroupRole.OWNER && role !== GroupRole.ADMIN) throw new ForbiddenError('Only the owner or an admin of this group can do that.');
    return { group, role };
  }

  /** The user a moderation is aimed at, where they stand: NOT_FOUND for no such (or a deleted) user. */
  private async target(em: EntityManager, groupId: string, userId: string): Promise<Standing & { id: string; roleName: GroupRole | null }> {
    const user = isId(userId) ? await userRepository.activeById(em, userId) : null;
    if (!user) throw new NotFoundError('User');
    const s = (await groupRepository.standing(em, groupId, user.id))!;
    return { ...s, id: user.id, roleName: this.roleIn(s, user.id) };
  }

  /** Who may remove or ban whom: nobody themselves or the owner; only the owner an admin. */
  private mayModerate(actor: GroupRole, target: { id: string; roleName: GroupRole | null; ownerId: string | null }, viewerId: string, what: 'remove' | 'ban'): void {
    if (target.id === viewerId) throw new BadUserInputError(what === 'remove' ? 'To leave a group, use leaveGroup.' : 'You cannot ban yourself.', 'userId');
    if (target.roleName === GroupRole.OWNER || target.id === target.ownerId) throw new ForbiddenError(`The owner of a group cannot be ${what === 'remove' ? 'removed' : 'banned'}.`);
    if (target.roleName === GroupRole.ADMIN && actor !== GroupRole.OWNER) throw new ForbiddenError(`Only the owner can ${what} an admin.`);
  }

  /** A new member: counted, told to the members, and to the membership index of every instance. */
  private async admit(em: EntityManager, outbox: Outbox, group: Group, userId: string): Promise<void> {
    const role = group.isLobby ? this.lobbyRole((await userRepository.activeById(em, userId))?.username ?? '') : 'MEMBER';
    await groupRepository.uninvite(em, group.id, userId);
    if (await groupRepository.addMember(em, group.id, userId, randomUUID(), role)) {
      await groupRepository.reload(em, group);
      await this.joined(em, outbox, group.id, group.isPrivate, userId, await this.audience(em, group));
      const row = await conversationRepository.row(em, userId, groupKey(group.id));
      if (row) outbox.add(Topic.ConversationUpdated, ownRowUpdate(row, userId, 0, true));
    }
  }

  /** A member put out by the owner or an admin (never the last one: the actor stays). */
  private async expel(em: EntityManager, outbox: Outbox, group: Group, userId: string, kind: 'MEMBER_REMOVED' | 'MEMBER_BANNED'): Promise<void> {
    const before = await this.audience(em, group, userId);
    await groupRepository.removeMember(em, group.id, userId);
    await groupRepository.reload(em, group);
    this.member(outbox, group.id, [{ userId, member: false }]);
    await this.event(em, outbox, kind, group, userId, before);
  }

  private async removeMember(em: EntityManager, group: Group, userId: string, outbox: Outbox, ifMember = false): Promise<void> {
    // Lock the group row so two members leaving at once can't both see themselves as last. The
    // lobby is never left empty: its row is taken by the count's update below, which lets the
    // signups' inserts check their reference to it meanwhile (FOR UPDATE holds those back too).
    if (!group.isLobby) await groupRepository.lock(em, group.id);
    const before = await this.audience(em, group);
    const isMember = before ? before.includes(userId) : !!(await groupRepository.membership(em, group.id, userId));
    if (!isMember) {
      if (ifMember) return;
      throw new ForbiddenError('You are not a member of this group.');
    }
    if (before?.length === 1) {
      await this.destroy(em, group, userId, outbox);
      return;
    }
    await groupRepository.removeMember(em, group.id, userId);
    this.member(outbox, group.id, [{ userId, member: false }]);
    await this.event(em, outbox, 'MEMBER_LEFT', group, userId, before);
    await groupRepository.reload(em, group);
    if (group.owner?.id === userId) {
      // The oldest admin takes over, else the oldest member.
      const next = await groupRepository.successor(em, group.id, userId);
      await groupRepository.setOwner(em, group.id, next);
      await groupRepository.reload(em, group);
      if (next) await this.event(em, outbox, 'OWNER_CHANGED', group, next, before?.filter((id) => id !== userId) ?? null);
    }
  }

  private async destroy(em: EntityManager, group: Pick<Group, 'id' | 'isPrivate'>, actorId: string, outbox: Outbox): Promise<void> {
    const members = await groupRepository.memberIds(em, group.id);
    const invited = await groupRepository.inviteeIds(em, group.id);
    // Its last place is taken while its row is there to count it.
    const pos = await groupRepository.nextEventPosition(em, group.id);
    // The conversation goes with the group, attachments included.
    await groupRepository.destroy(em, group.id);
    this.member(outbox, group.id, members.map((userId) => ({ userId, member: false })));
    this.tell(outbox, 'DELETED', group, actorId, [...members, ...invited], pos);
  }

  private async joined(em: EntityManager, outbox: Outbox, groupId: string, isPrivate: boolean, userId: string, audience: string[] | null): Promise<void> {
    this.member(outbox, groupId, [{ userId, member: true }]);
    this.tellJoined(outbox, groupId, isPrivate, userId, audience, await groupRepository.nextEventPosition(em, groupId));
  }

  private tellJoined(outbox: Outbox, groupId: string, isPrivate: boolean, userId: string, audience: string[] | null, pos: number): void {
    outbox.add(Topic.GroupEvent, { kind: 'MEMBER_JOINED', groupId, isPrivate, userId, audience, createdAt: new Date().toISOString(), pos });
  }

  /**
   * Who a group's event goes to: its members (and `also`, one just put out or invited). The lobby's
   * go to whoever is in it when they arrive (null; the subscription asks each instance's index, and
   * tells the member concerned too): its members are everyone, and listing them read 50,000 rows
   * under the lobby's lock into a 2 MB event (an outside volume probe).
   */
  private async audience(em: EntityManager, group: Group, also?: string): Promise<string[] | null> {
    if (group.isLobby) return null;
    const members = await groupRepository.memberIds(em, group.id);
    return also === undefined || members.includes(also) ? members : [...members, also];
  }

  /** Members and invitees: those who see the group's name (a rename is told to an invitation too). */
  private async seers(em: EntityManager, group: Group): Promise<string[] | null> {
    const members = await this.audience(em, group);
    return members && [...members, ...(await groupRepository.inviteeIds(em, group.id))];
  }

  private member(outbox: Outbox, groupId: string, changes: { userId: string; member: boolean }[]): void {
    outbox.add(Topic.MembershipChanged, { scope: 'group', id: groupId, changes });
  }

  /** A group event, placed after the group's earlier ones (its transaction holds the group's row from here on): returns its place. */
  private async event(em: EntityManager, outbox: Outbox, kind: GroupEventPayload['kind'], group: Group, userId: string | null, audience: string[] | null): Promise<number> {
    const pos = await groupRepository.nextEventPosition(em, group.id);
    // What a rename or a slow mode change set travels with it, under the group's lock.
    const state = kind === 'RENAMED' || kind === 'SLOW_MODE_CHANGED' ? { name: group.name, slowModeSeconds: group.slowModeSeconds ?? 0 } : undefined;
    this.tell(outbox, kind, group, userId, audience, pos, state);
    return pos;
  }

  private tell(
    outbox: Outbox,
    kind: GroupEventPayload['kind'],
    group: Pick<Group, 'id' | 'isPrivate'>,
    userId: string | null,
    audience: string[] | null,
    pos: number,
    state?: Pick<GroupEventPayload, 'name' | 'slowModeSeconds'>,
  ): void {
    outbox.add(Topic.GroupEvent, Object.assign({ kind, groupId: group.id, isPrivate: group.isPrivate, userId, audience, createdAt: new Date().toISOString(), pos }, state));
  }
}
