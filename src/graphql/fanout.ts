import {
  BREAK,
  createSourceEventStream,
  Kind,
  TypeInfo,
  visit,
  visitWithTypeInfo,
  type ExecutionResult,
  GraphQLError,
  type GraphQLFormattedError,
  type GraphQLSchema,
} from 'graphql';
import type { EntityManager } from '@mikro-orm/postgresql';
import { createLoaders, type Loaders } from '../modules/loaders';
import type { PushIterator, Sink } from '../shared/pubsub/pubsub';
import type { Context } from '../modules/context';
import { isPromise, type OperationPipeline, type PreparedOperation } from './operation';

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
export const VIEWER_INDEPENDENT: ReadonlySet<string> = new Set(['messageAdded', 'presenceChanged', 'messageEvent', 'typing', 'readReceipt']);

/**
 * Fields resolved for the viewer (visibility, the viewer's role, their own settings): a document
 * that reaches one is executed per viewer. A user's presence is one: contacts-only visibility, a
 * HIDDEN user reading ONLINE to themselves, a blocked user OFFLINE (a review: `sender { status }`
 * ran once for a group showed every member the first runner's view). test/fanout.test.ts fails
 * when a field a shared subscription reaches is in neither this list nor its own.
 */
export const VIEWER_SPECIFIC_FIELDS: ReadonlySet<string> = new Set([
  'Message.group',
  'Message.project',
  'Message.hasUnreadReplies',
  'ReactionCount.reactedByMe',
  'User.status',
  'User.lastSeenAt',
  'User.notificationLevel',
  'User.presenceVisibility',
]);

/** Whether the document selects one of `fields` (`Type.field`) anywhere, fragments included: whatever the operation can reach. */
function selectsAny(schema: GraphQLSchema, document: PreparedOperation['document'], fields: ReadonlySet<string>): boolean {
  const types = new TypeInfo(schema);
  let found = false;
  visit(
    document,
    visitWithTypeInfo(types, {
      Field(node) {
        if (!fields.has(`${types.getParentType()?.name}.${node.name.value}`)) return undefined;
        found = true;
        return BREAK;
      },
    }),
  );
  return found;
}

/** Whether one execution of the operation serves every viewer its events reach. */
function sharedAcrossViewers(schema: GraphQLSchema, { document, operation }: PreparedOperation): boolean {
  const first = operation.selectionSet.selections[0];
  if (operation.selectionSet.selections.length !== 1 || first?.kind !== Kind.FIELD || !VIEWER_INDEPENDENT.has(first.name.value)) return false;
  return !selectsAny(schema, document, VIEWER_SPECIFIC_FIELDS);
}

/** Lists and objects in lists and objects a subscription's variables may hold (the schema's inputs hold two or three). */
const MAX_VARIABLE_DEPTH = 32;

/** Whether `value` holds lists or objects deeper than MAX_VARIABLE_DEPTH (walked without recursion). */
function nestsTooDeep(value: unknown): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  for (let top = stack.pop(); top; top = stack.pop()) {
    const [v, depth] = top;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= MAX_VARIABLE_DEPTH) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

/**
 * The variables that key a subscription's shape: those its operation declares (the others change
 * nothing it does), as JSON; null when they nest deeper than MAX_VARIABLE_DEPTH. JSON.stringify of
 * all of them overflowed the stack on 8,000 brackets of an unused variable (a 16 KB frame), and the
 * socket closed 4500, its other subscriptions with it (an outside probe).
 */
function variablesKey(operation: PreparedOperation['operation'], variables: PreparedOperation['variableValues']): string | null {
  const defs = operation.variableDefinitions;
  if (!variables || !defs?.length) return 'null';
  const declared: Record<string, unknown> = Object.create(null);
  for (const d of defs) if (Object.hasOwn(variables, d.variable.name.value)) declared[d.variable.name.value] = variables[d.variable.name.value];
  return Object.values(declared).some(nestsTooDeep) ? null : JSON.stringify(declared);
}

/**
 * Subscriptions one user may run on an instance whose document asks for Attachment.base64. Each
 * distinct document is executed per event, and each execution copies the file into its frame: a
 * client's few documents, not the 20 sockets x 50 shapes a user may hold (1,000 copies an event).
 */
export const FILE_SUBSCRIPTIONS_PER_USER = 4;

const FILE_BYTES: ReadonlySet<string> = new Set(['Attachment.base64']);

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
  schema: GraphQLSchema;
  /** Runs each event's execution (on the subscription's compiled plan). */
  operations: OperationPipeline;
  /** A sink with more than this many bytes waiting to be sent is dropped (a WebSocket closes with 1013). */
  maxBufferedBytes: number;
  /** Shapes errors as the HTTP path does (codes kept, internals masked). */
  formatError: (e: GraphQLError) => GraphQLFormattedError;
  /** Called once per event and shape, with the seconds from its arrival to its last frame written (a metric). */
  onDelivered?: (seconds: number) => void;
  /** Called for each subscriber closed for not reading (its bytes waiting): an overload an operator must see. */
  onSlowConsumer?: (bufferedBytes: number) => void;
}

/** Frames released for later (see DEFERRED), by sink in the order they were released, written in slices. */
class DeferredWrites {
  private readonly bySink = new Map<FrameSink, { sub: Subscriber; frame: unknown }[]>();
  private scheduled = false;

  constructor(private readonly stats: FanoutStats) {}

  add(sink: FrameSink, sub: Subscriber, frame: unknown): void {
    const queued = this.bySink.get(sink);
    if (queued) queued.push({ sub, frame });
    else this.bySink.set(sink, [{ sub, frame }]);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.write);
    }
  }

  /** Each sink's frames in one write, for at most DEFERRED_BUDGET_MS; the rest on the next turn. */
  private readonly write = (): void => {
    const started = performance.now();
    for (const [sink, items] of this.bySink) {
      this.bySink.delete(sink);
      const frames: unknown[] = [];
      for (const item of items) if (!item.sub.finished) frames.push(item.frame);
      if (!frames.length || !sink.writable) continue;
      if (frames.length > 1 && sink.writeMany) sink.writeMany(frames);
      else for (const f of frames) sink.write(f);
      this.stats.deliveries += frames.length;
      if (performance.now() - started > DEFERRED_BUDGET_MS) break;
    }
    if (this.bySink.size) setImmediate(this.write);
    else this.scheduled = false;
  };
}

/** One subscription operation as the fan-out writes to it. */
class Subscriber implements FanoutOperation, Sink<unknown> {
  finished = false;
  failure: unknown = undefined;
  constructor(
    private readonly fanout: Fanout,
    readonly id: string,
    readonly sink: FrameSink,
    /** Its connection's context (shared by the connection's operations). */
    readonly context: Context,
    readonly shape: Shape,
    readonly stream: AsyncIterableIterator<unknown>,
  ) {}

  deliver(root: unknown): void {
    this.fanout.onEvent(this, root);
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

  /** Releases what it holds; false when it had already ended. */
  private end(): boolean {
    if (this.finished) return false;
    this.finished = true;
    this.fanout.forget(this);
    void this.stream.return?.();
    return true;
  }
}

/**
 * Runs subscription operations for every transport: each event is executed once per distinct
 * (document, variables[, viewer]) and serialized once, and every subscriber gets its
 * transport's pre-built `next` frame written straight to its sink. An idle subscription costs one
 * Subscriber and its stream (no closures, promises or iterators of its own), since a server
 * holds thousands of them.
 *
 * An event whose execution answers synchronously (every resolver did: the usual event, whose
 * payload carries what it shows) is written to each subscriber as the pub/sub hands it over, in
 * the dispatch itself: no promise, list or microtask per event. One that waits for a resolver, or
 * follows an event still in flight for the same subscribers, is written when it resolves, after
 * that one, so each subscriber gets its events in order.
 */
export class Fanout {
  readonly stats: FanoutStats = { executions: 0, deliveries: 0, slowConsumersClosed: 0, active: {} };
  // The event being dispatched and its deliveries by shape (and viewer, for a viewer-specific shape).
  // The pub/sub hands one event to all its subscribers in one synchronous pass, so one slot serves:
  // a WeakMap per payload cost two Maps and an ephemeron for the GC per event.
  private event: object | undefined = undefined;
  private readonly deliveries = new Map<Shape, Delivery<Subscriber> | Map<string, Delivery<Subscriber>>>();
  // The last shared shape's delivery of that event: an event's subscribers mostly share one shape.
  private lastShape: Shape | undefined = undefined;
  private lastDelivery: Delivery<Subscriber> | undefined = undefined;
  // Deliveries written synchronously this turn, whose latency is observed once the turn's pass is over.
  private written: Delivery<Subscriber>[] = [];
  // Subscribers by origin, document and variables.
  private readonly shapes = new Map<string, Shape>();
  // Running subscriptions that ask for Attachment.base64, by user.
  private readonly fileSubscriptions = new Map<string, number>();
  private readonly deferred: DeferredWrites;

  constructor(private readonly opts: FanoutOptions) {
    this.deferred = new DeferredWrites(this.stats);
  }

  /**
   * Starts a subscription operation. Returns the running operation, or the result to answer
   * with when its event stream could not be created (an error from the field's subscribe).
   */
  async subscribe(prepared: PreparedOperation, context: Context, target: OperationTarget): Promise<FanoutOperation | ExecutionResult> {
    const { document, operationName, variableValues, operation } = prepared;
    // The origin too: results carry absolute links (Attachment.url) to the host each client reached.
    const variables = variablesKey(operation, target.variables);
    if (variables === null) return { errors: [new GraphQLError(`The variables nest too deeply (at most ${MAX_VARIABLE_DEPTH} lists or objects in one another).`, { extensions: { code: 'BAD_USER_INPUT', field: 'variables' } })] };
    const key = `${context.origin ?? ''}\u0000${target.operationName ?? ''}\u0000${target.query}\u0000${variables}`;
    const asksForFiles = this.shapes.get(key)?.asksForFiles ?? selectsAny(this.opts.schema, prepared.document, FILE_BYTES);
    const userId = context.viewer?.userId;
    if (asksForFiles && userId !== undefined && (this.fileSubscriptions.get(userId) ?? 0) >= FILE_SUBSCRIPTIONS_PER_USER) {
      const message = `At most ${FILE_SUBSCRIPTIONS_PER_USER} of a user's subscriptions can ask for Attachment.base64 at once; ask for url instead.`;
      return { errors: [new GraphQLError(message, { extensions: { code: 'RATE_LIMITED', reason: 'TOO_MANY_FILE_SUBSCRIPTIONS' } })] };
    }
    // Counted before the stream is made: subscriptions arriving together each see the others.
    const counted = asksForFiles && userId !== undefined;
    if (counted) this.countFiles(userId, 1);
    let source: Awaited<ReturnType<typeof createSourceEventStream>>;
    try {
      source = await createSourceEventStream({ schema: this.opts.schema, document, operationName, variableValues, contextValue: context });
    } catch (e) {
      if (counted) this.countFiles(userId, -1);
      throw e;
    }
    if (!(Symbol.asyncIterator in (source as object))) {
      if (counted) this.countFiles(userId, -1);
      return source as ExecutionResult;
    }
    const events = source as AsyncIterableIterator<unknown> & Partial<PushIterator<unknown>>;
    const first = operation.selectionSet.selections[0];
    const rootField = first?.kind === Kind.FIELD ? first.name.value : '';
    let shape = this.shapes.get(key);
    if (!shape) {
      const perViewer = !sharedAcrossViewers(this.opts.schema, prepared);
      this.shapes.set(key, (shape = { key, rootField, perViewer, asksForFiles, deferred: DEFERRED.has(rootField), prepared, refs: 0, tails: new Map() }));
    }
    shape.refs++;
    this.stats.active[rootField] = (this.stats.active[rootField] ?? 0) + 1;
    const sub = new Subscriber(this, target.id, target.sink, context, shape, events);
    // Our PubSub's streams hand events over synchronously: no promise per subscriber per event.
    if (typeof events.push === 'function') events.push(sub);
    else void this.iterate(sub, events);
    return sub;
  }

  /** One subscriber's share of an event: written now when its delivery's text is ready, else when it is. */
  onEvent(sub: Subscriber, root: unknown): void {
    if (sub.finished) return;
    const d = this.deliveryOf(sub, root);
    if (d.waiting) d.waiting.push(sub);
    else if (d.text === undefined) sub.close(d.error);
    else if (this.deliver(sub, d) && (d.sent & 127) === 0 && performance.now() - d.since > RELEASE_BUDGET_MS) {
      // A large fan-out written in the dispatch has held the event loop long enough: the rest of
      // it is written in slices, and this shape's next events for these viewers after it.
      d.waiting = [];
      this.queue(sub.shape, deliveryViewer(sub), new Promise(setImmediate).then(() => this.release(d, d.text)));
    }
  }

  /** A subscriber ended. */
  forget({ shape, context }: Subscriber): void {
    const userId = context.viewer?.userId;
    if (shape.asksForFiles && userId !== undefined) this.countFiles(userId, -1);
    this.stats.active[shape.rootField]--;
    if (--shape.refs === 0) this.shapes.delete(shape.key);
  }

  private countFiles(userId: string, by: 1 | -1): void {
    const n = (this.fileSubscriptions.get(userId) ?? 0) + by;
    if (n > 0) this.fileSubscriptions.set(userId, n);
    else this.fileSubscriptions.delete(userId);
  }

  /** Events of a stream that isn't our PubSub's, pulled one by one. */
  private async iterate(sub: Subscriber, events: AsyncIterableIterator<unknown>): Promise<void> {
    try {
      for await (const root of events) {
        if (sub.finished) break;
        this.onEvent(sub, root);
      }
      sub.close();
    } catch (e) {
      sub.close(e);
    }
  }

  /** The event's delivery for `sub`'s shape (and viewer): executed by the subscriber that got here first, one the event's filter let through. */
  private deliveryOf(sub: Subscriber, root: unknown): Delivery<Subscriber> {
    const shape = sub.shape;
    const viewer = deliveryViewer(sub);
    if (root === null || typeof root !== 'object') return this.start(shape, viewer, sub.context, root);
    if (root !== this.event) {
      this.event = root;
      this.lastShape = undefined;
      if (this.deliveries.size) this.deliveries.clear();
    } else if (shape === this.lastShape) return this.lastDelivery!;
    const held = this.deliveries.get(shape);
    if (!shape.perViewer) {
      const d = (held as Delivery<Subscriber> | undefined) ?? this.start(shape, viewer, sub.context, root);
      if (!held) this.deliveries.set(shape, d);
      this.lastShape = shape;
      this.lastDelivery = d;
      return d;
    }
    let byViewer = held as Map<string, Delivery<Subscriber>> | undefined;
    if (!byViewer) this.deliveries.set(shape, (byViewer = new Map()));
    let d = byViewer.get(viewer);
    if (!d) byViewer.set(viewer, (d = this.start(shape, viewer, sub.context, root)));
    return d;
  }

  /** Executes one event for a shape (and viewer): written at once when it answered synchronously and nothing is ahead of it. */
  private start(shape: Shape, viewer: string, context: Context, root: unknown): Delivery<Subscriber> {
    const d = new Delivery<Subscriber>();
    let text: string | Promise<string>;
    try {
      text = this.serialize(shape, context, root);
    } catch (e) {
      text = Promise.reject(e);
    }
    const before = shape.tails.get(viewer);
    if (before === undefined && typeof text === 'string') {
      d.text = text;
      if (this.written.push(d) === 1) queueMicrotask(this.observeWritten);
      return d;
    }
    // Released after the previous event's delivery for the same viewers, so frames keep event order.
    d.waiting = [];
    this.queue(
      shape,
      viewer,
      Promise.all([text, before]).then(
        ([t]) => this.release(d, t),
        (e) => this.release(d, undefined, e),
      ),
    );
    return d;
  }

  /** One execution of an event, serialized: a string when every resolver answered synchronously. */
  private serialize(shape: Shape, context: Context, root: unknown): string | Promise<string> {
    this.stats.executions++;
    const result = this.opts.operations.run(shape.prepared, new EventContext(context), root);
    return isPromise(result) ? result.then(this.encode) : this.encode(result);
  }

  private readonly encode = (result: ExecutionResult): string =>
    result.errors ? JSON.stringify({ data: result.data, errors: result.errors.map(this.opts.formatError) }) : JSON.stringify({ data: result.data });

  /** Writes one pre-built frame; drops a sink whose reader stopped. */
  private deliver(sub: Subscriber, d: Delivery<Subscriber>): boolean {
    if (sub.finished) return false;
    // A token that expired since the last expiry sweep gets nothing more; that sweep closes its connection.
    const expiresAt = sub.context.viewer?.expiresAt;
    if (expiresAt !== undefined && expiresAt <= d.now) return false;
    const sink = sub.sink;
    if (!sink.writable) {
      sub.close();
      return false;
    }
    if (sink.bufferedBytes > this.opts.maxBufferedBytes) {
      // A client that stopped reading can't grow our memory: it reconnects and catches up by query.
      this.stats.slowConsumersClosed++;
      this.opts.onSlowConsumer?.(sink.bufferedBytes);
      sink.drop();
      sub.close();
      return false;
    }
    const frame = d.frameFor(sink.encodeNext, sub.id);
    if (sub.shape.deferred) {
      this.deferred.add(sink, sub, frame);
      d.sent++;
      return true;
    }
    sink.write(frame);
    this.stats.deliveries++;
    d.sent++;
    return true;
  }

  /** Holds the later events of `shape` for `viewer` behind `release` (their frames follow its own). */
  private queue(shape: Shape, viewer: string, release: Promise<unknown>): void {
    shape.tails.set(viewer, release);
    // Kept only while in flight: an idle shape holds no per-viewer state.
    const settled = () => void (shape.tails.get(viewer) === release && shape.tails.delete(viewer));
    release.then(settled, settled);
  }

  /**
   * Writes a delivery's waiting subscribers, giving other I/O a turn every RELEASE_BUDGET_MS; or,
   * when its execution failed, ends them with the error.
   */
  private async release(d: Delivery<Subscriber>, text: string | undefined, error?: unknown): Promise<void> {
    const waiting = d.waiting!;
    d.waiting = null;
    d.text = text;
    d.error = error;
    let sliceStart = performance.now();
    for (let i = 0; i < waiting.length; i++) {
      if ((i & 127) === 127 && performance.now() - sliceStart > RELEASE_BUDGET_MS) {
        await new Promise(setImmediate);
        sliceStart = performance.now();
      }
      if (text === undefined) waiting[i].close(error);
      else this.deliver(waiting[i], d);
    }
    if (d.sent) this.observe(d);
  }

  private observe(d: Delivery<Subscriber>): void {
    this.opts.onDelivered?.((performance.now() - d.since) / 1000);
  }

  /** One observation per event and shape (when its pass ended), not one per socket. */
  private readonly observeWritten = (): void => {
    const done = this.written;
    this.written = [];
    for (const d of done) if (d.sent && !d.waiting) this.observe(d);
  };
}

/** Whose delivery of its shape `sub` joins: its viewer's for a viewer-specific shape, else the one shared (''). */
const deliveryViewer = (sub: Subscriber): string => (sub.shape.perViewer ? (sub.context.viewer?.userId ?? '') : '');

/** The fan-out both transports share (server.ts makes one). */
export function createFanout(opts: FanoutOptions): Fanout {
  return new Fanout(opts);
}

/**
 * The context of one execution: the subscriber's, with one EntityManager fork and one set of
 * loaders shared by all its resolvers (so `sender` and `recipient` load in one query), made on
 * first use and fresh for the next event (nothing cached from an earlier one). A class with the
 * rest read through to the subscriber's: made per event, it must cost an allocation, not a
 * dictionary-mode object (Object.create with accessors cost ~1 µs an event).
 */
class EventContext implements Context {
  private forked: EntityManager | undefined = undefined;
  private loaded: Loaders | undefined = undefined;

  constructor(private readonly of: Context) {}

  get em(): EntityManager {
    return (this.forked ??= this.of.services.orm.em.fork() as EntityManager);
  }
  get loaders(): Loaders {
    return (this.loaded ??= createLoaders(this.em, this.of.services, this.of.viewer?.userId ?? null));
  }
  get viewer() {
    return this.of.viewer;
  }
  get services() {
    return this.of.services;
  }
  get ip() {
    return this.of.ip;
  }
  get userAgent() {
    return this.of.userAgent;
  }
  get requestId() {
    return this.of.requestId;
  }
  get logger() {
    return this.of.logger;
  }
  get attachmentBudget() {
    return this.of.attachmentBudget;
  }
  get origin() {
    return this.of.origin;
  }
}

/** Subscribers that share a document and variables. */
interface Shape {
  key: string;
  rootField: string;
  /** Executed once per viewer per event rather than once for all. */
  perViewer: boolean;
  /** Its document asks for Attachment.base64 (see FILE_SUBSCRIPTIONS_PER_USER). */
  asksForFiles: boolean;
  /** Its frames wait for the event loop's turn to end (see DEFERRED). */
  deferred: boolean;
  /** Document and variables, as the first subscriber sent them, with the compiled plan (the context comes with each event). */
  prepared: PreparedOperation;
  refs: number;
  /** The last delivery's release per viewer ('' for all, when not per viewer), while one is in flight. */
  tails: Map<string, Promise<unknown>>;
}

/** One event's delivery to the subscribers of one shape: executed and serialized once, then written to each. */
class Delivery<S> {
  /** Subscribers to write to once its text is ready; null while it is written as they come. */
  waiting: S[] | null = null;
  text: string | undefined = undefined;
  error: unknown = undefined;
  /** Frames written. */
  sent = 0;
  /** When it started (the latency metric's origin) and, as Date.now(), what a token's expiry is checked against. */
  readonly since = performance.now();
  readonly now = Date.now();
  // Its `next` frame for the first encoder and operation id seen (most clients number their first
  // subscription alike, so one Buffer serves thousands of sockets, and ws skips a string-to-bytes
  // copy per socket), and for any others, by encoder and id.
  private encoder: FrameSink['encodeNext'] | undefined = undefined;
  private id: string | undefined = undefined;
  private frame: unknown = undefined;
  private others: Map<FrameSink['encodeNext'], Map<string, unknown>> | undefined = undefined;

  frameFor(encoder: FrameSink['encodeNext'], id: string): unknown {
    if (encoder === this.encoder && id === this.id) return this.frame;
    if (this.encoder === undefined) {
      this.encoder = encoder;
      this.id = id;
      return (this.frame = encoder(id, this.text!));
    }
    let byId = (this.others ??= new Map()).get(encoder);
    if (!byId) this.others.set(encoder, (byId = new Map()));
    let frame = byId.get(id);
    if (frame === undefined) byId.set(id, (frame = encoder(id, this.text!)));
    return frame;
  }
}
