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
