import {
  BREAK,
  createSourceEventStream,
  execute,
  getOperationAST,
  Kind,
  TypeInfo,
  visit,
  visitWithTypeInfo,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLError,
  type GraphQLFormattedError,
  type OperationDefinitionNode,
} from 'graphql';
import { getVariableValues } from 'graphql/execution/values';
import type { CompiledQuery } from 'graphql-jit';
import type { EntityManager } from '@mikro-orm/postgresql';
import { createLoaders, type Loaders } from '../modules/loaders';
import type { PushIterator, Sink } from '../shared/pubsub/pubsub';
import type { Context } from '../modules/context';
import { compile, runCompiled } from './executor';

/**
 * Where a subscriber's frames go: a WebSocket (graphql-transport-ws) or an SSE response
 * (graphql-sse). A transport implements it on its class's prototype, so it adds nothing per
 * connection.
 */
export interface FrameSink<F = unknown> {
  /**
   * This transport's `next` frame for operation `id` around a serialized result. Built once per
   * event for every sink with the same encoder and id, then written to each.
   */
  readonly encodeNext: (id: string, result: string) => F;
  /** Still accepting frames. */
  readonly writable: boolean;
  /** Bytes written to it and not yet sent. */
  readonly bufferedBytes: number;
  write(frame: F): void;
  /** Several frames at once, in one write where the transport can (else each is written). */
  writeMany?(frames: F[]): void;
  /** Its reader stopped reading: ends it (a WebSocket closes with 1013). */
  drop(): void;
  /** One of its operations ended on the server's side: tell the client (complete, or error when `error` is set). */
  ended(op: FanoutOperation, error?: unknown): void;
}

/** What one subscription operation needs to write its own frames. */
export interface OperationTarget {
  id: string;
  sink: FrameSink;
  query: string;
  variables: Record<string, unknown> | null | undefined;
  operationName: string | null | undefined;
}

/** A running subscription operation, as its connection holds it. */
export interface FanoutOperation {
  readonly id: string;
  /** Ended already (on the server's side, or stopped). */
  readonly finished: boolean;
  /** Why it ended, when it failed. */
  readonly failure: unknown;
  /** Ends it quietly: the client completed it or went away. */
  stop(): void;
}

/**
 * Root fields whose result is the same for every viewer allowed to receive the event, so
 * one execution serves them all. Others (groupEvent, projectAction) resolve viewer-specific
 * data and are executed once per viewer instead.
 */
const VIEWER_INDEPENDENT = new Set(['messageAdded', 'presenceChanged', 'messageEvent', 'typing', 'readReceipt']);

/** Fields resolved for the viewer (visibility, the viewer's role): a document that reaches one is executed per viewer. */
const VIEWER_SPECIFIC_FIELDS = new Set(['Message.group', 'Message.project', 'ReactionCount.reactedByMe']);

/** Whether one execution of the operation serves every viewer its events reach. */
function sharedAcrossViewers(args: ExecutionArgs, op: OperationDefinitionNode): boolean {
  const first = op.selectionSet.selections[0];
  if (op.selectionSet.selections.length !== 1 || first?.kind !== Kind.FIELD || !VIEWER_INDEPENDENT.has(first.name.value)) return false;
  const types = new TypeInfo(args.schema);
  let shared = true;
  // The whole document, fragments included: whatever the operation can reach.
  visit(
    args.document,
    visitWithTypeInfo(types, {
      Field(node) {
        if (!VIEWER_SPECIFIC_FIELDS.has(`${types.getParentType()?.name}.${node.name.value}`)) return undefined;
        shared = false;
        return BREAK;
      },
    }),
  );
  return shared;
}

/**
 * Root fields whose frames wait for the event loop's turn to end (setImmediate): everything else
 * the turn brought (a message's own fan-out above all) is written first, and a burst of them (the
 * typing store answers a batch of typists at once) goes out in slices, each socket's frames in one
 * write. Typing is a hint that lives seconds; a message is what a user waits for.
 */
const DEFERRED = new Set(['typing']);

/** How long one slice of deferred writes may hold the event loop. */
const DEFERRED_BUDGET_MS = 1;

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
  /** A sink with more than this many bytes waiting to be sent is dropped (a WebSocket closes with 1013). */
  maxBufferedBytes: number;
  /** Shapes errors as the HTTP path does (codes kept, internals masked). */
  formatError: (e: GraphQLError) => GraphQLFormattedError;
  /** Called once per event and shape, with the seconds from its arrival to its last frame written (a metric). */
  onDelivered?: (seconds: number) => void;
}

/**
 * Runs subscription operations for every transport: each event is executed once per distinct
 * (document, variables[, viewer]) and serialized once, and every subscriber gets its
 * transport's pre-built `next` frame written straight to its sink. An idle subscription costs one
 * Subscriber and its stream (no closures, promises or iterators of its own), since a server
 * holds thousands of them.
 */
export function createFanout(opts: FanoutOptions) {
  // Per event payload object: shape -> viewer ('' unless the shape is viewer-specific) -> its one
  // execution and the subscribers waiting for it.
  const batches = new WeakMap<object, Map<Shape, Map<string, Batch<Subscriber>>>>();
  // Subscribers by document and variables.
  const shapes = new Map<string, Shape>();
  const stats: FanoutStats = { executions: 0, deliveries: 0, slowConsumersClosed: 0, active: {} };
  /** Deferred frames by sink, in the order they were released; written by writeDeferred. */
  const deferred = new Map<FrameSink, { sub: Subscriber; frame: unknown }[]>();
  let deferredScheduled = false;

  const writeDeferred = (): void => {
    const started = performance.now();
    for (const [sink, items] of deferred) {
      deferred.delete(sink);
      const frames: unknown[] = [];
      for (const item of items) if (!item.sub.finished) frames.push(item.frame);
      if (!frames.length || !sink.writable) continue;
      if (frames.length > 1 && sink.writeMany) sink.writeMany(frames);
      else for (const f of frames) sink.write(f);
      stats.deliveries += frames.length;
      if (performance.now() - started > DEFERRED_BUDGET_MS) break;
    }
    if (deferred.size) setImmediate(writeDeferred);
    else deferredScheduled = false;
  };

  /** One subscription operation as the fan-out writes to it. */
  class Subscriber implements FanoutOperation, Sink<unknown> {
    finished = false;
    failure: unknown = undefined;
    constructor(
      readonly id: string,
      readonly sink: FrameSink,
      /** Its connection's context (shared by the connection's operations). */
      readonly context: Context,
      readonly shape: Shape,
      readonly stream: AsyncIterableIterator<unknown>,
    ) {}

    deliver(root: unknown): void {
      onEvent(this, root);
    }

    /** Releases what it holds; false when it had already ended. */
    private end(): boolean {
      if (this.finished) return false;
      this.finished = true;
      stats.active[this.shape.rootField]--;
      if (--this.shape.refs === 0) shapes.delete(this.shape.key);
      void this.stream.return?.();
      return true;
    }

    stop(): void {
      this.end();
    }

    /**
     * Ends from this side: its sink stopped reading or closed (no error), or its execution
     * failed. The sink's connection forgets it and tells the client.
     */
    close(error?: unknown): void {
      if (!this.end()) return;
      this.failure = error;
      this.sink.ended(this, error);
    }
  }

  const serialize = async (shape: Shape, context: Context, root: unknown): Promise<string> => {
    stats.executions++;
    const args = shape.args;
    const contextValue = executionContext(context);
    // Compiled on the shape's first event: most of an event's cost was graphql-js's per-field
    // bookkeeping (a small message: ~45 µs of ~60 µs executing; bench:fanout's many rooms).
    if (shape.plan === undefined) shape.plan = planOf(args);
    const compiled = shape.plan && (await runCompiled(shape.plan.compiled, args.document, shape.plan.operation, root, contextValue, shape.plan.variables));
    const result = compiled || ((await execute({ ...args, contextValue, rootValue: root })) as ExecutionResult);
    if (!result.errors) return JSON.stringify({ data: result.data });
    return JSON.stringify({ data: result.data, errors: result.errors.map(opts.formatError) });
  };

  /**
   * Writes one pre-built frame; drops a sink whose reader stopped. `frames` caches the frame per
   * encoder and operation id within one batch: most clients number their first subscription
   * alike, so one Buffer serves thousands of sockets (and ws skips a string-to-bytes copy per
   * socket), and every SSE stream of the batch shares one.
   */
  const deliver = (sub: Subscriber, text: string, frames: Frames): boolean => {
    if (sub.finished) return false;
    // A token that expired since the last expiry sweep gets nothing more; that sweep closes its connection.
    const expiresAt = sub.context.viewer?.expiresAt;
    if (expiresAt !== undefined && expiresAt <= Date.now()) return false;
    const sink = sub.sink;
    if (!sink.writable) {
      sub.close();
      return false;
    }
    if (sink.bufferedBytes > opts.maxBufferedBytes) {
      // A client that stopped reading can't grow our memory: it reconnects and catches up by query.
      stats.slowConsumersClosed++;
      sink.drop();
      sub.close();
      return false;
    }
    const encode = sink.encodeNext;
    let byId = frames.get(encode);
    if (!byId) frames.set(encode, (byId = new Map()));
    let frame = byId.get(sub.id);
    if (frame === undefined) byId.set(sub.id, (frame = encode(sub.id, text)));
    if (sub.shape.deferred) {
      const queued = deferred.get(sink);
      if (queued) queued.push({ sub, frame });
      else deferred.set(sink, [{ sub, frame }]);
      if (!deferredScheduled) {
        deferredScheduled = true;
        setImmediate(writeDeferred);
      }
      return true;
    }
    sink.write(frame);
    stats.deliveries++;
    return true;
  };

  /**
   * One subscriber's share of an event: joins the event's batch for its shape (executing it if
   * it is the first), and is written to when the batch is released, in one synchronous pass.
   */
  const onEvent = (sub: Subscriber, root: unknown): void => {
    if (sub.finished) return;
    const shape = sub.shape;
    let byShape = root !== null && typeof root === 'object' ? batches.get(root) : undefined;
    if (!byShape && root !== null && typeof root === 'object') batches.set(root, (byShape = new Map()));
    let byViewer = byShape?.get(shape);
    if (!byViewer && byShape) byShape.set(shape, (byViewer = new Map()));
    // Viewer-specific shapes batch per viewer.
    const viewer = shape.perViewer ? (sub.context.viewer?.userId ?? '') : '';
    let batch = byViewer?.get(viewer);
    if (!batch) {
      const b: Batch<Subscriber> = { waiting: [], since: performance.now() };
      batch = b;
      byViewer?.set(viewer, b);
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
          if (text === undefined) waiting[i].close(error);
          else if (deliver(waiting[i], text, frames)) sent++;
        }
        // One observation per event (when its last frame left), not one per socket.
        if (sent) opts.onDelivered?.((performance.now() - b.since) / 1000);
      };
      // Executed as the subscriber that got here first: one the event's filter let through.
      // Released after the previous event's batch for the same viewers, so frames keep event order.
      const tail = Promise.all([serialize(shape, sub.context, root), shape.tails.get(viewer)]).then(
        ([text]) => release(text),
        (e) => release(undefined, e),
      );
      shape.tails.set(viewer, tail);
      // Kept only while in flight: an idle shape holds no per-viewer state.
      const settled = () => void (shape.tails.get(viewer) === tail && shape.tails.delete(viewer));
      tail.then(settled, settled);
    }
    if (batch.waiting) batch.waiting.push(sub);
    else if (batch.text !== undefined) deliver(sub, batch.text, batch.frames!);
    else sub.close(batch.error);
  };

  /**
   * Starts a subscription operation. Returns the running operation, or the result to answer
   * with when its event stream could not be created (an error from the field's subscribe).
   */
  async function subscribe(args: ExecutionArgs, op: OperationDefinitionNode, target: OperationTarget): Promise<FanoutOperation | ExecutionResult> {
    const source = await createSourceEventStream(args);
    if (!(Symbol.asyncIterator in (source as object))) return source as ExecutionResult;
    const events = source as AsyncIterableIterator<unknown> & Partial<PushIterator<unknown>>;
    const first = op?.selectionSet.selections[0];
    const rootField = first?.kind === Kind.FIELD ? first.name.value : '';
    const context = args.contextValue as Context;
    // The origin too: results carry absolute links (Attachment.url) to the host each client reached.
    const key = `${context.origin ?? ''}\u0000${target.operationName ?? ''}\u0000${target.query}\u0000${JSON.stringify(target.variables ?? null)}`;
    let shape = shapes.get(key);
    if (!shape) {
      const perViewer = !sharedAcrossViewers(args, op);
      shapes.set(key, (shape = { key, rootField, perViewer, deferred: DEFERRED.has(rootField), args: { ...args, contextValue: undefined }, refs: 0, tails: new Map(), plan: undefined }));
    }
    shape.refs++;
    stats.active[rootField] = (stats.active[rootField] ?? 0) + 1;
    const sub = new Subscriber(target.id, target.sink, context, shape, events);

    if (typeof events.push === 'function') {
      // Our PubSub's streams hand events over synchronously: no promise per subscriber per event.
      events.push(sub);
    } else {
      void (async () => {
        try {
          for await (const root of events) {
            if (sub.finished) break;
            onEvent(sub, root);
          }
          sub.close();
        } catch (e) {
          sub.close(e);
        }
      })();
    }
    return sub;
  }

  return { subscribe, stats };
}

export type Fanout = ReturnType<typeof createFanout>;

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
    loaders: { get: () => (loaders ??= createLoaders(fork(), ctx.services, ctx.viewer?.userId ?? null)) },
  }) as Context;
}

/** One event's `next` frames, by transport encoder and operation id. */
type Frames = Map<FrameSink['encodeNext'], Map<string, unknown>>;

/** Subscribers that share a document and variables. */
interface Shape {
  key: string;
  rootField: string;
  /** Executed once per viewer per event rather than once for all. */
  perViewer: boolean;
  /** Its frames wait for the event loop's turn to end (see DEFERRED). */
  deferred: boolean;
  /** Document and variables, as the first subscriber sent them (the context comes with each event). */
  args: ExecutionArgs;
  refs: number;
  /** The last batch's release per viewer ('' for all, when not per viewer), while one is in flight. */
  tails: Map<string, Promise<unknown>>;
  /** Its compiled execution (undefined until the first event; null: graphql-js executes it). */
  plan: Plan | null | undefined;
}

/** A shape's operation compiled by graphql-jit, with its variables coerced once (they are the shape's). */
interface Plan {
  compiled: CompiledQuery;
  operation: OperationDefinitionNode;
  variables: Record<string, unknown>;
}

function planOf(args: ExecutionArgs): Plan | null {
  const operation = getOperationAST(args.document, args.operationName);
  if (!operation) return null;
  const compiled = compile(args.schema, args.document, args.operationName);
  if (!compiled) return null;
  // Coerced by graphql-js, as the HTTP executor does (graphql-jit's own coercion skips the schema's ID scalar).
  const coerced = getVariableValues(args.schema, operation.variableDefinitions ?? [], (args.variableValues ?? {}) as Record<string, unknown>, { maxErrors: 50 });
  return coerced.errors ? null : { compiled, operation, variables: coerced.coerced };
}

/** One event for one shape: executed and serialized once, then written to every waiting subscriber. */
interface Batch<S> {
  /** Subscribers to write to on release; null once released. */
  waiting: S[] | null;
  text?: string;
  /** Encoded frames, built on release. */
  frames?: Frames;
  error?: unknown;
  since: number;
}
