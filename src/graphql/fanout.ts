import {
  createSourceEventStream,
  execute,
  getOperationAST,
  Kind,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLError,
  type GraphQLFormattedError,
} from 'graphql';
import WebSocket from 'ws';
import type { EntityManager } from '@mikro-orm/postgresql';
import { createLoaders, type Loaders } from '../core/loaders';
import type { PushIterator } from '../shared/pubsub/pubsub';
import { textFrame, writeFrame } from './frames';
import type { Context } from './context';

/** What one subscription operation needs to write its own frames. */
export interface OperationTarget {
  id: string;
  socket: WebSocket;
  query: string;
  variables: Record<string, unknown> | null | undefined;
  operationName: string | null | undefined;
}

export type FanoutContext = Context & { operation?: OperationTarget };

/**
 * Root fields whose result is the same for every viewer allowed to receive the event, so
 * one execution serves them all. Others (groupEvent, projectAction) resolve viewer-specific
 * data and are executed once per viewer instead.
 */
const VIEWER_INDEPENDENT = new Set(['messageAdded', 'presenceChanged']);

/**
 * How long one event's writes may hold the event loop before other I/O gets a turn. A fan-out
 * to a few thousand sockets finishes in one pass (what a subscriber's latency wants); a much
 * larger one still lets mutations and heartbeats through every few milliseconds.
 */
const RELEASE_BUDGET_MS = 8;

export interface FanoutStats {
  executions: number;
  deliveries: number;
  slowConsumersClosed: number;
  /** Subscription operations running now, by root field. */
  active: Record<string, number>;
}

export interface FanoutOptions {
  /** A socket with more than this many bytes waiting to be sent is closed with 1013. */
  maxBufferedBytes: number;
  /** Shapes errors as the HTTP path does (codes kept, internals masked). */
  formatError: (e: GraphQLError) => GraphQLFormattedError;
  /** Called once per event and shape, with the seconds from its arrival to its last frame written (a metric). */
  onDelivered?: (seconds: number) => void;
}

/**
 * The `subscribe` graphql-ws calls for subscription operations. graphql-ws still runs the
 * protocol (ids, complete, errors, close codes); what changes is the per-event work:
 * each event is executed once per distinct (document, variables[, viewer]) and serialized
 * once, and every subscriber gets the same pre-built `next` frame written straight to its socket.
 */
export function createFanout(opts: FanoutOptions) {
  // Per event payload object: shape key -> its one execution and the subscribers waiting for it.
  const batches = new WeakMap<object, Map<string, Batch>>();
  // Per shape: the last batch's release, so a shape's frames leave in event order.
  const shapes = new Map<string, Shape>();
  const stats: FanoutStats = { executions: 0, deliveries: 0, slowConsumersClosed: 0, active: {} };

  const serialize = async (args: ExecutionArgs, root: unknown): Promise<string> => {
    stats.executions++;
    const result = (await execute({ ...args, contextValue: executionContext(args.contextValue as Context), rootValue: root })) as ExecutionResult;
    if (!result.errors) return JSON.stringify({ data: result.data });
    return JSON.stringify({ data: result.data, errors: result.errors.map(opts.formatError) });
  };

  /**
   * Writes one pre-built frame; closes a socket whose reader stopped. `frames` caches the encoded
   * frame per operation id within one batch: most clients number their first subscription alike,
   * so one Buffer serves thousands of sockets and ws skips a string-to-bytes copy per socket.
   */
  const deliver = (sub: Subscriber, text: string, frames: Map<string, Frame>): boolean => {
    if (sub.finished) return false;
    const socket = sub.socket;
    if (socket.readyState !== WebSocket.OPEN) {
      sub.stop();
      return false;
    }
    if (socket.bufferedAmount > opts.maxBufferedBytes) {
      // A client that stopped reading can't grow our memory: it reconnects and catches up by query.
      stats.slowConsumersClosed++;
      socket.close(1013, 'Try again later');
      sub.stop();
      return false;
    }
    let frame = frames.get(sub.prefix);
    if (!frame) {
      const payload = Buffer.from(sub.prefix + text + '}');
      frames.set(sub.prefix, (frame = { payload, framed: textFrame(payload) }));
    }
    writeFrame(socket, frame.framed, frame.payload);
    stats.deliveries++;
    return true;
  };

  /**
   * One subscriber's share of an event: joins the event's batch for its shape (executing it if
   * it is the first), and is written to when the batch is released, in one synchronous pass.
   */
  const onEvent = (sub: Subscriber, shape: Shape, args: ExecutionArgs, root: unknown): void => {
    if (sub.finished) return;
    let byShape = root !== null && typeof root === 'object' ? batches.get(root) : undefined;
    if (!byShape && root !== null && typeof root === 'object') batches.set(root, (byShape = new Map()));
    let batch = byShape?.get(shape.key);
    if (!batch) {
      const b: Batch = { waiting: [], since: performance.now() };
      batch = b;
      byShape?.set(shape.key, b);
      const release = async (text: string | undefined, error?: unknown) => {
        const waiting = b.waiting!;
        b.waiting = null;
        b.text = text;
        b.error = error;
        const frames = (b.frames = new Map());
        let sent = 0;
        let sliceStart = performance.now();
        for (let i = 0; i < waiting.length; i++) {
          if ((i & 127) === 127 && performance.now() - sliceStart > RELEASE_BUDGET_MS) {
            await new Promise(setImmediate);
            sliceStart = performance.now();
          }
          if (text === undefined) waiting[i].fail(error);
          else if (deliver(waiting[i], text, frames)) sent++;
        }
        // One observation per event (when its last frame left), not one per socket.
        if (sent) opts.onDelivered?.((performance.now() - b.since) / 1000);
      };
      shape.tail = Promise.all([serialize(args, root), shape.tail]).then(
        ([text]) => release(text),
        (e) => release(undefined, e),
      );
    }
    if (batch.waiting) batch.waiting.push(sub);
    else if (batch.text !== undefined) deliver(sub, batch.text, batch.frames!);
    else sub.fail(batch.error);
  };

  async function subscribe(args: ExecutionArgs): Promise<AsyncIterableIterator<never> | ExecutionResult> {
    const ctx = args.contextValue as FanoutContext;
    const target = ctx.operation;
    const source = await createSourceEventStream(args);
    if (!target || !(Symbol.asyncIterator in (source as object))) return source as ExecutionResult;
    const events = source as AsyncIterableIterator<unknown> & Partial<PushIterator<unknown>>;
    const op = getOperationAST(args.document, args.operationName);
    const first = op?.selectionSet.selections[0];
    const rootField = first?.kind === Kind.FIELD ? first.name.value : '';
    const scope = VIEWER_INDEPENDENT.has(rootField) && op!.selectionSet.selections.length === 1 ? '*' : (ctx.viewer?.userId ?? '');
    const key = `${scope}\u0000${target.operationName ?? ''}\u0000${target.query}\u0000${JSON.stringify(target.variables ?? null)}`;
    let shape = shapes.get(key);
    if (!shape) shapes.set(key, (shape = { key, refs: 0, tail: Promise.resolve() }));
    shape.refs++;
    // Held for the life of the subscription: keep only what writing needs (the text of the
    // operation is in the shared shape key; its raw frame can be collected).
    const shared = shape;
    ctx.operation = undefined;
    stats.active[rootField] = (stats.active[rootField] ?? 0) + 1;

    let settle: ((r: IteratorResult<never>) => void) | undefined;
    let reject: ((e: unknown) => void) | undefined;
    const ended = new Promise<IteratorResult<never>>((resolve, rej) => ((settle = resolve), (reject = rej)));
    ended.catch(() => undefined);
    const end = () => {
      if (sub.finished) return false;
      sub.finished = true;
      stats.active[rootField]--;
      if (--shared.refs === 0) shapes.delete(shared.key);
      void events.return?.();
      return true;
    };
    const sub: Subscriber = {
      socket: target.socket,
      prefix: `{"id":${JSON.stringify(target.id)},"type":"next","payload":`,
      finished: false,
      stop: () => void (end() && settle!({ value: undefined as never, done: true })),
      fail: (e) => void (end() && reject!(e)),
    };

    if (typeof events.push === 'function') {
      // Our PubSub's streams hand events over synchronously: no promise per subscriber per event.
      events.push((root) => onEvent(sub, shared, args, root));
    } else {
      void (async () => {
        try {
          for await (const root of events) {
            if (sub.finished) break;
            onEvent(sub, shared, args, root);
          }
          sub.stop();
        } catch (e) {
          sub.fail(e);
        }
      })();
    }

    // graphql-ws iterates this to learn when the operation ends; it never yields a value itself.
    const iterator: AsyncIterableIterator<never> = {
      next: () => ended,
      return: () => {
        sub.stop();
        return Promise.resolve({ value: undefined as never, done: true });
      },
      throw: (e) => {
        sub.stop();
        return Promise.reject(e);
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    return iterator;
  }

  return { subscribe, stats };
}

/**
 * The context of one execution: the subscriber's, with one EntityManager fork and one set of
 * loaders shared by all its resolvers (so `sender` and `recipient` load in one query), and
 * fresh for the next event (nothing cached from an earlier one).
 */
function executionContext(ctx: Context): Context {
  let em: EntityManager | undefined;
  let loaders: Loaders | undefined;
  const fork = () => (em ??= ctx.services.orm.em.fork() as EntityManager);
  return Object.create(ctx, {
    em: { get: fork },
    loaders: { get: () => (loaders ??= createLoaders(fork(), ctx.services.presence)) },
  }) as Context;
}

/** One `next` message, as bytes and as a ready WebSocket frame. */
interface Frame {
  payload: Buffer;
  framed: Buffer | undefined;
}

/** One subscription operation as the fan-out writes to it. */
interface Subscriber {
  socket: WebSocket;
  /** `{"id":<id>,"type":"next","payload":` */
  prefix: string;
  finished: boolean;
  /** Ends the operation normally (graphql-ws sends complete if the client is still there). */
  stop(): void;
  /** Ends it with an error (graphql-ws reports it). */
  fail(e: unknown): void;
}

/** Subscribers that share a document, variables (and viewer, for viewer-specific fields). */
interface Shape {
  key: string;
  refs: number;
  tail: Promise<unknown>;
}

/** One event for one shape: executed and serialized once, then written to every waiting subscriber. */
interface Batch {
  /** Subscribers to write to on release; null once released. */
  waiting: Subscriber[] | null;
  text?: string;
  /** Encoded frames by operation-id prefix, built on release. */
  frames?: Map<string, Frame>;
  error?: unknown;
  since: number;
}
