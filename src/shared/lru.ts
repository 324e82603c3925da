import { LRUCache } from 'lru-cache';

/**
 * An LRU of at most `max` entries, each kept at most `ttlMs`, whose storage grows with use.
 * lru-cache's own `max` allocates and fills its arrays for all `max` entries up front: about 4 MB
 * per 100,000, in every instance whether it ever holds them or not, and a few milliseconds of
 * every start. Counting entries as a size of one each bounds it the same way without that.
 */
export function boundedLru<K extends {}, V extends {}>(opts: { max: number; ttlMs?: number }): LRUCache<K, V> {
  return new LRUCache<K, V>({ maxSize: opts.max, sizeCalculation: () => 1, ...(opts.ttlMs ? { ttl: opts.ttlMs } : {}) });
}
