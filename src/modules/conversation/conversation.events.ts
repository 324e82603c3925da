import type { ConversationUpdatedPayload, MemberStatePayload } from '../../shared/pubsub/topics';
import type { ConversationRow, MemberState } from './conversation.repository';

/** A member's row as conversationUpdated carries it. */
export function memberState(r: Pick<MemberState, 'unread_count' | 'last_read_message_id' | 'activity_at' | 'last_message_id'>): MemberStatePayload {
  return [r.unread_count, r.last_read_message_id, new Date(r.activity_at).toISOString(), r.last_message_id];
}

/** A group or project renamed: every member's row, with the new title. */
export function renamed(key: string, kind: 'GROUP' | 'PROJECT', title: string, rows: ConversationRow[]): ConversationUpdatedPayload {
  return {
    conversationKey: key,
    kind,
    groupId: kind === 'GROUP' ? key.slice(2) : null,
    projectId: kind === 'PROJECT' ? key.slice(2) : null,
    userIds: null,
    title,
    titles: null,
    message: null,
    members: Object.fromEntries(rows.map((r) => [r.user_id, memberState(r)])),
  };
}
