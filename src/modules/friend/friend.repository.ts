import type { EntityManager } from '@mikro-orm/postgresql';
import { conversationRepository } from '../conversation/conversation.repository';
import { User } from '../user/user.entity';
import { FriendRequest, FriendRequestStatus, Friendship } from './friend.entity';
import { directKey } from '../conversation/conversation.keys';
import { lockNames } from '../../shared/sql';

/** Friendships are stored once per pair, smaller id first. */
export function pair(a: string, b: string): [string, string] {
  return a < b ? [a, b] : [b, a];
}

export const friendRepository = {
  /**
   * Locks the pair for the rest of the transaction: a request, its answer, a block and an
   * unfriending between the same two users go one at a time, each reading what the one before
   * committed (an accept and a block at once left a blocked user a friend; an accept and a decline
   * of one request both succeeded).
   */
  async lockPair(em: EntityManager, a: string, b: string): Promise<void> {
    const [x, y] = pair(a.toLowerCase(), b.toLowerCase());
    await lockNames(em, [`friends:${x}:${y}`]);
  },

  async areFriends(em: EntityManager, a: string, b: string): Promise<boolean> {
    return (await friendRepository.friendsSince(em, a, b)) !== null;
  },

  /** When the two became friends (their friendship as it is), or null when they are not friends. */
  async friendsSince(em: EntityManager, a: string, b: string): Promise<Date | null> {
    const [userA, userB] = pair(a, b);
    const rows: { created_at: Date | string }[] = await em.execute('select created_at from friendships where user_a_id = ? and user_b_id = ?', [userA, userB]);
    return rows.length ? new Date(rows[0].created_at) : null;
  },

  async pendingBetween(em: EntityManager, a: string, b: string): Promise<FriendRequest | null> {
    return em.findOne(FriendRequest, {
      status: FriendRequestStatus.PENDING,
      $or: [
        { from: a, to: b },
        { from: b, to: a },
      ],
    });
  },

  /**
   * When `to` last declined a request from `from`, unless the two became friends since (either
   * asking): a "no" a later "yes" overruled holds no more (it kept `from` from asking again after
   * the friendship ended).
   */
  async lastDeclinedAt(em: EntityManager, from: string, to: string): Promise<Date | null> {
    const [r]: { declined: Date | null; accepted: Date | null }[] = await em.execute(
      `select max(responded_at) filter (where status = 'DECLINED' and from_id = ?) as declined, max(responded_at) filter (where status = 'ACCEPTED') as accepted
         from friend_requests where (from_id = ? and to_id = ?) or (from_id = ? and to_id = ?)`,
      [from, from, to, to, from],
    );
    if (!r?.declined) return null;
    const declined = new Date(r.declined);
    return r.accepted && new Date(r.accepted) >= declined ? null : declined;
  },

  async friendIds(em: EntityManager, userId: string): Promise<string[]> {
    const rows: { id: string }[] = await em.execute(
      'select user_b_id as id from friendships where user_a_id = ? union select user_a_id from friendships where user_b_id = ?',
      [userId, userId],
    );
    return rows.map((r) => r.id);
  },

  async byId(em: EntityManager, id: string): Promise<FriendRequest | null> {
    return em.findOne(FriendRequest, { id });
  },

  /** A new pending request; the unique index refuses a second one between the same two users. */
  async request(em: EntityManager, from: string, to: User): Promise<FriendRequest> {
    const request = em.create(FriendRequest, { from: em.getReference(User, from), to });
    await em.flush();
    return request;
  },

  async pendingOf(em: EntityManager, userId: string): Promise<FriendRequest[]> {
    return em.find(FriendRequest, { status: FriendRequestStatus.PENDING, $or: [{ from: userId }, { to: userId }] }, { orderBy: { createdAt: 'desc', id: 'desc' } });
  },

  async befriend(em: EntityManager, a: string, b: string): Promise<void> {
    const [userA, userB] = pair(a, b);
    await em.execute('insert into friendships (id, user_a_id, user_b_id, created_at) values (gen_random_uuid(), ?, ?, now()) on conflict do nothing', [userA, userB]);
    // Friends again: a conversation they had comes back to both sidebars (each read where they had read).
    const key = directKey(userA, userB);
    await conversationRepository.join(em, { key, userId: userA, kind: 'DIRECT', peerId: userB });
    await conversationRepository.join(em, { key, userId: userB, kind: 'DIRECT', peerId: userA });
    await conversationRepository.forgetKeptMarkers(em, { key });
  },

  async unfriend(em: EntityManager, a: string, b: string): Promise<boolean> {
    const [userA, userB] = pair(a, b);
    // The friendship's row first: a direct message's statement holds it shared while it writes the
    // conversation's rows (see friendsGate), so this waits for one under way and then takes its
    // rows too, and one that comes after finds no friendship. The other order deadlocked with it.
    const ended = (await em.nativeDelete(Friendship, { userA, userB })) > 0;
    // A direct conversation needs friends: it leaves both sidebars (its messages and head stay).
    await conversationRepository.dropMembers(em, directKey(userA, userB));
    return ended;
  },

  /** A request withdrawn by its sender: gone, as if never sent. */
  async drop(em: EntityManager, id: string): Promise<void> {
    await em.nativeDelete(FriendRequest, { id });
  },

  /** Every pending request between the two, whichever way (a block ends them). */
  async dropPendingBetween(em: EntityManager, a: string, b: string): Promise<void> {
    await em.nativeDelete(FriendRequest, { status: FriendRequestStatus.PENDING, $or: [{ from: a, to: b }, { from: b, to: a }] });
  },

  /** Account deletion: every friendship and request of the user. */
  async removeAllOf(em: EntityManager, userId: string): Promise<void> {
    await em.nativeDelete(Friendship, { $or: [{ userA: userId }, { userB: userId }] });
    // Both sides' rows of their direct conversations; their groups' and projects' rows go as each
    // step leaves them, under the group's or project's lock (see ConversationService.forgetUser).
    await em.execute("delete from conversation_members where kind = 'DIRECT' and (peer_id = ? or user_id = ?)", [userId, userId]);
    await conversationRepository.forgetKeptMarkers(em, { userId });
    await em.nativeDelete(FriendRequest, { $or: [{ from: userId }, { to: userId }] });
  },
};
