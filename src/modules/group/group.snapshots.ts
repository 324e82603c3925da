import type { EntityManager } from '@mikro-orm/postgresql';
import { boundedLru } from '../../shared/lru';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { Topic } from '../../shared/pubsub/topics';
import { toGroupType } from './group.mapper';
import { groupRepository } from './group.repository';
import type { GroupType } from './group.types';

/** How long a group read for events serves the next ones. */
const FRESH_MS = 2000;
/** How long a copy is kept past that, to answer for a read that fails (a starved pool). */
const KEPT_MS = 60_000;
const MAX = 10_000;

/**
 * Groups as message events show them (`Message.group` in a subscription), one read shared by every
 * subscriber here and every event of the group for FRESH_MS. Each subscriber's execution read its
 * group apart, a query per event per subscriber: on a pool starved for seconds those reads failed,
 * and members received their messages with `group: null` (an outside probe: 3,430 deliveries in a
 * run at DB_POOL_MAX 2; 170 at 5). A read that fails while an older copy is at hand answers with it.
 * A change to the group (a rename, slow mode, a member come or gone) forgets its copy as it is told
 * here. Only for a member of the group (the caller checks): whom it is visible to is not asked here.
 */
export class GroupSnapshots {
  private readonly cache = boundedLru<string, { at: number; group: GroupType | null }>({ max: MAX, ttlMs: KEPT_MS });
  private readonly reading = new Map<string, Promise<GroupType | null>>();
  private offs: (() => void)[] = [];

  /** Forgets a group's copy when a change to it is told here (see the class). */
  start(pubsub: PubSub): void {
    this.offs.push(
      pubsub.on(Topic.GroupEvent, (e) => this.forget(e.groupId)),
      pubsub.on(Topic.MembershipChanged, (m) => m.scope === 'group' && this.forget(m.id)),
    );
  }

  /** A read already on its way when the change came is not kept either: it may predate the change. */
  forget(id: string): void {
    this.cache.delete(id);
    this.reading.delete(id);
  }

  get(em: EntityManager, id: string): Promise<GroupType | null> {
    const held = this.cache.get(id);
    if (held && Date.now() - held.at < FRESH_MS) return Promise.resolve(held.group);
    const reading = this.reading.get(id);
    if (reading) return reading;
    const read: Promise<GroupType | null> = groupRepository
      .byIds(em, [id])
      .then(
        ([g]) => {
          const group = g ? toGroupType(g) : null;
          if (this.reading.get(id) === read) this.cache.set(id, { at: Date.now(), group });
          return group;
        },
        (e) => {
          if (held) return held.group;
          throw e;
        },
      )
      .finally(() => {
        if (this.reading.get(id) === read) this.reading.delete(id);
      });
    this.reading.set(id, read);
    return read;
  }

  dispose(): void {
    for (const off of this.offs.splice(0)) off();
    this.cache.clear();
    this.reading.clear();
  }
}
