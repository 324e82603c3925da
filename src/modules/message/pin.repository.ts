import type { EntityManager } from '@mikro-orm/postgresql';
import { lockNames, pgArray } from '../../shared/sql';
import { notBlockedByViewer } from '../safety/block.repository';
import { lockMessage, SELECT, type MessageRow } from './message.repository';

export interface PinRow {
  message_id: string;
  pinned_at: Date;
  pinned_by_id: string | null;
}

// A deleted message's pin stays in the table (the deletion is not the pin's to undo) and counts nowhere.
const ACTIVE = 'join messages m on m.id = p.message_id and m.deleted_at is null';

export const pinRepository = {
  /**
   * Pins a message unless its conversation holds `max` pins already; inside the caller's
   * transaction, the message's row locked first (see lockMessage: 'deleted' or 'gone' when a
   * deletion came first), then the conversation's pins against a concurrent pin (an advisory lock:
   * sends, which take the conversation's head row, are not held up).
   * 'already' when it was pinned (nothing changes); the message's version moves with a new pin.
   */
  async pin(em: EntityManager, m: { id: string; conversationKey: string }, userId: string, max: number): Promise<'pinned' | 'already' | 'full' | 'deleted' | 'gone'> {
    const found = await lockMessage(em, m.id);
    if (found !== 'there') return found;
    await lockNames(em, [`pins:${m.conversationKey}`]);
    const [{ n, mine }] = await em.execute(
      `select count(*)::int as n, count(*) filter (where p.message_id = ?)::int as mine from message_pins p ${ACTIVE} where p.conversation_key = ?`,
      [m.id, m.conversationKey],
    );
    if (mine) return 'already';
    if (n >= max) return 'full';
    await em.execute(
      `with p as (insert into message_pins (message_id, conversation_key, pinned_by_id, pinned_at) values (?, ?, ?, date_trunc('milliseconds', clock_timestamp()))
         on conflict (message_id) do nothing returning message_id)
       update messages set version = version + 1 where id = (select message_id from p)`,
      [m.id, m.conversationKey, userId],
    );
    return 'pinned';
  },

  /** False when it was not pinned; inside the caller's transaction, the message's row locked first (see pin). */
  async unpin(em: EntityManager, messageId: string): Promise<boolean | 'deleted' | 'gone'> {
    const found = await lockMessage(em, messageId);
    if (found !== 'there') return found;
    const rows = await em.execute(
      `with p as (delete from message_pins where message_id = ? returning message_id)
       update messages set version = version + 1 where id = (select message_id from p) returning id`,
      [messageId],
    );
    return rows.length > 0;
  },

  /** The pins of several messages (none for a deleted one). */
  async ofMessages(em: EntityManager, ids: readonly string[]): Promise<Map<string, PinRow>> {
    if (!ids.length) return new Map();
    const rows: PinRow[] = await em.execute(`select p.message_id, p.pinned_at, p.pinned_by_id from message_pins p ${ACTIVE} where p.message_id = any(?::uuid[])`, [pgArray(ids)]);
    return new Map(rows.map((r) => [r.message_id, r]));
  },

  /** A conversation's pinned messages, newest pin first, with their pins, as `viewerId` sees them: messages of users they block are left out, as history leaves them. */
  async ofConversation(em: EntityManager, conversationKey: string, viewerId: string): Promise<(MessageRow & { pinned_at: Date; pinned_by_id: string | null })[]> {
    return em.execute(
      `select p.pinned_at, p.pinned_by_id, t.* from message_pins p ${ACTIVE}
       cross join lateral (${SELECT} where m.id = p.message_id) t
       where p.conversation_key = ? and ${notBlockedByViewer('t.sender_id')} order by p.pinned_at desc, p.message_id desc`,
      [conversationKey, viewerId, viewerId],
    );
  },
};
