import type { EntityManager } from '@mikro-orm/postgresql';
import type { PubSub } from './pubsub';
import type { Topic, TopicPayloads } from './topics';

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
 */
export async function transact<T>(em: EntityManager, pubsub: PubSub, fn: (em: EntityManager, outbox: Outbox) => Promise<T>): Promise<T> {
  const outbox = new Outbox();
  const result = await em.transactional((tem) => fn(tem as EntityManager, outbox));
  for (const e of outbox.events) await pubsub.publishSafe(e.topic, e.payload as never);
  return result;
}
