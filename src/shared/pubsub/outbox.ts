import type { EntityManager } from '@mikro-orm/postgresql';
import type { PubSub } from './pubsub';
import type { Topic, TopicPayloads } from './topics';
import { retryDeadlocks } from '../sql';

/** Events gathered inside a transaction, published only once it has committed. */
export class Outbox {
  readonly events: { topic: Topic; payload: unknown }[] = [];
  add<T extends Topic>(topic: T, payload: TopicPayloads[T]): void {
    this.events.push({ topic, payload });
  }
}

/**
 * Runs `fn` in one transaction, then publishes what it put in the outbox. A publish that
 * fails is logged and counted, never undoes the committed change (clients catch up by query).
 * A transaction PostgreSQL chose as a deadlock's victim was rolled back whole: it runs again with
 * a fresh outbox (`fn` writes only through its EntityManager and the outbox).
 */
export async function transact<T>(em: EntityManager, pubsub: PubSub, fn: (em: EntityManager, outbox: Outbox) => Promise<T>): Promise<T> {
  let outbox = new Outbox();
  const once = () => {
    outbox = new Outbox();
    return em.transactional((tem) => fn(tem as EntityManager, outbox));
  };
  // Nested in another transaction, a deadlock aborts that one too: its own caller decides.
  const result = await (em.getTransactionContext() ? once() : retryDeadlocks(once));
  // All asked for at once, in order: each goes out (here, and on Redis's one connection) before the
  // next is asked for. Awaited one by one, an account deletion's ~900 events took 0.4-5 s to go, and
  // a change made meanwhile to one of its groups overtook them (an outside probe).
  await Promise.all(outbox.events.map((e) => pubsub.publishSafe(e.topic, e.payload as never)));
  return result;
}
