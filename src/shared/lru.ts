import { LRUCache } from 'lru-cache';

/**
 * lru-cache drops an expired entry only when it is read again or pushed out by the cap: a cache of
 * a minute's entries held one per key it ever saw, up to its cap (an outside soak probe: the auth
 * cache, the newest heads and versions and the known addresses grew with every user churned, ≥150
 * MB an instance projected at their caps). So its first write once `sweepMs` have passed since the
 * last sweep drops every expired entry: one walk a TTL, in the write that finds it due, and no timer
 * (an instance with nothing to write keeps what it holds, no more).
 */
class SweptLru<K extends {}, V extends {}> extends LRUCache<K, V> {
  private sweepAt: number;

  constructor(
    options: LRUCache.Options<K, V, unknown>,
    private readonly sweepMs: number,
  ) {
    super(options);
    this.sweepAt = Date.now() + sweepMs;
  }

  override set(...args: Parameters<LRUCache<K, V>['set']>): this {
    const now = Date.now();
    if (now >= this.sweepAt) {
      this.sweepAt = now + this.sweepMs;
      this.purgeStale();
    }
    return super.set(...args);
  }
}

/**
 * An LRU of at most `max` entries, each kept at most `ttlMs` (and not held in memory much longer:
 * see SweptLru), whose storage grows with use. lru-cache's own `max` allocates and fills its arrays
 * for all `max` entries up front: about 4 MB per 100,000, in every instance whether it ever holds
 * them or not, and a few milliseconds of every start. Counting entries as a size of one each bounds
 * it the same way without that.
 */
export function boundedLru<K extends {}, V extends {}>(opts: { max: number; ttlMs?: number }): LRUCache<K, V> {
  const options = { maxSize: opts.max, sizeCalculation: () => 1 };
  return opts.ttlMs ? new SweptLru<K, V>({ ...options, ttl: opts.ttlMs }, opts.ttlMs) : new LRUCache<K, V>(options);
}
