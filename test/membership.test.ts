import { MembershipIndex } from '../src/modules/membership/membership.index';
import { createPubSub } from '../src/shared/pubsub/pubsub';
import { createLogger } from '../src/shared/logger';
import { conversationRoutes } from '../src/modules/conversation/conversation.keys';

/** A loader whose calls the test settles by hand. */
function manualLoader() {
  const calls: { resolve(ids: string[]): void; reject(e: Error): void }[] = [];
  const load = () => new Promise<string[]>((resolve, reject) => calls.push({ resolve, reject }));
  return { load, calls };
}

describe('membership index', () => {
  const logger = createLogger({ LOG_LEVEL: 'silent', LOG_PRETTY: false });

  it("should not let a closed socket's failed load release another socket's entry", async () => {
    const groups = manualLoader();
    const index = new MembershipIndex(createPubSub(undefined, logger, conversationRoutes), { group: groups.load, project: async () => [] });
    // Socket 1 starts loading, then goes away before the load ends (its close releases its reference).
    const first = index.track('u1');
    first.catch(() => undefined);
    index.untrack('u1');
    // Socket 2 of the same user starts its own load.
    const second = index.track('u1');
    // Socket 1's load fails; socket 2's succeeds.
    groups.calls[0].reject(new Error('database away'));
    await expect(first).rejects.toThrow('database away');
    groups.calls[1].resolve(['g1']);
    await second;
    expect(index.has('group', 'u1', 'g1')).toBe(true);
    index.untrack('u1');
    expect(index.has('group', 'u1', 'g1')).toBe(false);
    index.dispose();
  });

  it('should release the reference of every caller of a load that fails', async () => {
    const groups = manualLoader();
    const index = new MembershipIndex(createPubSub(undefined, logger, conversationRoutes), { group: groups.load, project: async () => [] });
    const a = index.track('u1');
    const b = index.track('u1');
    groups.calls[0].reject(new Error('database away'));
    await expect(a).rejects.toThrow();
    await expect(b).rejects.toThrow();
    // Nothing is left: the next track loads again.
    const c = index.track('u1');
    expect(groups.calls).toHaveLength(2);
    groups.calls[1].resolve(['g2']);
    await c;
    expect(index.has('group', 'u1', 'g2')).toBe(true);
    index.dispose();
  });
});
