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

/**
 * Bytes that holders take at once on this instance, `max` in all and `perHolder` takings each:
 * the rest wait in order of arrival, each at most `waitMs`, after which `tooLong()` is thrown for
 * it. A waiter its holder's count holds back lets the ones behind it by; one whose bytes don't fit
 * yet holds everyone back, so that a large taking is not passed for good by small ones.
 */
export class BytesInFlight {
  private used = 0;
  private readonly held = new Map<string, number>();
  private readonly queue: { holder: string; bytes: number; go: () => void }[] = [];

  constructor(
    readonly max: number,
    private readonly perHolder: number,
    private readonly waitMs: number,
    private readonly tooLong: () => Error,
  ) {}

  /**
   * Takes `bytes` (at most `max`) for `holder`: resolves with their release, to call once. Aborted
   * while it waits (its client gone), it leaves the line and rejects with the signal's reason.
   */
  async take(holder: string, bytes: number, signal?: AbortSignal): Promise<() => void> {
    signal?.throwIfAborted();
    const n = Math.min(bytes, this.max);
    if (!this.queue.length && this.fits(holder, n)) this.grant(holder, n);
    else {
      const turn = this.turn(holder, n, signal);
      // Those in line may all be held back by their holders' counts: this one may go by them now.
      this.next();
      await turn;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= n;
      const left = this.held.get(holder)! - 1;
      if (left) this.held.set(holder, left);
      else this.held.delete(holder);
      this.next();
    };
  }

  /** Bytes taken now (for tests and metrics). */
  get taken(): number {
    return this.used;
  }

  private fits(holder: string, n: number): boolean {
    return this.used + n <= this.max && (this.held.get(holder) ?? 0) < this.perHolder;
  }

  private grant(holder: string, n: number): void {
    this.used += n;
    this.held.set(holder, (this.held.get(holder) ?? 0) + 1);
  }

  private next(): void {
    for (let i = 0; i < this.queue.length; ) {
      const w = this.queue[i];
      if ((this.held.get(w.holder) ?? 0) >= this.perHolder) {
        i++;
        continue;
      }
      if (this.used + w.bytes > this.max) return;
      this.queue.splice(i, 1);
      this.grant(w.holder, w.bytes);
      w.go();
    }
  }

  private turn(holder: string, bytes: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const leave = (why: unknown) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', aborted);
        this.queue.splice(this.queue.indexOf(entry), 1);
        // Its leaving may let those it held back by.
        this.next();
        reject(why);
      };
      const aborted = () => leave(signal!.reason);
      const entry = {
        holder,
        bytes,
        go: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', aborted);
          resolve();
        },
      };
      const timer = setTimeout(() => leave(this.tooLong()), this.waitMs).unref();
      signal?.addEventListener('abort', aborted, { once: true });
      this.queue.push(entry);
    });
  }
}
