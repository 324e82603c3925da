/**
 * Operations still running, so that stopping waits for them before it closes what they use. A
 * client that goes away does not stop its mutation: a socket closed with 1001 on a deploy, or an
 * HTTP client that gave up, leaves a send that may still commit, and its events must still go out
 * (a retry with the same clientMessageId answers the stored message and publishes nothing).
 */
export class InFlight {
  private running = 0;
  private idle: (() => void) | undefined;

  /** Counts `work` as running until it settles; returns it. */
  track<T>(work: Promise<T>): Promise<T> {
    this.running++;
    return work.finally(() => {
      if (--this.running === 0) this.idle?.();
    });
  }

  get size(): number {
    return this.running;
  }

  /** Resolves once nothing runs, or after `graceMs` (what is left then is cut off by what closes next). */
  async settled(graceMs: number): Promise<void> {
    if (this.running === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.idle = resolve;
      timer = setTimeout(resolve, graceMs);
    });
    clearTimeout(timer);
    this.idle = undefined;
  }
}
