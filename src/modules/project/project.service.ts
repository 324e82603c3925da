import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { MembershipIndex } from '../membership/membership.index';
import { BadUserInputError, ForbiddenError, NotFoundError, UnauthenticatedError } from '../../shared/errors';
import { cursorSideOf, decodeTimeCursor, pageRequest, toConnection, type ConnectionShape, type PageArgs } from '../../shared/graphql/connection';
import { transact, type Outbox } from '../../shared/pubsub/outbox';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic } from '../../shared/pubsub/topics';
import { cleanName, isId } from '../../shared/validation';
import { userRepository } from '../user/user.repository';
import { ProjectActionKind, ProjectRole } from './project.entity';
import { as, gone, projectTexts as t } from './project.messages';
import { rowToActionType, toActionEntryPayload, toProjectType } from './project.mapper';
import { projectRepository as repo, type NewAction, type ProjectRow } from './project.repository';
import type { ProjectActionType, ProjectMemberShape, ProjectType } from './project.types';
import { conversationRepository } from '../conversation/conversation.repository';
import { ownRowUpdate, renamed } from '../conversation/conversation.events';
import { projectKey } from '../conversation/conversation.keys';

/** A project locked for one change, with its members and the caller's place in it. */
interface Locked {
  project: ProjectRow;
  members: ProjectMemberShape[];
  me: ProjectMemberShape;
}

/** Who made a change and to whom, as each of its inbox entries says. */
interface About {
  actorId: string | null;
  targetId: string | null;
  previousTitle: string | null;
}

/** Who takes a project over from its leaving owner: the longest-standing coach, else participant (members come oldest first). */
const heirOf = (l: Locked): string => {
  const remaining = l.members.filter((m) => m.userId !== l.me.userId);
  return (remaining.find((m) => m.role === ProjectRole.COACH) ?? remaining[0]).userId;
};

/** What one reader of a change receives. */
interface Entry {
  recipientId: string;
  kind: ProjectActionKind;
  message: string;
}

/**
 * Projects, their roles and the actions that notify members. Every project rule lives here:
 * the owner renames, deletes, designates and withdraws coaches; the owner and coaches add and
 * remove participants (only the owner removes a coach); anyone leaves. A project that does not
 * exist is NOT_FOUND; a change by anyone who holds no role in it is FORBIDDEN, as the issue words
 * it (project(id) and node read null to them), and so is one by a member without the role.
 */
export class ProjectService {
  private readonly actionHooks: ((em: EntityManager, actions: NewAction[]) => Promise<void>)[] = [];

  constructor(
    private readonly pubsub: PubSub,
    private readonly memberships: MembershipIndex,
  ) {}

  private readonly addGuards: ((em: EntityManager, adderId: string, userId: string) => Promise<void>)[] = [];

  /** Runs before a participant is added, and may refuse it by throwing (a block: modules/safety). */
  guardAdd(check: (em: EntityManager, adderId: string, userId: string) => Promise<void>): void {
    this.addGuards.push(check);
  }

  /** Runs in the transaction of every change that writes inbox entries, after they are written (offline notifications). */
  onActions(hook: (em: EntityManager, actions: NewAction[]) => Promise<void>): void {
    this.actionHooks.push(hook);
  }

  // ---- the membership rule, reused by queries, mutations, messages and subscriptions ----

  /** A project the viewer belongs to. NOT_FOUND when it does not exist or the viewer is not in it. */
  async asMember(em: EntityManager, projectId: string, viewerId: string): Promise<{ project: ProjectRow; role: ProjectRole }> {
    const found = isId(projectId) ? await repo.membership(em, projectId, viewerId) : null;
    if (!found) throw new NotFoundError('Project');
    return found;
  }

  /** For subscription filters: answered from memory. */
  isMemberCached(userId: string, projectId: string): boolean {
    return this.memberships.has('project', userId, projectId);
  }

  /** Inside a transaction: holds off changes of the project's members until it ends (see projectRepository.hold). */
  hold(em: EntityManager, projectId: string): Promise<void> {
    return repo.hold(em, projectId);
  }

  /** Whether `userId` is a member of the project (used for private messages inside it). */
  isMember(em: EntityManager, projectId: string, userId: string): Promise<boolean> {
    return repo.isMember(em, projectId, userId);
  }

  /** Inside a transaction: the project locked against concurrent changes, as the viewer's. */
  private async locked(em: EntityManager, projectId: string, viewerId: string): Promise<Locked> {
    const project = isId(projectId) ? await repo.lock(em, projectId) : null;
    const members = project ? (await repo.members(em, [project.id])).get(project.id)! : [];
    const me = members.find((m) => m.userId === viewerId);
    if (!project) throw new NotFoundError('Project');
    // The rule for changes: whoever holds no role in the project is FORBIDDEN (queries still answer null).
    if (!me) throw new ForbiddenError('Only members of the project can do that.');
    return { project, members, me };
  }

  private requireOwner(l: Locked, what: string): void {
    if (l.me.role !== ProjectRole.OWNER) throw new ForbiddenError(`Only the owner of the project can ${what}.`);
  }

  private memberOf(l: Locked, userId: string): ProjectMemberShape {
    const m = isId(userId) ? l.members.find((x) => x.userId === userId) : undefined;
    if (!m) throw new NotFoundError('Project member');
    return m;
  }

  // ---- queries ----

  async find(em: EntityManager, projectId: string, viewerId: string): Promise<ProjectType | null> {
    try {
      const { project } = await this.asMember(em, projectId, viewerId);
      return await this.load(em, project);
    } catch (e) {
      if (e instanceof NotFoundError) return null;
      throw e;
    }
  }

  /** The viewer's projects, oldest first, with their members in one query; with `ids`, only those of them. */
  async list(em: EntityManager, viewerId: string, ids?: readonly string[]): Promise<ProjectType[]> {
    if (ids && !ids.length) return [];
    const rows = await repo.ofUser(em, viewerId, ids);
    const members = await repo.members(
      em,
      rows.map((r) => r.id),
    );
    return rows.map((r) => toProjectType(r, members.get(r.id)!));
  }

  /**
   * The viewer's inbox: every entry ever written for them, also for projects they have left since
   * or that were deleted. Edges are oldest first, as for messages (the newest `last` entries by
   * default): startCursor is the oldest edge, hasPreviousPage says older entries exist,
   * `before: startCursor` goes on back.
   */
  async actions(
    em: EntityManager,
    viewerId: string,
    args: PageArgs & { projectId?: string | null },
    given?: (name: keyof PageArgs) => boolean,
  ): Promise<ConnectionShape<ProjectActionType>> {
    const projectId = args.projectId ?? null;
    if (projectId !== null && !isId(projectId)) throw new BadUserInputError("'projectId' is not a project id.", 'projectId');
    const { limit, backward, cursor, cursorField } = pageRequest(args, { def: 20, forward: false, given });
    const from = cursor ? decodeTimeCursor(cursor, cursorField, undefined, 'actions') : null;
    const [rows, totalCount] = await Promise.all([repo.actions(em, viewerId, { projectId, from, backward, limit }), repo.countActions(em, viewerId, projectId)]);
    // Back: fetched newest first (the page nearest `before`), shown oldest first. Forward (first/after): oldest first.
    return toConnection(rows, {
      limit,
      backward,
      hasCursor: !!from,
      // A cursor of the whole inbox, given with a projectId, may have nothing of that project beyond it.
      cursorSide: cursorSideOf(from, { backward, ascending: true }, (at, back) => repo.actions(em, viewerId, { projectId, from: at, backward: back, limit: 0 })),
      totalCount,
      key: (r) => ({ k: new Date(r.created_at).toISOString(), id: r.id }),
      node: rowToActionType,
      scope: 'actions',
    });
  }

  // ---- mutations ----

  async create(em: EntityManager, viewerId: string, title: string): Promise<ProjectType> {
    const clean = cleanName(title, 'title');
    return transact(em, this.pubsub, async (tem, outbox) => {
      // The account first, as its deletion takes it first: no project is left owned by a deleted account.
      if (!(await userRepository.lockActive(tem, viewerId))) throw new UnauthenticatedError('This account was deleted.');
      const id = randomUUID();
      await repo.insertProject(tem, { id, title: clean, ownerId: viewerId });
      await repo.addMember(tem, { id: randomUUID(), projectId: id, userId: viewerId, role: ProjectRole.OWNER });
      this.membership(outbox, id, [{ userId: viewerId, member: true }]);
      // The owner's new sidebar row, to their other devices (as a member added gets theirs): told nothing, they never showed it (an outside probe).
      const row = await conversationRepository.row(tem, viewerId, projectKey(id));
      if (row) outbox.add(Topic.ConversationUpdated, ownRowUpdate(row, viewerId, 0, true));
      return this.load(tem, (await repo.byId(tem, id))!);
    });
  }

  async rename(em: EntityManager, viewerId: string, projectId: string, title: string): Promise<ProjectType> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      const l = await this.locked(tem, projectId, viewerId);
      this.requireOwner(l, 'rename it');
      // Who may is told before what is wrong with the title; the title it has (one made before
      // today's rules too) changes nothing and is not checked again.
      if (title === l.project.title) return toProjectType(l.project, l.members);
      const clean = cleanName(title, 'title');
      const previous = l.project.title;
      if (previous === clean) return toProjectType(l.project, l.members);
      await repo.rename(tem, l.project.id, clean);
      // Its place, taken first: the sidebar row's rename carries it too.
      const at = await repo.nextActionPosition(tem, l.project.id);
      outbox.add(Topic.ConversationUpdated, renamed(projectKey(l.project.id), 'PROJECT', clean, await conversationRepository.head(tem, projectKey(l.project.id)), at));
      const project = { ...l.project, title: clean };
      const entries = l.members.map((m) => ({ recipientId: m.userId, kind: ProjectActionKind.PROJECT_RENAMED, message: t.renamed(previous, clean) }));
      await this.notify(tem, outbox, project, entries, { actorId: viewerId, targetId: null, previousTitle: previous }, at);
      return toProjectType(project, l.members);
    });
  }

  async delete(em: EntityManager, viewerId: string, projectId: string): Promise<boolean> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      const l = await this.locked(tem, projectId, viewerId);
      this.requireOwner(l, 'delete it');
      const names = await repo.usernames(tem, [viewerId]);
      // Its place taken while the row is there: the deletion is the project's last action.
      const pos = await repo.nextActionPosition(tem, l.project.id);
      await repo.destroy(tem, l.project.id);
      this.membership(
        outbox,
        l.project.id,
        l.members.map((m) => ({ userId: m.userId, member: false })),
      );
      const text = t.deleted(l.project.title, names.get(viewerId)!);
      // The owner reads their own deletion in the second person, as one who leaves reads their leaving; their
      // other changes read as everyone's but the subject's do (API.md: to the one added "You were added", to the others, the actor among them, the third person).
      const entries = l.members.map((m) => ({ recipientId: m.userId, kind: ProjectActionKind.PROJECT_DELETED, message: m.userId === viewerId ? t.deletedYou(l.project.title) : text }));
      await this.notify(tem, outbox, l.project, entries, { actorId: viewerId, targetId: null, previousTitle: null }, pos);
      return true;
    });
  }

  /** `made` says an add was made (RateLimit.spendWhenMade): a refusal, or a member already in, costs nothing. */
  async addParticipant(em: EntityManager, viewerId: string, projectId: string, userId: string, made: () => void = () => undefined): Promise<ProjectType> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      // The account's row before the project's, in its deletion's order: a deletion under way ends
      // first (the user is then not found), and one after finds the membership to take away.
      const active = isId(userId) && (await userRepository.lockActive(tem, userId));
      const l = await this.locked(tem, projectId, viewerId);
      if (l.me.role === ProjectRole.PARTICIPANT) throw new ForbiddenError('Only the owner and coaches can add participants.');
      const user = active ? await userRepository.activeProfile(tem, userId) : null;
      if (!user) throw new NotFoundError('User');
      // Adding someone who is in already changes nothing and tells no one.
      if (l.members.some((m) => m.userId === user.id)) return toProjectType(l.project, l.members);
      for (const check of this.addGuards) await check(tem, viewerId, user.id);
      made();
      await repo.addMember(tem, { id: randomUUID(), projectId: l.project.id, userId: user.id, role: ProjectRole.PARTICIPANT });
      this.membership(outbox, l.project.id, [{ userId: user.id, member: true }]);
      const row = await conversationRepository.row(tem, user.id, projectKey(l.project.id));
      if (row) outbox.add(Topic.ConversationUpdated, ownRowUpdate(row, user.id, 0, true));
      const title = l.project.title;
      const entries: Entry[] = [
        { recipientId: user.id, kind: ProjectActionKind.ADDED_TO_PROJECT, message: t.addedYou(title) },
        ...l.members.map((m) => ({ recipientId: m.userId, kind: ProjectActionKind.PARTICIPANT_ADDED, message: t.added(user.username, title) })),
      ];
      await this.notify(tem, outbox, l.project, entries, { actorId: viewerId, targetId: user.id, previousTitle: null });
      return this.load(tem, l.project);
    });
  }

  async removeParticipant(em: EntityManager, viewerId: string, projectId: string, userId: string): Promise<ProjectType> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      const l = await this.locked(tem, projectId, viewerId);
      // Naming oneself is asking to leave, whatever one's role (API.md): said before the role check.
      if (userId === viewerId) throw new BadUserInputError('To go, leave the project.', 'userId');
      if (l.me.role === ProjectRole.PARTICIPANT) throw new ForbiddenError('Only the owner and coaches can remove participants.');
      const target = this.memberOf(l, userId);
      if (target.role === ProjectRole.OWNER) throw new ForbiddenError('No one can remove the owner.');
      if (target.role === ProjectRole.COACH && l.me.role !== ProjectRole.OWNER) throw new ForbiddenError('Only the owner can remove a coach.');
      await repo.removeMember(tem, l.project.id, target.userId);
      const remaining = l.members.filter((m) => m.userId !== target.userId);
      const username = (await repo.usernames(tem, [target.userId])).get(target.userId)!;
      const title = l.project.title;
      const entries: Entry[] = [
        { recipientId: target.userId, kind: ProjectActionKind.PARTICIPANT_REMOVED, message: t.removedYou(title) },
        ...remaining.map((m) => ({ recipientId: m.userId, kind: ProjectActionKind.PARTICIPANT_REMOVED, message: t.removed(username, title) })),
      ];
      await this.notify(tem, outbox, l.project, entries, { actorId: viewerId, targetId: target.userId, previousTitle: null });
      this.membership(outbox, l.project.id, [{ userId: target.userId, member: false }]);
      return toProjectType(l.project, remaining);
    });
  }

  async designateCoach(em: EntityManager, viewerId: string, projectId: string, userId: string): Promise<ProjectType> {
    return this.setCoach(em, viewerId, projectId, userId, true);
  }

  async withdrawCoach(em: EntityManager, viewerId: string, projectId: string, userId: string): Promise<ProjectType> {
    return this.setCoach(em, viewerId, projectId, userId, false);
  }

  private async setCoach(em: EntityManager, viewerId: string, projectId: string, userId: string, coach: boolean): Promise<ProjectType> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      const l = await this.locked(tem, projectId, viewerId);
      this.requireOwner(l, coach ? 'designate coaches' : 'withdraw coaches');
      const target = this.memberOf(l, userId);
      if (target.role === ProjectRole.OWNER) throw new BadUserInputError('The owner cannot be a coach.', 'userId');
      const role = coach ? ProjectRole.COACH : ProjectRole.PARTICIPANT;
      // Already in that role: nothing changes and no one is told.
      if (target.role === role) return toProjectType(l.project, l.members);
      await repo.setRole(tem, l.project.id, target.userId, role);
      const members = l.members.map((m) => (m.userId === target.userId ? { ...m, role } : m));
      const username = (await repo.usernames(tem, [target.userId])).get(target.userId)!;
      const title = l.project.title;
      const kind = coach ? ProjectActionKind.COACH_DESIGNATED : ProjectActionKind.COACH_WITHDRAWN;
      const entries = members.map((m) => ({
        recipientId: m.userId,
        kind,
        message:
          m.userId === target.userId ? (coach ? t.designatedYou(title) : t.withdrawnYou(title)) : coach ? t.designated(username, title) : t.withdrawn(username, title),
      }));
      await this.notify(tem, outbox, l.project, entries, { actorId: viewerId, targetId: target.userId, previousTitle: null });
      return toProjectType(l.project, members);
    });
  }

  async leave(em: EntityManager, viewerId: string, projectId: string): Promise<boolean> {
    return transact(em, this.pubsub, async (tem, outbox) => {
      await this.depart(tem, await this.locked(tem, projectId, viewerId), outbox);
      return true;
    });
  }

  /**
   * Account deletion: leave every project by the rules of leaveProject; the inbox goes too. All
   * at once, not project by project: each departure took ~9 statements in the deletion's
   * transaction, and held the project's sends (a send writes every member's sort key, the
   * leaver's deleted row too) and its messages' changes (its row's lock) until it committed: a
   * coach in 100 projects, 907 statements and 6.3 s, a send to one of them held 4.4 s.
   */
  async leaveAll(em: EntityManager, userId: string, outbox: Outbox): Promise<void> {
    // Every project first (in id order), then every inbox the departures write to, at once and in
    // key order: a transaction that writes inboxes several times would otherwise take their locks
    // out of order, and could wait on another writer that waits on it.
    const projects = await repo.lockProjectsOf(em, userId);
    const members = await repo.members(em, projects.map((p) => p.id));
    const all: Locked[] = projects.flatMap((project) => {
      const ms = members.get(project.id)!;
      const me = ms.find((m) => m.userId === userId);
      // One they were removed from meanwhile is none to leave.
      return me ? [{ project, members: ms, me }] : [];
    });
    await repo.lockInboxes(em, all.flatMap((l) => l.members.map((m) => m.userId)));
    // The last one out deletes it (no one is left to tell).
    for (const l of all.filter((l) => l.members.length === 1)) {
      await repo.destroy(em, l.project.id);
      this.membership(outbox, l.project.id, [{ userId, member: false }]);
    }
    const left = all.filter((l) => l.members.length > 1);
    if (left.length) {
      await repo.removeMemberFromAll(em, left.map((l) => l.project.id), userId);
      await repo.handOver(em, new Map(left.filter((l) => l.me.role === ProjectRole.OWNER).map((l) => [l.project.id, heirOf(l)])));
      for (const l of left) this.membership(outbox, l.project.id, [{ userId, member: false }]);
      const names = await repo.usernames(em, [userId, ...left.filter((l) => l.me.role === ProjectRole.OWNER).map(heirOf)]);
      await this.notifyAll(
        em,
        outbox,
        left.map((l) => ({ project: l.project, entries: this.departed(l, names, true), about: { actorId: userId, targetId: userId, previousTitle: null } })),
      );
    }
    await repo.deleteInbox(em, userId);
  }

  /**
   * The caller leaves. An owner hands the project to the longest-standing coach, else to the
   * longest-standing participant; the last one out deletes it. The leaver has an entry of their
   * own, as a removed member has: their other devices learn the project left their sidebar (told
   * nothing before, they kept it: an outside probe).
   */
  private async depart(em: EntityManager, l: Locked, outbox: Outbox): Promise<void> {
    const leaver = l.me.userId;
    const title = l.project.title;
    const about = { actorId: leaver, targetId: leaver, previousTitle: null };
    if (l.members.length === 1) {
      // Its place taken while the row is there, as a deletion's.
      const pos = await repo.nextActionPosition(em, l.project.id);
      await repo.destroy(em, l.project.id);
      this.membership(outbox, l.project.id, [{ userId: leaver, member: false }]);
      await this.notify(em, outbox, l.project, [{ recipientId: leaver, kind: ProjectActionKind.PARTICIPANT_LEFT, message: t.leftYouLast(title) }], about, pos);
      return;
    }
    await repo.removeMember(em, l.project.id, leaver);
    const heir = l.me.role === ProjectRole.OWNER ? heirOf(l) : undefined;
    if (heir) {
      await repo.setRole(em, l.project.id, heir, ProjectRole.OWNER);
      await repo.setOwner(em, l.project.id, heir);
    }
    this.membership(outbox, l.project.id, [{ userId: leaver, member: false }]);
    const names = await repo.usernames(em, heir ? [leaver, heir] : [leaver]);
    const own: Entry = { recipientId: leaver, kind: ProjectActionKind.PARTICIPANT_LEFT, message: heir ? t.leftYouTo(title, names.get(heir)!) : t.leftYou(title) };
    await this.notify(em, outbox, l.project, [own, ...this.departed(l, names)], about);
  }

  /**
   * What a departure tells each one who stays; an owner's names who owns the project now (the heir
   * reads that it is them): before, the project changed hands with no word to anyone (an outside probe).
   */
  private departed(l: Locked, names: Map<string, string>, deleted = false): Entry[] {
    const [leaver, title] = [(deleted ? gone : as)(names.get(l.me.userId)!), l.project.title];
    const heir = l.me.role === ProjectRole.OWNER ? heirOf(l) : undefined;
    const text = heir ? t.leftItTo(leaver, title, names.get(heir)!) : t.left(leaver, title);
    return l.members
      .filter((m) => m.userId !== l.me.userId)
      .map((m) => ({ recipientId: m.userId, kind: ProjectActionKind.PARTICIPANT_LEFT, message: m.userId === heir ? t.leftItToYou(leaver, title) : text }));
  }

  // ---- helpers ----

  private async load(em: EntityManager, project: ProjectRow): Promise<ProjectType> {
    return toProjectType(project, (await repo.members(em, [project.id])).get(project.id)!);
  }

  /** Persists one inbox entry per reader in the change's transaction; published after the commit. */
  private async notify(
    em: EntityManager,
    outbox: Outbox,
    project: ProjectRow,
    entries: Entry[],
    about: About,
    /** The change's place, when taken before (a deletion takes it before the row goes). */
    pos?: number,
  ): Promise<void> {
    await this.notifyAll(em, outbox, [{ project, entries, about, pos }]);
  }

  /** notify for changes of several projects, their entries written together. */
  private async notifyAll(em: EntityManager, outbox: Outbox, changes: { project: ProjectRow; entries: Entry[]; about: About; pos?: number }[]): Promise<void> {
    const unstamped = changes.map((c) => c.entries.map((e) => ({ id: randomUUID(), ...e, projectId: c.project.id, projectTitle: c.project.title, ...c.about })));
    // Stamped by the database, in each inbox's commit order (see insertActions).
    const stamps = await repo.insertActions(em, unstamped.flat());
    const actions: NewAction[][] = unstamped.map((list) => list.map((a) => ({ ...a, createdAt: stamps.get(a.id)! })));
    for (const hook of this.actionHooks) await hook(em, actions.flat());
    const unplaced = changes.filter((c) => c.pos === undefined).map((c) => c.project.id);
    const places = unplaced.length ? await repo.nextActionPositions(em, unplaced) : new Map<string, number>();
    changes.forEach((c, i) =>
      outbox.add(Topic.ProjectAction, {
        projectId: c.project.id,
        entries: actions[i].map(toActionEntryPayload),
        // Publishes race (two instances, two changes back to back): subscribers get them in this order.
        pos: c.pos ?? places.get(c.project.id)!,
      }),
    );
  }

  private membership(outbox: Outbox, projectId: string, changes: { userId: string; member: boolean }[]): void {
    outbox.add(Topic.MembershipChanged, { scope: 'project', id: projectId, changes });
  }
}
