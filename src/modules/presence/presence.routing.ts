import type { EntityManager, MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from '../../shared/logger';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { CONVERSATION_CHANNELS, Topic, type PresencePayload } from '../../shared/pubsub/topics';
import { presenceChannel } from '../conversation/conversation.keys';
import type { MembershipIndex } from '../membership/membership.index';
import type { ContactIndex } from './presence.contacts';
import { presenceRepository } from './presence.repository';
import type { PresenceService } from './presence.service';
import type { StoreChannel } from './presence.store';

/** The hub key of a viewer's argument-less presenceChanged (contacts mode); explicit ones are keyed by the user watched. */
export const watcherKey = (viewerId: string): string => `~${viewerId}`;

/**
 * Where the sweep's own Lua step publishes OFFLINE transitions: in both modes the topic-wide channel,
 * a thousand transitions to a message. In contacts mode every instance also listens there and hands
 * each transition to its local viewers who may see it: a sweep of 100,000 is then 100 messages per
 * instance instead of up to 100,000 (once each instance takes most users' channels, as it does when
 * its sockets times their contacts cover the fleet). `perUser` publishes one envelope per user on
 * the user's own channel instead (measured at ~9x the time: docs/SCALING-presence.md). None with
 * sharded pub/sub, whose channels the script cannot publish to: the service publishes them itself.
 */
export function presenceStoreChannel(mode: 'everyone' | 'contacts', sharded: boolean, perUser = false): StoreChannel | undefined {
  if (sharded) return undefined;
  return mode === 'contacts' && perUser ? { name: `${CONVERSATION_CHANNELS}:${presenceChannel('')}`, perUser: true } : { name: Topic.PresenceChanged, perUser: false };
}

/**
 * Contacts mode: the pairs (viewer, subject) whose viewer a block told OFFLINE, and nothing of the
 * subject since. The contact the block's unfriending ends is then told no second OFFLINE, even
 * when an unblock came first (its reload of contacts still under way, the block lifted, so nothing
 * else says the viewer already reads them OFFLINE: a CI run told it twice).
 */
export class BlockedTold {
  private readonly pairs = new Set<string>();

  add(viewer: string, subject: string): void {
    // Pairs a block left (a contact through a group, blocked for good) are few; past a bound, the
    // worst forgetting them does is one OFFLINE told twice.
    if (this.pairs.size >= BLOCKED_TOLD_MAX) this.pairs.clear();
    this.pairs.add(`${viewer}|${subject}`);
  }

  /** Forgets the pair; whether it was there. */
  take(viewer: string, subject: string): boolean {
    return this.pairs.delete(`${viewer}|${subject}`);
  }
}

const BLOCKED_TOLD_MAX = 100_000;

/**
 * A block hides the blocked user's presence from the blocker, so the blocker's subscriptions on
 * this instance are told at once that they read OFFLINE (with no lastSeenAt); an unblock tells them
 * the user as they are, when ONLINE (and, in contacts mode, still a contact). Before, nothing came
 * until the user's next transition, and a client went on showing them as it last heard (outside
 * probes: in everyone mode, then in contacts mode for a contact through a shared group, whom the
 * friendship the block ends leaves a contact). `deliver` hands an event to the viewer's
 * subscriptions as the mode routes them.
 */
export function presenceFollowsBlocks(d: {
  pubsub: PubSub;
  presence: PresenceService;
  holds: (userId: string) => boolean;
  deliver: (viewer: string, subject: string, p: PresencePayload) => void;
  /** Contacts mode: whether the viewer saw the subject until now (a contact); a block of anyone else changes nothing they see. */
  saw?: (viewer: string, subject: string) => boolean;
  /** Contacts mode: once the viewer's contacts reloads begun so far are over (ContactIndex.settled). */
  settled?: (viewer: string) => Promise<void>;
  /** Contacts mode: the pairs told OFFLINE by a block (see BlockedTold). */
  told?: BlockedTold;
  logger: Logger;
}): () => void {
  return d.pubsub.on(Topic.SafetyChanged, (p) => {
    if (p.blockedId === undefined || !d.holds(p.userId)) return;
    const [viewer, subject] = [p.userId, p.blockedId];
    if (p.blocked) {
      if (d.saw && !d.saw(viewer, subject)) return;
      d.told?.add(viewer, subject);
      return d.deliver(viewer, subject, { userId: subject, status: 'OFFLINE', lastSeenAt: null, lost: true, to: viewer });
    }
    // After the block's unfriending reached the contacts (its event came first): a contact no more is not told ONLINE.
    void (d.settled?.(viewer) ?? Promise.resolve())
      .then(() => {
        // The block's loss of the contact, if any, has been applied (and told nothing): the pair is as any other again.
        d.told?.take(viewer, subject);
        return d.presence.statesFor(viewer, [subject]);
      })
      .then(([s]) => {
        if (s.status === 'ONLINE' && (!d.saw || d.saw(viewer, subject))) {
          d.deliver(viewer, subject, { userId: subject, status: 'ONLINE', lastSeenAt: s.lastSeenAt?.toISOString() ?? null, to: viewer });
        }
      })
      .catch((e) => d.logger.debug({ err: e }, 'presence: an unblocked user’s status could not be read'));
  });
}

/**
 * PRESENCE_VISIBILITY=contacts. Upstream, this instance takes the presence channel of every user a
 * local viewer may see (ContactIndex); here, a transition is handed to the explicit subscriptions
 * on that user and to the argument-less ones of the local viewers who may see them. Contacts follow
 * friendships (ContactsChanged) and memberships (MembershipChanged) on every instance; a viewer who
 * gains a contact is told at once if that contact is online, and one who loses a contact is told
 * OFFLINE (with no lastSeenAt), without reconnecting.
 */
export function routePresence(d: {
  pubsub: PubSub;
  contacts: ContactIndex;
  memberships: MembershipIndex;
  presence: PresenceService;
  orm: MikroORM;
  groupMax: number;
  /**
   * Whether the viewer blocks the subject (held here): a contact lost by a block was told OFFLINE
   * by the block (presenceFollowsBlocks), if it came while they were still a contact; if the
   * contact went first, the block was applied after it and this told it.
   */
  hides: (viewer: string, subject: string) => boolean;
  /** The pairs told OFFLINE by a block (see BlockedTold): not told it again when the block ends the contact. */
  told: BlockedTold;
  logger: Logger;
}): () => void {
  const { pubsub, contacts, memberships, presence } = d;
  contacts.watch({
    taken: (subject) => pubsub.take(presenceChannel(subject)),
    dropped: (subject) => pubsub.drop(presenceChannel(subject)),
    changed: (viewer, subject, gained) => {
      if (viewer === subject) return;
      // To the viewer's argument-less subscriptions and to those naming the subject (`to`: theirs only).
      const keys = [watcherKey(viewer), subject];
      // Told OFFLINE by a block, nothing since: not again, though an unblock may have come first.
      const toldByBlock = d.told.take(viewer, subject);
      if (!gained) {
        if (!toldByBlock && !d.hides(viewer, subject)) pubsub.deliverLocally(Topic.PresenceChanged, keys, { userId: subject, status: 'OFFLINE', lastSeenAt: null, lost: true, to: viewer });
        return;
      }
      void presence
        .statesFor(viewer, [subject])
        .then(([s]) => {
          if (s.status === 'ONLINE' && contacts.isContact(viewer, subject)) {
            pubsub.deliverLocally(Topic.PresenceChanged, keys, { userId: subject, status: 'ONLINE', lastSeenAt: s.lastSeenAt?.toISOString() ?? null, to: viewer });
          }
        })
        .catch((e) => d.logger.debug({ err: e }, 'presence: a new contact’s status could not be read'));
    },
  });
  pubsub.routeLocally(Topic.PresenceChanged, (p) => {
    const watchers = contacts.watchersOf(p.userId);
    const keys = [p.userId];
    if (watchers) for (const v of watchers) keys.push(watcherKey(v));
    return keys;
  });
  const offContacts = pubsub.on(Topic.ContactsChanged, (p) => void contacts.refresh(p.userIds));
  // The lobby (every signup joins it) never makes contacts: known once, never asked again.
  const lobbies = new Set<string>();
  const offMemberships = pubsub.on(Topic.MembershipChanged, (p) => {
    if (p.scope === 'group' && lobbies.has(p.id)) return;
    if (!p.changes.some((c) => contacts.isLocal(c.userId)) && !memberships.localMembers(p.scope, p.id)?.size) return;
    const em = d.orm.em.fork() as EntityManager;
    void presenceRepository
      .scopeMayMakeContacts(em, p.scope, p.id, d.groupMax, p.changes.length)
      .then((may) => {
        if (may === 'lobby') return void lobbies.add(p.id);
        // The membership index heard the change first (started before): the scope's local members are current.
        if (may) return contacts.refresh(contacts.affectedBy(p, memberships.localMembers(p.scope, p.id)));
      })
      .catch((e) => d.logger.warn({ err: e }, 'presence: contacts not refreshed after a membership change'));
  });
  return () => {
    offContacts();
    offMemberships();
  };
}
