/** Runs `fn` over `items` with at most `concurrency` calls at once (a resync's reads, say), in order of start. */
export async function eachAtMost<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

/**
 * At most `max` tasks at once on this instance; the rest wait their turn in order, each at most
 * `waitMs`, after which `tooLong()` is thrown for it (it never ran).
 */
export class Gate {
  private running = 0;
  private readonly queue: { go: () => void }[] = [];
  /** The most tasks that ran at once (for tests and metrics). */
  peak = 0;

  constructor(
    private readonly max: number,
    private readonly waitMs: number,
    private readonly tooLong: () => Error,
  ) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.running < this.max) this.running++;
    else await this.turn();
    this.peak = Math.max(this.peak, this.running);
    try {
      return await task();
    } finally {
      // The place passes to the next in line, or is freed.
      const next = this.queue.shift();
      if (next) next.go();
      else this.running--;
    }
  }

  private turn(): Promise<void> {
    return new Promise((resolve, reject) => {
      const entry = {
        go: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      const timer = setTimeout(() => {
        this.queue.splice(this.queue.indexOf(entry), 1);
        reject(this.tooLong());
      }, this.waitMs).unref();
      this.queue.push(entry);
    });
  }
}
