import { DriverException } from '@mikro-orm/core';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Live state the gauges and counters read at scrape time (wired by the server once it exists). */
export interface MetricSources {
  openSockets(): number;
  /** Active subscription operations on this instance, by root field. */
  subscriptions(): Record<string, number>;
  /** Messages committed since start (a running total kept by the message service). */
  messagesSent(): number;
  /** Publishes refused by the transport since start (Redis away). */
  publishFailures(): number;
  onlineUsers(): Promise<number>;
}

export interface Metrics {
  registry: Registry;
  /** Seconds from an event reaching this instance's fan-out to its frame being written to one socket. */
  fanoutLatency: Histogram;
  sweepDuration: Histogram;
  sweepExpired: Counter;
  redisErrors: Counter;
  databaseErrors: Counter;
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
  totalFrom('parley_pubsub_publish_failures_total', 'Publishes refused by the pub/sub transport (Redis away)', () => src?.publishFailures() ?? 0);
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

  return {
    registry,
    redisErrors,
    databaseErrors,
    dependencyDown(error) {
      const e = (error as { originalError?: unknown })?.originalError ?? error;
      const msg = e instanceof Error ? e.message : String(e);
      if (!(e instanceof DriverException) && /Stream isn't writeable|Connection is closed|max retries per request|redis/i.test(msg)) redisErrors.inc();
      else databaseErrors.inc();
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
    observe(sources) {
      src = sources;
    },
    async scrape() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
