interface Waiting<T, R> {
  item: T;
  resolve(result: R): void;
  reject(error: unknown): void;
}

export interface BatcherOptions<T, R> {
  /** Does one item. */
  one(item: T): Promise<R>;
  /** Does several items at once, answering each in order; if it throws, each is done alone with `one`. */
  many(items: T[]): Promise<R[]>;
  /** The most items one call of `many` takes. @default 64 */
  max?: number;
}

/**
 * Group commit, per key: an item goes at once when nothing of its key is running (no wait is
 * added at low load); items that arrive while one runs wait for it, then go together through
 * `many`, up to `max` at a time. Each caller is answered only once the call holding its item is
 * done. An item that `many` could not do (one bad item fails the whole statement) is done again
 * alone, so its failure is its own caller's and no one else's.
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
    return this.o.one(item).finally(() => this.next(key));
  }

  private next(key: string): void {
    const queue = this.waiting.get(key)!;
    if (!queue.length) {
      this.waiting.delete(key);
      return;
    }
    // The queue stays while the batch runs, so what arrives meanwhile waits for the next one.
    void this.flush(queue.splice(0, this.max)).finally(() => this.next(key));
  }

  private async flush(batch: Waiting<T, R>[]): Promise<void> {
    if (batch.length > 1) {
      let results: R[] | undefined;
      try {
        results = await this.o.many(batch.map((w) => w.item));
      } catch {
        // Nothing of it was done: each goes alone below, and answers for itself.
      }
      if (results) {
        this.batched += batch.length;
        // Done, so never done again: a short answer is a fault of `many`, told to those it left out.
        batch.forEach((w, i) => (i < results.length ? w.resolve(results[i]) : w.reject(new Error(`a batch of ${batch.length} answered ${results.length}`))));
        return;
      }
    }
    for (const w of batch) await this.o.one(w.item).then(w.resolve, w.reject);
  }
}
