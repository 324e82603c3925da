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
    // Through then: a synchronous throw must not leave the key taken with nothing running.
    return Promise.resolve(item).then((i) => this.o.one(i)).finally(() => this.next(key));
  }

  private next(key: string): void {
    const queue = this.waiting.get(key)!;
    if (!queue.length) {
      this.waiting.delete(key);
      return;
    }
    // The queue stays while the batch runs, so what arrives meanwhile waits for the next one.
    const batch = this.take(queue);
    void this.flush(batch)
      .catch((e) => batch.forEach((w) => w.reject(e)))
      .finally(() => this.next(key));
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
