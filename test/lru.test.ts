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

  it('should let go of expired entries nobody reads again, at the first write a TTL later', async () => {
    const lru = boundedLru<string, number>({ max: 10_000, ttlMs: 100 });
    for (let i = 0; i < 500; i++) lru.set(`old ${i}`, i);
    await new Promise((r) => setTimeout(r, 150));
    // Never read again, the 500 expired keys were held until the cap pushed them out (a soak probe).
    lru.set('new', 1);
    expect([lru.size, [...lru.keys()]]).toEqual([1, ['new']]);
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
