import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError, isAppError } from '../../shared/errors';
import { asNode, type Node } from '../../shared/graphql/node';
import { isId } from '../../shared/validation';
import type { ConversationAccess } from '../conversation/conversation.access';
import { parseKey } from '../conversation/conversation.keys';
import type { ConversationService } from '../conversation/conversation.service';
import { toGroupType } from '../group/group.mapper';
import { groupRepository } from '../group/group.repository';
import type { Loaders } from '../loaders';
import { toMessageType } from '../message/message.mapper';
import { SYSTEM_USER } from '../user/user.mapper';
import { messageRepository } from '../message/message.repository';
import { rowToActionType } from '../project/project.mapper';
import { projectRepository } from '../project/project.repository';
import type { ProjectService } from '../project/project.service';
import type { BlockService } from '../safety/block.service';
import type { ReportService } from '../safety/report.service';
import { nodeRepository } from './node.repository';

export interface NodeServiceDeps {
  projects: ProjectService;
  access: ConversationAccess;
  conversations: ConversationService;
  reports: ReportService;
  blocks: BlockService;
}

/** At most this many ids per `nodes` call (BAD_USER_INPUT beyond). */
export const MAX_NODES = 100;

/**
 * Relay's `node`/`nodes`: each id answered as the type's own query answers it, and null for what
 * the viewer may not see, so the answer never tells a hidden object from a missing one.
 *
 * A conversation's id is its key (`g:`, `p:`, `d:`); every other id is a bare UUID, whose type
 * one query finds (`nodeRepository.typesOf`). Then each type is read once for all its ids, by its
 * own query's rules: users, groups, projects (with their members) and inbox entries in one or two
 * queries each; messages in one, then the reading check once per conversation.
 */
export class NodeService {
  constructor(private readonly deps: NodeServiceDeps) {}

  /** @throws BadUserInputError for more than MAX_NODES ids. */
  async nodes(em: EntityManager, viewerId: string, ids: readonly string[], loaders: Loaders): Promise<(Node | null)[]> {
    if (ids.length > MAX_NODES) throw new BadUserInputError(`'ids' holds at most ${MAX_NODES} ids.`, 'ids');
    const uuids = [...new Set(ids.filter(isId))];
    const types = await nodeRepository.typesOf(em, uuids, viewerId);
    const of = (type: string) => uuids.filter((id) => types.get(id) === type);
    const found = new Map<string, Node | null>();
    const users = of('User');
    const messageIds = of('Message');
    const actionIds = of('ProjectAction');
    await Promise.all([
      loaders.user.loadMany(users).then((list) => list.forEach((u, i) => found.set(users[i], u && !(u instanceof Error) ? asNode(u, 'User') : null))),
      groupRepository.visibleByIds(em, of('Group'), viewerId).then((groups) => groups.forEach((g) => found.set(g.id, asNode(toGroupType(g), 'Group')))),
      this.deps.projects.list(em, viewerId, of('Project')).then((projects) => projects.forEach((p) => found.set(p.id, asNode(p, 'Project')))),
      this.messages(em, viewerId, messageIds).then((m) => messageIds.forEach((id) => found.set(id, m.get(id) ?? null))),
      projectRepository.actionsByIds(em, actionIds, viewerId).then((rows) => rows.forEach((r) => found.set(r.id, asNode(rowToActionType(r), 'ProjectAction')))),
      // Only to those who handle it, as `reports` shows them: not even to its reporter.
      this.deps.reports.visibleByIds(em, viewerId, of('Report')).then((reports) => reports.forEach((r) => found.set(r.id, asNode(r, 'Report')))),
      ...[...new Set(ids.filter((id) => !isId(id)))].map(async (id) => found.set(id, await this.conversation(em, viewerId, id))),
    ]);
    // The placeholder shown where no account stands (the lobby's owner, one whose account is gone) is
    // refetched as it was shown: a Relay client normalizes it like any user.
    if (uuids.includes(SYSTEM_USER.id)) found.set(SYSTEM_USER.id, asNode(SYSTEM_USER, 'User'));
    return ids.map((id) => found.get(id) ?? null);
  }

  /**
   * Messages as history shows them: to members of their conversation, a project's private one to
   * its two users only. The reading check runs once per conversation and kind of message, not per
   * message: its answer depends on nothing else.
   */
  private async messages(em: EntityManager, viewerId: string, ids: string[]): Promise<Map<string, Node>> {
    const rows = await messageRepository.byIds(em, ids);
    const checks = new Map<string, Promise<boolean>>();
    const readable = await Promise.all(
      rows.map((r) => {
        const party = r.sender_id === viewerId || r.recipient_id === viewerId;
        // A direct message's answer depends on its pair (their friendship), the others' on the conversation and the viewer's part in it.
        const key = r.group_id || r.project_id ? `${r.group_id}|${r.project_id}|${r.recipient_id ? party : 'open'}` : `d|${r.sender_id}|${r.recipient_id}`;
        let check = checks.get(key);
        if (!check) {
          check = this.deps.access.canRead(em, viewerId, { groupId: r.group_id, projectId: r.project_id, senderId: r.sender_id, recipientId: r.recipient_id });
          checks.set(key, check);
        }
        return check;
      }),
    );
    // As history leaves them out: the messages of a sender the viewer blocks.
    const blocked = rows.some((r, i) => readable[i] && r.sender_id !== viewerId) ? await this.deps.blocks.blockedAmong(em, viewerId, [...new Set(rows.map((r) => r.sender_id))]) : null;
    return new Map(rows.filter((r, i) => readable[i] && !blocked?.has(r.sender_id)).map((r) => [r.id, asNode(toMessageType(r), 'Message')]));
  }

  /** A conversation by its key, as `conversation(conversation:)` answers it; null where that query errs. */
  private async conversation(em: EntityManager, viewerId: string, key: string): Promise<Node | null> {
    const lower = key.toLowerCase();
    const parsed = parseKey(lower);
    if (!parsed) return null;
    let input;
    if (parsed.kind === 'group') input = { groupId: parsed.groupId };
    else if (parsed.kind === 'project') input = { projectId: parsed.projectId };
    else if (parsed.userIds.includes(viewerId)) input = { userId: parsed.userIds[0] === viewerId ? parsed.userIds[1] : parsed.userIds[0] };
    else return null;
    if (!Object.values(input).every(isId)) return null;
    try {
      const c = await this.deps.conversations.get(em, viewerId, input);
      // Only the key itself: `g:<uuid>:junk` or a key with extra parts names nothing.
      return c.id === lower ? asNode(c, 'Conversation') : null;
    } catch (e) {
      if (isAppError(e)) return null;
      throw e;
    }
  }
}
