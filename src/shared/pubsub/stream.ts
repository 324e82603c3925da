import type { Hub, Keys, Receiver } from './hub';
import type { Topic, TopicPayloads } from './topics';

/** Where a pushed stream hands its values. */
export interface Sink<R> {
  deliver(value: R): void;
}

/**
 * A subscription's event stream. Besides pulling with next(), a consumer can switch it to
 * `push`: every selected value is then handed over synchronously, in the dispatch, without a
 * promise per value (the fan-out uses this to write one event to thousands of sockets in one pass).
 */
export interface PushIterator<R> extends AsyncIterableIterator<R> {
  push(sink: Sink<R>): void;
}

/** Events a pulled stream holds for a consumer that falls behind; beyond, the oldest go (counted). */
const MAX_QUEUE = 1000;

/** A stream's sink once it has ended. */
const DONE = Symbol('done');

/**
 * One subscription's stream, listening on the hub from its creation until return(). A class
 * rather than closures: an idle server holds one per subscription, thousands of them, so its
 * fields are all it costs (and as few as it needs: before a sink is attached, one field holds
 * either the queued values or the waiting next()).
 */
export class TopicStream<T extends Topic, R> implements PushIterator<R>, Receiver {
  /** Pulled: values not taken yet, or the next() waiting for one. */
  private pending: R[] | ((r: IteratorResult<R>) => void) | undefined = undefined;
  /** Pushed: where every value goes; DONE once returned. */
  private sink: Sink<R> | typeof DONE | undefined = undefined;

  constructor(
    private readonly hub: Hub,
    private readonly topic: T,
    private readonly select: (payload: TopicPayloads[T]) => R | undefined,
    private readonly keys: Keys | undefined,
  ) {
    hub.add(topic, this, keys);
  }

  receive(payload: unknown): void {
    const sink = this.sink;
    if (sink === DONE) return;
    this.hub.evaluations++;
    const value = this.select(payload as TopicPayloads[T]);
    if (value === undefined) return;
    if (sink) return sink.deliver(value);
    const pending = this.pending;
    if (typeof pending === 'function') {
      this.pending = undefined;
      return pending({ value, done: false });
    }
    const queue = pending ?? (this.pending = []);
    if (queue.length >= MAX_QUEUE) {
      queue.shift();
      this.hub.dropped++;
    }
    queue.push(value);
  }

  next(): Promise<IteratorResult<R>> {
    const pending = this.pending;
    if (Array.isArray(pending) && pending.length) return Promise.resolve({ value: pending.shift()!, done: false });
    if (this.sink === DONE) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.pending = resolve));
  }

  return(): Promise<IteratorResult<R>> {
    if (this.sink !== DONE) {
      this.sink = DONE;
      this.hub.off(this.topic, this, this.keys);
      const pending = this.pending;
      this.pending = undefined;
      if (typeof pending === 'function') pending({ value: undefined, done: true });
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(e: unknown): Promise<IteratorResult<R>> {
    void this.return();
    return Promise.reject(e);
  }

  push(sink: Sink<R>): void {
    if (this.sink === DONE) return;
    this.sink = sink;
    const queued = this.pending;
    this.pending = undefined;
    // Pushed from now on: what queued before goes first, and no queue is kept.
    if (Array.isArray(queued)) for (const value of queued) if (!this.ended) sink.deliver(value);
  }

  /** Returned (a value's delivery may end it). */
  private get ended(): boolean {
    return this.sink === DONE;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}
