import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { BadUserInputError, ConflictError, NotFoundError } from '../../shared/errors';
import { decodeTimeCursor, pageRequest, cursorSideOf, toConnection, type ConnectionShape, type PageArgs } from '../../shared/graphql/connection';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type ReportAddedPayload } from '../../shared/pubsub/topics';
import { cleanMessageText, isId } from '../../shared/validation';
import type { ConversationAccess } from '../conversation/conversation.access';
import type { GroupService } from '../group/group.service';
import { blocksSender } from './block.repository';
import { messageRepository } from '../message/message.repository';
import { placeOf } from '../message/message.mapper';
import { reportRepository, type ReportRow } from './report.repository';
import { ReportStatus, type ReportType } from './report.types';
import { unlessGone } from '../message/message.gone';

const MAX_REASON = 500;

export interface ReportServiceDeps {
  pubsub: PubSub;
  access: ConversationAccess;
  groups: GroupService;
  /** Lower-cased usernames of the instance's moderators (MODERATORS): direct and project messages' reports. */
  moderators: readonly string[];
}

export function toReportType(r: ReportRow | ReportAddedPayload & { status?: undefined }): ReportType {
  if ('message_id' in r) {
    return { id: r.id, reason: r.reason, status: r.status as ReportStatus, createdAt: new Date(r.created_at), messageId: r.message_id, reporterId: r.reporter_id };
  }
  return { id: r.id, reason: r.reason, status: ReportStatus.OPEN, createdAt: new Date(r.createdAt), messageId: r.messageId, reporterId: r.reporterId };
}

const deletedRefused = () => new BadUserInputError('A deleted message cannot be reported.', 'messageId');

/**
 * Reports of messages: who may make them (whoever can see the message), who sees and resolves
 * them (a group's owner and admins; the instance's moderators for the rest). Every rule of the
 * feature lives here, reused by the query, the mutations and the subscription's audience.
 */
export class ReportService {
  constructor(private readonly deps: ReportServiceDeps) {}

  /** Whether the user is one of the instance's moderators. */
  async isModerator(em: EntityManager, userId: string): Promise<boolean> {
    return (await this.moderatorIds(em)).includes(userId);
  }

  private moderatorIds(em: EntityManager): Promise<string[]> {
    return reportRepository.usersNamed(em, this.deps.moderators);
  }

  /** Who handles a report of a message in this group (null: a direct or project message). */
  private audience(em: EntityManager, groupId: string | null): Promise<string[]> {
    return groupId ? this.deps.groups.moderatorIds(em, groupId) : this.moderatorIds(em);
  }

  /**
   * A report of a message the viewer can see (NOT_FOUND otherwise, as for one that does not
   * exist). Not their own, not a deleted one; one per user and message (CONFLICT). `made` says
   * a report was made (RateLimit.spendWhenMade): a refusal costs nothing.
   */
  async report(em: EntityManager, viewerId: string, messageId: string, reason: string, made: () => void = () => undefined): Promise<ReportType> {
    return unlessGone(em, messageId, async () => {
      const text = cleanMessageText(reason, MAX_REASON, 'reason');
      if (!text) throw new BadUserInputError(`Give a reason (1 to ${MAX_REASON} characters).`, 'reason');
      const row = isId(messageId) ? await messageRepository.byId(em, messageId) : null;
      const visible = !!row && (await this.deps.access.canRead(em, viewerId, placeOf(row)));
      // Nor one of a sender the viewer blocks, which history and node() leave out for them (its text was answered, edits included).
      if (!row || !visible || (await blocksSender(em, viewerId, row.sender_id))) throw new NotFoundError('Message');
      if (row.sender_id === viewerId) throw new BadUserInputError('You cannot report your own message.', 'messageId');
      if (row.deleted_at) throw deletedRefused();
      const filed = await em.transactional(async (tem) => {
        // Read again under the group's (or project's) hold: a removal or ban meanwhile refuses it.
        await this.deps.access.stillReads(tem as EntityManager, viewerId, placeOf(row));
        // And the message again, as a deletion leaves it: one that committed after the read above
        // stored a report of a deleted message, dated after its deletion (an outside probe, 7 of 30).
        if (await messageRepository.deletedHeld(tem as EntityManager, row.id)) throw deletedRefused();
        const r = await reportRepository.insert(tem as EntityManager, { id: randomUUID(), messageId: row.id, reporterId: viewerId, groupId: row.group_id, reason: text });
        if (!r) throw new ConflictError('You have already reported this message.', 'messageId');
        made();
        return r;
      });
      const audience = await this.audience(em, row.group_id);
      await this.deps.pubsub.publishSafe(Topic.ReportAdded, {
        id: filed.id,
        messageId: filed.message_id,
        reporterId: filed.reporter_id,
        reason: filed.reason,
        createdAt: new Date(filed.created_at).toISOString(),
        audience,
      });
      return toReportType(filed);
    });
  }

  /** What the viewer may see: reports of the groups they own or administer, and the ungrouped ones for a moderator. */
  private async scope(em: EntityManager, viewerId: string): Promise<{ groupIds: string[]; ungrouped: boolean }> {
    const [groupIds, ungrouped] = await Promise.all([this.deps.groups.moderatedBy(em, viewerId), this.isModerator(em, viewerId)]);
    return { groupIds, ungrouped };
  }

  private async canSee(em: EntityManager, viewerId: string, r: ReportRow): Promise<boolean> {
    return r.group_id ? this.deps.groups.moderates(em, r.group_id, viewerId) : this.isModerator(em, viewerId);
  }

  /** Newest first: forward (first/after, the default) toward older ones, back (last/before) toward newer. `given` tells a client's argument from its default. */
  async list(
    em: EntityManager,
    viewerId: string,
    args: PageArgs & { status?: ReportStatus | null },
    given?: (name: keyof PageArgs) => boolean,
  ): Promise<ConnectionShape<ReportType>> {
    const { limit, backward, cursor, cursorField } = pageRequest(args, { def: 20, forward: true, given });
    const from = cursor ? decodeTimeCursor(cursor, cursorField, undefined, 'reports') : null;
    const status = args.status ?? ReportStatus.OPEN;
    const scope = await this.scope(em, viewerId);
    const none = !scope.groupIds.length && !scope.ungrouped;
    const [rows, total] = none
      ? [[], 0]
      : await Promise.all([reportRepository.page(em, { ...scope, status, from, backward, limit }), reportRepository.count(em, { ...scope, status })]);
    return toConnection(rows, {
      limit,
      backward,
      hasCursor: !!from,
      cursorSide: none ? async () => false : cursorSideOf(from, { backward, ascending: false }, (at, back) => reportRepository.page(em, { ...scope, status, from: at, backward: back, limit: 0 })),
      totalCount: total,
      key: (r) => ({ k: new Date(r.created_at).toISOString(), id: r.id }),
      node: toReportType,
      scope: 'reports',
    });
  }

  /** The reports among `ids` the viewer handles (as `reports` shows them, of any status), for `node`; the rest left out. */
  async visibleByIds(em: EntityManager, viewerId: string, ids: readonly string[]): Promise<ReportType[]> {
    const rows = await reportRepository.byIds(em, ids);
    if (!rows.length) return [];
    const scope = await this.scope(em, viewerId);
    const groups = new Set(scope.groupIds);
    return rows.filter((r) => (r.group_id ? groups.has(r.group_id) : scope.ungrouped)).map(toReportType);
  }

  /** Marks a report handled; NOT_FOUND unless the viewer may see it. Resolving twice changes nothing. */
  async resolve(em: EntityManager, viewerId: string, reportId: string): Promise<ReportType> {
    const row = isId(reportId) ? await reportRepository.byId(em, reportId) : null;
    if (!row || !(await this.canSee(em, viewerId, row))) throw new NotFoundError('Report');
    if (await reportRepository.resolve(em, row.id, viewerId)) row.status = 'RESOLVED';
    return toReportType(row);
  }
}
