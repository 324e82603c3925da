import type { EntityManager } from '@mikro-orm/postgresql';
import { boundedLru } from './lru';
import type { PubSub } from './pubsub/pubsub';

/** How long a read for events serves the next ones. */
const FRESH_MS = 2000;
/** How long a copy is kept past that, to answer for a read that fails (a starved pool). */
const KEPT_MS = 60_000;
const MAX = 10_000;

/**
 * Rows as subscription events show them (a message's group or project), one read by id shared by
 * every subscriber here and every event of that id for FRESH_MS. Each subscriber's execution read
 * its row apart, a query (or two) per event per subscriber: on a pool starved for seconds those
 * reads failed, and members received their messages with the field null (an outside probe: 3,430
 * deliveries in a run at DB_POOL_MAX 2; 170 at 5). A read that fails while an older copy is at hand
 * answers with it. An id's copy is forgotten when a change to it is told here (`changes` listens
 * for them); a read on its way then is not kept (it may predate the change). Whom a row is visible
 * to is not asked here: the caller serves only members.
 */
export class Snapshots<T> {
  private readonly cache = boundedLru<string, { at: number; value: T | null }>({ max: MAX, ttlMs: KEPT_MS });
  private readonly reading = new Map<string, Promise<T | null>>();
  private offs: (() => void)[] = [];

  constructor(
    private readonly read: (em: EntityManager, id: string) => Promise<T | null>,
    private readonly changes: (pubsub: PubSub, forget: (id: string) => void) => (() => void)[],
  ) {}

  start(pubsub: PubSub): void {
    this.offs = this.changes(pubsub, (id) => this.forget(id));
  }

  forget(id: string): void {
    this.cache.delete(id);
    this.reading.delete(id);
  }

  get(em: EntityManager, id: string): Promise<T | null> {
    const held = this.cache.get(id);
    if (held && Date.now() - held.at < FRESH_MS) return Promise.resolve(held.value);
    const reading = this.reading.get(id);
    if (reading) return reading;
    const read: Promise<T | null> = this.read(em, id)
      .then(
        (value) => {
          if (this.reading.get(id) === read) this.cache.set(id, { at: Date.now(), value });
          return value;
        },
        (e) => {
          if (held) return held.value;
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
