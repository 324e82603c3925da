import type { PubSub } from '../../src/shared/pubsub/pubsub';
import { Topic } from '../../src/shared/pubsub/topics';
import { eventually } from './graphql';

/**
 * Holds the next new message's publish on this instance (as a slow instance or Redis would), its
 * commit and answer aside: `taken` resolves once a send reached it, `release` lets it go out.
 */
export function holdNextMessagePublish(pubsub: PubSub): { taken: () => Promise<void>; release: () => void } {
  const real = pubsub.publishTogether;
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  pubsub.publishTogether = async (events) => {
    if (events[0]?.topic !== Topic.MessageAdded) return real.call(pubsub, events);
    pubsub.publishTogether = real;
    await released;
    return real.call(pubsub, events);
  };
  return { taken: async () => void (await eventually(() => pubsub.publishTogether === real)), release };
}

/** Loses the next publish on this instance, as when it dies between a commit and its publish. */
export function loseNextPublish(pubsub: PubSub): void {
  const real = pubsub.publishTogether;
  pubsub.publishTogether = async () => {
    pubsub.publishTogether = real;
  };
}

/**
 * Holds this instance's next publishSafe of `topic` (as a slow instance would), its commit and the
 * rest aside: `held` is true once one reached it, `release` lets it go out. Returns the undo.
 */
export function holdNextPublishOf(pubsub: PubSub, topic: Topic): { held: () => boolean; release: () => void; restore: () => void } {
  const real = pubsub.publishSafe;
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let holding = false;
  pubsub.publishSafe = (async (t: Topic, payload: never) => {
    if (t !== topic || holding) return real.call(pubsub, t, payload);
    holding = true;
    await released;
    return real.call(pubsub, t, payload);
  }) as typeof real;
  return { held: () => holding, release, restore: () => void (pubsub.publishSafe = real) };
}
