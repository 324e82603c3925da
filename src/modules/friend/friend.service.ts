import { UniqueConstraintViolationException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Env } from '../../config/env';
import { BadUserInputError, ConflictError, ForbiddenError, NotFoundError, RateLimitedError, UnauthenticatedError } from '../../shared/errors';
import { isId } from '../../shared/validation';
import type { Outbox } from '../../shared/pubsub/outbox';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic, type FriendEventPayload } from '../../shared/pubsub/topics';
import type { User } from '../user/user.entity';
import { userRepository } from '../user/user.repository';
import { type FriendRequest, FriendRequestStatus } from './friend.entity';
import { friendRepository } from './friend.repository';
import { friendEvent } from './friend.mapper';

/** Friend requests and friendships; a friendship is what opens a direct conversation. */
export class FriendService {
  private readonly guards: ((em: EntityManager, fromId: string, toId: string) => Promise<void>)[] = [];
  private readonly requestHooks: ((em: EntityManager, request: { id: string; fromId: string; toId: string }) => Promise<void>)[] = [];
  private readonly friendshipListeners: ((a: string, b: string, made: boolean) => void)[] = [];
  private befriended: ((em: EntityManager, a: string, b: string) => Promise<void>) | undefined;

  constructor(
    private readonly env: Pick<Env, 'FRIEND_REQUEST_COOLDOWN'>,
    private readonly pubsub: PubSub,
  ) {}

  /**
   * Tells both users' sessions (friendEvent) what a committed change did to a request or a
   * friendship, so their lists of friends and requests follow without polling.
   */
  private told(kind: FriendEventPayload['kind'], request: FriendRequest): Promise<boolean> {
    return this.pubsub.publishSafe(Topic.FriendEvent, friendEvent(kind, [request.from.id, request.to.id], request));
  }

  /** Runs in the transaction of every new pending request, after it is written (offline notifications). */
  onRequested(hook: (em: EntityManager, request: { id: string; fromId: string; toId: string }) => Promise<void>): void {
    this.requestHooks.push(hook);
  }

  /** Runs before every new request, and may refuse it by throwing (a block between the two: modules/safety). */
  guard(check: (em: EntityManager, fromId: string, toId: string) => Promise<void>): void {
    this.guards.push(check);
  }

  /** Called after a friendship between `a` and `b` was made (`made`) or ended and committed (presence contacts, mutes). */
  onFriendshipChanged(listener: (a: string, b: string, made: boolean) => void): void {
    this.friendshipListeners.push(listener);
  }

  /** `listener` runs once a friendship is made and committed, with its two users, before the answer (their direct conversation's rows). */
  onBefriended(listener: (em: EntityManager, a: string, b: string) => Promise<void>): void {
    this.befriended = listener;
  }

  private async friendshipChanged(em: EntityManager, request: FriendRequest): Promise<FriendRequest> {
    await this.told(request.status === FriendRequestStatus.PENDING ? 'REQUESTED' : request.status, request);
    if (request.status !== FriendRequestStatus.ACCEPTED) return request;
    for (const l of this.friendshipListeners) l(request.from.id, request.to.id, true);
    await this.befriended?.(em, request.from.id, request.to.id);
    return request;
  }

  areFriends(em: EntityManager, a: string, b: string): Promise<boolean> {
    return friendRepository.areFriends(em, a, b);
  }

  friendsSince(em: EntityManager, a: string, b: string): Promise<Date | null> {
    return friendRepository.friendsSince(em, a, b);
  }

  async send(em: EntityManager, viewerId: string, userId: string): Promise<FriendRequest> {
    if (userId === viewerId) throw new BadUserInputError('You cannot befriend yourself.', 'userId');
    const target = isId(userId) ? await userRepository.activeById(em, userId) : null;
    if (!target) throw new NotFoundError('User');
    const request = await em.transactional(async (tem) => {
      // Both accounts first, as their deletion takes its own first: one under way ends, and then
      // this is refused, rather than leaving a request from or to a deleted account.
      if (!(await userRepository.lockActive(tem, viewerId))) throw new UnauthenticatedError('This account was deleted.');
      if (!(await userRepository.lockActive(tem, target.id))) throw new NotFoundError('User');
      // Checked under the pair's lock: a block committed meanwhile is seen (see lockPair).
      await friendRepository.lockPair(tem, viewerId, target.id);
      for (const check of this.guards) await check(tem, viewerId, userId);
      if (await friendRepository.areFriends(tem, viewerId, userId)) throw new ConflictError('You are already friends.', 'userId');
      const pending = await friendRepository.pendingBetween(tem, viewerId, userId);
      if (pending && pending.from.id === viewerId) throw new ConflictError('A request to this user is already pending.', 'userId');
      // They asked first: sending back is saying yes.
      if (pending) return this.settle(tem, pending, FriendRequestStatus.ACCEPTED);
      // A "no" holds for a while: no asking again after each decline.
      const declinedAt = await friendRepository.lastDeclinedAt(tem, viewerId, userId);
      const wait = declinedAt ? declinedAt.getTime() + this.env.FRIEND_REQUEST_COOLDOWN * 1000 - Date.now() : 0;
      if (wait > 0) throw new RateLimitedError(wait / 1000, 'This user declined your last request; you can ask again later.');
      let request: FriendRequest;
      try {
        request = await friendRepository.request(tem, viewerId, target);
      } catch (e) {
        if (e instanceof UniqueConstraintViolationException) throw new ConflictError('A request between you is already pending.', 'userId');
        throw e;
      }
      for (const hook of this.requestHooks) await hook(tem, { id: request.id, fromId: viewerId, toId: userId });
      return request;
    });
    return this.friendshipChanged(em, request);
  }

  async respond(em: EntityManager, viewerId: string, requestId: string, accept: boolean): Promise<FriendRequest> {
    const answered = await em.transactional(async (tem) => {
      const request = await this.pendingFor(tem, viewerId, requestId, 'to', 'Only the addressee answers a friend request; its sender may withdraw it (cancelFriendRequest).');
      return this.settle(tem, request, accept ? FriendRequestStatus.ACCEPTED : FriendRequestStatus.DECLINED);
    });
    return this.friendshipChanged(em, answered);
  }

  /**
   * The sender withdraws their pending request: it goes, as if never sent (no cooldown, as a
   * decline has; its notification, if not yet sent, is not). Before, nothing withdrew one (an outside probe).
   */
  async withdraw(em: EntityManager, viewerId: string, requestId: string): Promise<boolean> {
    const request = await em.transactional(async (tem) => {
      const request = await this.pendingFor(tem, viewerId, requestId, 'from', 'Only the sender withdraws a friend request; its addressee declines it.');
      await friendRepository.drop(tem, request.id);
      return request;
    });
    await this.told('CANCELLED', request);
    return true;
  }

  /**
   * A pending request of the viewer's, on their `side` of it, read under its pair's lock: NOT_FOUND
   * for one that is not theirs (requests are visible to their two users only), FORBIDDEN on the
   * other side, CONFLICT once answered.
   */
  private async pendingFor(em: EntityManager, viewerId: string, requestId: string, side: 'from' | 'to', otherSide: string): Promise<FriendRequest> {
    const found = isId(requestId) ? await friendRepository.byId(em, requestId) : null;
    if (!found || (found.to.id !== viewerId && found.from.id !== viewerId)) throw new NotFoundError('Friend request');
    if (found[side].id !== viewerId) throw new ForbiddenError(otherSide);
    // The two accounts first (see send): a deletion under way takes the request with it.
    for (const id of [found.from.id, found.to.id]) await userRepository.lockActive(em, id);
    // Read again under the pair's lock: another answer, a withdrawal, or a block that dropped it, committed meanwhile.
    await friendRepository.lockPair(em, found.from.id, found.to.id);
    const request = await em.refresh(found);
    if (!request) throw new NotFoundError('Friend request');
    if (request.status !== FriendRequestStatus.PENDING) throw new ConflictError('This request was already answered.', 'requestId');
    return request;
  }

  async remove(em: EntityManager, viewerId: string, userId: string): Promise<boolean> {
    if (!isId(userId)) throw new NotFoundError('Friendship');
    if (userId === viewerId) throw new BadUserInputError('You cannot unfriend yourself.', 'userId');
    const ended = await em.transactional(async (tem) => {
      await friendRepository.lockPair(tem, viewerId, userId);
      return friendRepository.unfriend(tem, viewerId, userId);
    });
    if (!ended) throw new NotFoundError('Friendship');
    for (const l of this.friendshipListeners) l(viewerId, userId, false);
    await this.pubsub.publishSafe(Topic.FriendEvent, friendEvent('REMOVED', [viewerId, userId], null));
    return true;
  }

  async friends(em: EntityManager, viewerId: string): Promise<User[]> {
    const ids = await friendRepository.friendIds(em, viewerId);
    return userRepository.byIdsByUsername(em, ids);
  }

  pending(em: EntityManager, viewerId: string): Promise<FriendRequest[]> {
    return friendRepository.pendingOf(em, viewerId);
  }

  /**
   * An account's deletion: its friendships end and its pending requests go, each told to the other
   * user once it commits, and each friendship's end to the contacts as an unfriending's is (a friend
   * with a socket open went on reading the deleted account's lastSeenAt in contacts mode until it
   * closed: an outside probe, 5 of 5).
   */
  async removeAllOf(em: EntityManager, userId: string, outbox: Outbox): Promise<void> {
    const friendIds = await friendRepository.friendIds(em, userId);
    const pending = await friendRepository.pendingOf(em, userId);
    await friendRepository.removeAllOf(em, userId);
    for (const id of friendIds) outbox.add(Topic.FriendEvent, friendEvent('REMOVED', [userId, id], null, [id]));
    for (const id of friendIds) outbox.add(Topic.ContactsChanged, { userIds: [userId, id] });
    for (const r of pending) outbox.add(Topic.FriendEvent, friendEvent('CANCELLED', [r.from.id, r.to.id], r, [r.from.id === userId ? r.to.id : r.from.id]));
  }

  private async settle(em: EntityManager, request: FriendRequest, status: FriendRequestStatus): Promise<FriendRequest> {
    request.status = status;
    request.respondedAt = new Date();
    if (status === FriendRequestStatus.ACCEPTED) await friendRepository.befriend(em, request.from.id, request.to.id);
    await em.flush();
    return request;
  }
}
