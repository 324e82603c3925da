interface Waiting<T, R> {
  item: T;
  resolve(result: R): void;
  reject(error: unknown): void;
}

export interface BatcherOptions<T, R> {
  /** Does one item. */
  one(item: T): Promise<R>;
  /**
   * Does several items at once, answering each in its order; nothing of them is done if it throws.
   * An item answered `undefined` was left undone, and is then done alone with `one` (an item the
   * batch could not take, such as a send it found refused: `one` tells its caller why).
   */
  many(items: T[]): Promise<(R | undefined)[]>;
  /**
   * Whether one item could have made `many` fail (a duplicate key, a row gone): then each is done
   * again alone with `one`, so that failure is its own caller's. Any other error (a pool timeout,
   * the database away) is every caller's at once: retrying them one by one would only make the
   * last wait for all the others' failures.
   */
  itemFault(error: unknown): boolean;
  /** The most items one call of `many` takes. @default 64 */
  max?: number;
  /**
   * Items of one batch differ by this (a conversation, when a batch writes one message of each): of
   * those that waited, the first of each value goes; the others wait for the next batch, in order.
   */
  distinct?(item: T): string;
}

/**
 * Group commit, per key: an item goes at once when nothing of its key is running (no wait is
 * added at low load); items that arrive while one runs wait for it, then go together through
 * `many`, up to `max` at a time. Each caller is answered only once the call holding its item is
 * done. Items of one key are done in the order they came: a batch's items left undone run alone
 * after it, before the next batch.
 */
export class Batcher<T, R> {
  private readonly waiting = new Map<string, Waiting<T, R>[]>();
  /** Keys whose call is running, and since when (ms). */
  private readonly since = new Map<string, number>();
  private readonly max: number;
  /** Items done by `many` (for tests and metrics). */
  batched = 0;

  constructor(private readonly o: BatcherOptions<T, R>) {
    this.max = o.max ?? 64;
  }

  run(key: string, item: T): Promise<R> {
    const queue = this.waiting.get(key);
    if (queue) return new Promise((resolve, reject) => queue.push({ item, resolve, reject }));
    this.waiting.set(key, []);
    this.since.set(key, Date.now());
    // Through then: a synchronous throw must not leave the key taken with nothing running.
    return Promise.resolve(item).then((i) => this.o.one(i)).finally(() => this.next(key));
  }

  private next(key: string): void {
    const queue = this.waiting.get(key)!;
    if (!queue.length) {
      this.waiting.delete(key);
      this.since.delete(key);
      return;
    }
    this.since.set(key, Date.now());
    // The queue stays while the batch runs, so what arrives meanwhile waits for the next one.
    const batch = this.take(queue);
    void this.flush(batch)
      .catch((e) => batch.forEach((w) => w.reject(e)))
      .finally(() => this.next(key));
  }

  /** How long the call now running for `key` has been (ms); 0 when none is. */
  busyFor(key: string, now = Date.now()): number {
    const since = this.since.get(key);
    return since === undefined ? 0 : now - since;
  }

  /**
   * The next batch off the queue: up to `max` items, one of each `distinct` value. What stays is
   * moved up in place, in order (a spread of it into splice overflowed the stack past ~120,000
   * waiting items), and the scan stops once the batch is full.
   */
  private take(queue: Waiting<T, R>[]): Waiting<T, R>[] {
    const { distinct } = this.o;
    if (!distinct) return queue.splice(0, this.max);
    const seen = new Set<string>();
    const batch: Waiting<T, R>[] = [];
    let kept = 0;
    let i = 0;
    for (; i < queue.length && batch.length < this.max; i++) {
      const w = queue[i];
      const value = distinct(w.item);
      if (seen.has(value)) queue[kept++] = w;
      else {
        seen.add(value);
        batch.push(w);
      }
    }
    for (; i < queue.length; i++) queue[kept++] = queue[i];
    queue.length = kept;
    return batch;
  }

  private async flush(batch: Waiting<T, R>[]): Promise<void> {
    if (batch.length > 1) {
      try {
        const results = await this.o.many(batch.map((w) => w.item));
        const undone: Waiting<T, R>[] = [];
        batch.forEach((w, i) => {
          const result = results[i];
          if (result === undefined) undone.push(w);
          else {
            this.batched++;
            w.resolve(result);
          }
        });
        batch = undone;
      } catch (e) {
        if (!this.o.itemFault(e)) throw e;
      }
    }
    for (const w of batch) await Promise.resolve(w.item).then((i) => this.o.one(i)).then(w.resolve, w.reject);
  }
}

/**
 * Which of a Batcher's lanes each item goes to, by a key of its own (a conversation): one lane
 * while it flows, so that whatever arrives together goes together; the next lane for new keys
 * once a lane's call has run for `stuckMs` (a statement waiting on a row lock), so that one stuck
 * conversation holds up only those that were already in its lane. A key keeps its lane while it
 * has items in it, so its items are done in the order they came.
 */
export class Lanes<T, R> {
  private readonly held = new Map<string, { lane: string; items: number }>();
  private readonly names: string[];

  constructor(
    private readonly batcher: Batcher<T, R>,
    count: number,
    private readonly stuckMs: number,
  ) {
    this.names = Array.from({ length: count }, (_, i) => String(i));
  }

  async run(key: string, item: T): Promise<R> {
    let held = this.held.get(key);
    if (!held) this.held.set(key, (held = { lane: this.free(), items: 0 }));
    held.items++;
    try {
      return await this.batcher.run(held.lane, item);
    } finally {
      if (--held.items === 0) this.held.delete(key);
    }
  }

  /** The first lane not stuck; all stuck, the one stuck the shortest. */
  private free(): string {
    const now = Date.now();
    let best = this.names[0];
    let bestFor = Infinity;
    for (const lane of this.names) {
      const busy = this.batcher.busyFor(lane, now);
      if (busy < this.stuckMs) return lane;
      if (busy < bestFor) [best, bestFor] = [lane, busy];
    }
    return best;
  }
}
