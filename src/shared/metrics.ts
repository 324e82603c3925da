import { DriverException } from '@mikro-orm/core';
import { isDeadlock } from './sql';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Live state the gauges and counters read at scrape time (wired by the server once it exists). */
export interface MetricSources {
  openSockets(): number;
  /** Active subscription operations on this instance, by root field. */
  subscriptions(): Record<string, number>;
  /** Messages committed since start (a running total kept by the message service). */
  messagesSent(): number;
  /** Of those, the ones committed together with others sent meanwhile (group commit). */
  messagesBatched(): number;
  /** Publishes refused by the transport since start (Redis away). */
  publishFailures(): number;
  onlineUsers(): Promise<number>;
  /** Events taken from upstream (Redis) since start, by topic. */
  eventsReceived(): Partial<Record<string, number>>;
  /** Subscriptions examined for an event since start (a selector run). */
  evaluations(): number;
  /** New messages that waited for one before them, and waits given up (see InOrder). */
  ordering(): { held: number; gaps: number; filled: number };
  /** Subscribers closed for not reading (WS_MAX_BUFFERED_BYTES) since start. */
  slowConsumersClosed(): number;
}

/** One GraphQL operation, as `parley_graphql_operations_total` and its duration histogram count it. */
export interface OperationRecord {
  /** The client's operationName, when it sent one. */
  name?: string | null;
  /** The operation's root fields, once the document was validated against the schema. */
  rootFields?: readonly string[];
  /** query, mutation or subscription; absent when the document never got that far. */
  type?: string;
  /** The first error's extensions.code, or absent when it succeeded. */
  code?: string | null;
  /** For a subscription, the time to set it up. */
  seconds: number;
}

/** Distinct operationName labels per instance; later new names are counted under their root field. */
export const MAX_OPERATION_NAMES = 100;
const MAX_CODES = 40;

export interface Metrics {
  registry: Registry;
  /** Seconds from an event reaching this instance's fan-out to its frame being written to one socket. */
  fanoutLatency: Histogram;
  sweepDuration: Histogram;
  sweepExpired: Counter;
  redisErrors: Counter;
  databaseErrors: Counter;
  /** Offline notifications (jobs/webhook.job.ts), counted by the instance that did each step. */
  webhooks: { queued: Counter; delivered: Counter; retried: Counter; dropped: Counter; latency: Histogram };
  /** Counts one GraphQL operation (HTTP or WebSocket) and its duration. */
  operation(op: OperationRecord): void;
  /** Counts an operation answered SERVICE_UNAVAILABLE against the dependency that was away. */
  dependencyDown(error: unknown): void;
  /** Connects the scrape-time readings; before this they read zero. */
  observe(sources: MetricSources): void;
  /** The Prometheus text exposition. */
  scrape(): Promise<{ contentType: string; body: string }>;
}

/**
 * One registry per server, never prom-client's global one: tests run several instances in
 * one process, and each must report its own numbers.
 */
export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  let src: MetricSources | undefined;
  const registers = [registry];

  new Gauge({
    name: 'parley_open_sockets',
    help: 'Authenticated and pending WebSocket (graphql-transport-ws) connections and SSE subscription streams open on this instance',
    registers,
    collect() {
      this.set(src?.openSockets() ?? 0);
    },
  });
  new Gauge({
    name: 'parley_subscriptions',
    help: 'Active subscription operations on this instance, by root field',
    labelNames: ['type'],
    registers,
    collect() {
      this.reset();
      for (const [type, n] of Object.entries(src?.subscriptions() ?? {})) this.set({ type }, n);
    },
  });
  // Running totals kept elsewhere as plain numbers become counters by adding what changed since the last scrape.
  const totalFrom = (name: string, help: string, read: () => number) => {
    let last = 0;
    return new Counter({
      name,
      help,
      registers,
      collect() {
        const now = read();
        if (now > last) this.inc(now - last);
        last = Math.max(last, now);
      },
    });
  };
  totalFrom('parley_messages_sent_total', 'Messages committed on this instance', () => src?.messagesSent() ?? 0);
  totalFrom('parley_messages_batched_total', 'Messages committed in one statement with others sent meanwhile (group commit)', () => src?.messagesBatched() ?? 0);
  totalFrom('parley_pubsub_publish_failures_total', 'Publishes refused by the pub/sub transport (Redis away)', () => src?.publishFailures() ?? 0);
  totalFrom('parley_fanout_evaluations_total', 'Subscriptions examined for an event: one per subscription of each local recipient', () => src?.evaluations() ?? 0);
  totalFrom('parley_messages_reordered_total', 'New messages that arrived before one sent earlier and waited for it', () => src?.ordering().held ?? 0);
  totalFrom('parley_messages_order_gaps_total', 'Waits for an earlier message given up after 500 ms and a search of the database (it was never stored, or is gone)', () => src?.ordering().gaps ?? 0);
  totalFrom('parley_slow_consumers_closed_total', 'Subscribers (a WebSocket, an SSE stream) closed for not reading: more than WS_MAX_BUFFERED_BYTES waiting', () => src?.slowConsumersClosed() ?? 0);
  totalFrom('parley_messages_order_filled_total', 'Messages whose publish never reached this instance, read back from the database for the subscribers waiting on them', () => src?.ordering().filled ?? 0);
  const received: Record<string, number> = {};
  new Counter({
    name: 'parley_pubsub_events_received_total',
    help: 'Events this instance took from Redis (its own echo included), by topic',
    labelNames: ['topic'],
    registers,
    collect() {
      for (const [topic, now] of Object.entries(src?.eventsReceived() ?? {})) {
        const last = received[topic] ?? 0;
        if (now! > last) this.inc({ topic }, now! - last);
        received[topic] = Math.max(last, now!);
      }
    },
  });
  new Gauge({
    name: 'parley_online_users',
    help: 'Users ONLINE across all instances (from the presence store)',
    registers,
    async collect() {
      // A scrape must not fail while Redis is away; the gauge keeps its last reading.
      const n = await src?.onlineUsers().catch(() => undefined);
      if (n !== undefined) this.set(n);
    },
  });

  const redisErrors = new Counter({ name: 'parley_redis_errors_total', help: 'Redis errors: failed connect or reconnect attempts, and operations refused while it was away', registers });
  const databaseErrors = new Counter({ name: 'parley_database_errors_total', help: 'Operations that failed because PostgreSQL was unreachable', registers });

  const operations = new Counter({
    name: 'parley_graphql_operations_total',
    help: 'GraphQL operations over HTTP and WebSocket, by operation (operationName, else root fields), type and result code (OK or the first error code)',
    labelNames: ['operation', 'type', 'code'],
    registers,
  });
  const operationSeconds = new Histogram({
    name: 'parley_graphql_operation_duration_seconds',
    help: 'Duration of GraphQL operations (for subscriptions, their setup), by operation and type',
    labelNames: ['operation', 'type'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers,
  });
  // Label values come from clients: bounded, so that made-up names can't grow the label sets.
  const names = new Set<string>();
  const codes = new Set<string>();
  const bounded = (seen: Set<string>, value: string, max: number): boolean => {
    if (seen.has(value)) return true;
    if (seen.size >= max) return false;
    seen.add(value);
    return true;
  };
  const children = new Map<string, { count: { inc(): void }; seconds: { observe(v: number): void } }>();
  const operationLabel = (op: OperationRecord): string => {
    // Root fields were validated against the schema: a finite set (and combinations of them are not).
    const distinct = new Set(op.rootFields);
    const fields = distinct.size === 1 ? [...distinct][0] : distinct.size ? 'multiple' : 'other';
    if (!op.type || !op.name || !/^[_A-Za-z][_0-9A-Za-z]{0,63}$/.test(op.name)) return fields;
    return bounded(names, op.name, MAX_OPERATION_NAMES) ? op.name : fields;
  };

  return {
    registry,
    redisErrors,
    operation(op) {
      const operation = operationLabel(op);
      const type = op.type ?? 'unknown';
      const code = !op.code ? 'OK' : /^[A-Z][A-Z0-9_]{0,39}$/.test(op.code) && bounded(codes, op.code, MAX_CODES) ? op.code : 'OTHER';
      // The label sets are bounded (names, codes), so their children are kept: inc and observe with
      // a label object hash the labels on every call (6% of a heartbeat's server time in bench:http).
      const key = `${operation}\u0000${type}\u0000${code}`;
      let child = children.get(key);
      if (!child) children.set(key, (child = { count: operations.labels(operation, type, code), seconds: operationSeconds.labels(operation, type) }));
      child.count.inc();
      child.seconds.observe(op.seconds);
    },
    databaseErrors,
    dependencyDown(error) {
      const e = (error as { originalError?: unknown })?.originalError ?? error;
      const msg = e instanceof Error ? e.message : String(e);
      if (!(e instanceof DriverException) && /Stream isn't writeable|Connection is closed|max retries per request|redis/i.test(msg)) redisErrors.inc();
      // A deadlock's victim is no outage (its log line says so).
      else if (!isDeadlock(e)) databaseErrors.inc();
    },
    fanoutLatency: new Histogram({
      name: 'parley_fanout_latency_seconds',
      help: 'From an event reaching this instance to its frame being written to a subscriber socket',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    }),
    sweepDuration: new Histogram({
      name: 'parley_presence_sweep_duration_seconds',
      help: 'Duration of presence sweeps run by this instance',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    sweepExpired: new Counter({ name: 'parley_presence_sweep_expired_total', help: 'Users the presence sweep marked OFFLINE', registers }),
    webhooks: {
      queued: new Counter({ name: 'parley_webhook_events_queued_total', help: 'Webhook events written to the outbox (a message coalesced into a pending event adds none)', registers }),
      delivered: new Counter({ name: 'parley_webhook_events_delivered_total', help: 'Webhook events the receiver accepted (2xx within 5 s)', registers }),
      retried: new Counter({ name: 'parley_webhook_events_retried_total', help: 'Failed webhook deliveries scheduled again with back-off', registers }),
      dropped: new Counter({ name: 'parley_webhook_events_dropped_total', help: 'Webhook events given up after WEBHOOK_MAX_AGE', registers }),
      latency: new Histogram({
        name: 'parley_webhook_delivery_latency_seconds',
        help: "From a webhook event's first cause to the receiver's 2xx (coalescing window and retries included)",
        buckets: [0.5, 1, 2.5, 5, 10, 15, 30, 60, 300, 900, 3600, 21600, 86400],
        registers,
      }),
    },
    observe(sources) {
      src = sources;
    },
    async scrape() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
