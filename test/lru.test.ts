import { boundedLru } from '../src/shared/lru';

describe('boundedLru', () => {
  it('should hold at most max entries, dropping the least recently used, and forget them after ttlMs', async () => {
    const lru = boundedLru<string, number>({ max: 3, ttlMs: 200 });
    for (const [k, v] of [['a', 1], ['b', 2], ['c', 3]] as const) lru.set(k, v);
    expect(lru.get('a')).toBe(1); // a is now the most recently used
    lru.set('d', 4);
    expect([...lru.keys()].sort()).toEqual(['a', 'c', 'd']);
    expect(lru.size).toBe(3);
    await new Promise((r) => setTimeout(r, 250));
    expect(lru.get('a')).toBeUndefined();
  });

  it('should hold a large bound without allocating for it up front', () => {
    const before = process.memoryUsage().heapUsed;
    const caches = Array.from({ length: 10 }, () => boundedLru<string, number>({ max: 1_000_000, ttlMs: 60_000 }));
    caches.forEach((c, i) => c.set(`k${i}`, i));
    // lru-cache's own max of a million fills two arrays of a million slots (16 MB) per cache.
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(20 * 2 ** 20);
    for (let i = 0; i < 5_000; i++) caches[0].set(`n${i}`, i);
    expect(caches[0].size).toBe(5_001);
  });
});
