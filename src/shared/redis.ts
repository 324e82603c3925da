import { Cluster, Redis, type RedisOptions } from 'ioredis';
import type { Env } from '../config/env';
import type { Logger } from './logger';

export type RedisClient = Redis | Cluster;

export interface RedisConnections {
  /** Commands (presence, rate limits, locks). Fails fast while Redis is away. */
  client: RedisClient;
  publisher: RedisClient;
  /** In subscriber mode; resubscribes by itself after a reconnect. */
  subscriber: RedisClient;
  /** Pub/sub goes over sharded channels (a Redis 7+ cluster with REDIS_SHARDED_PUBSUB). */
  sharded: boolean;
  ping(): Promise<boolean>;
  /**
   * Resolves true when every connection is ready; false after `ms`, or once one connection has
   * failed three times in a row (a refused or unknown address fails fast, not after `ms`).
   */
  ready(ms: number): Promise<boolean>;
  /** The last connection error, for the one line a failed start prints. */
  readonly lastError: string | undefined;
  /**
   * While Redis holds the commands of this instance (stopped, or cut off without a reset: the
   * connections stay up), when the oldest of them was sent; undefined otherwise. Every instance
   * sends a command a second (presence's beat), so each finds a stall within the timeout or so.
   */
  heldSince(): number | undefined;
  dispose(): Promise<void>;
}

/** How long stopping waits for a ready connection's QUIT to be answered before it cuts the connection. */
const QUIT_WAIT_MS = 1000;

/** QUIT, or the connection cut once `ms` pass unanswered. */
function quitWithin(c: Redis | Cluster, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const cut = setTimeout(() => {
      c.disconnect();
      resolve();
    }, ms);
    c.quit().then(
      () => (clearTimeout(cut), resolve()),
      () => (clearTimeout(cut), c.disconnect(), resolve()),
    );
  });
}

/** Commands that name channels, and which of their arguments do. */
const CHANNEL_COMMANDS: Record<string, 'first' | 'all'> = {
  publish: 'first',
  spublish: 'first',
  subscribe: 'all',
  unsubscribe: 'all',
  ssubscribe: 'all',
  sunsubscribe: 'all',
  psubscribe: 'all',
  punsubscribe: 'all',
};
/** Events that carry a channel, and how many of their first arguments are channels (pmessage: pattern and channel). */
const CHANNEL_EVENTS: Record<string, number> = { message: 1, messageBuffer: 1, smessage: 1, smessageBuffer: 1, pmessage: 2, pmessageBuffer: 2 };

/**
 * How often a cluster's connections read its slot map. A shard's subscribers are told nothing
 * when a reshard moves their channels' slot away (Redis drops the subscriptions): ioredis
 * subscribes them again on their new owner when its map shows the move, which without this
 * timer it read only on a failure (an outside probe: a conversation's live messages stopped for
 * good after a reshard).
 */
export const SLOTS_REFRESH_MS = 2000;
/** How long a cluster's sharded subscribers must stay subscribed, no shard failing, before their return counts. */
const SHARDS_SETTLE_MS = 1000;

/**
 * Calls `listener` each time `client` is ready again after losing its connection (not at its first
 * connection), with when it was lost (ms): what Redis published meanwhile never reached it.
 * A cluster's sharded subscribers are one connection per shard, which the cluster's own events
 * don't show: each time they are subscribed again after a change (a shard lost, a slot moved),
 * what was published since the change may have been missed too (since the last map read before
 * it, when only the map showed it). Returns the removal.
 */
export function onReconnect(client: RedisClient, listener: (lostAt: number) => void): () => void {
  let lostAt: number | undefined;
  const onLost = () => void (lostAt ??= Date.now());
  const onReady = () => {
    if (lostAt === undefined) return;
    const at = lostAt;
    lostAt = undefined;
    listener(at);
  };
  client.on('close', onLost);
  client.on('ready', onReady);
  if (!(client instanceof Cluster && client.options.shardedSubscribers)) {
    return () => {
      client.off('close', onLost);
      client.off('ready', onReady);
    };
  }
  // The group says it is ready after each reset that changed something, the first one included,
  // and while a shard is down it resets again and again (about a hundred times a second, each
  // "ready" though that shard's subscriber failed): told once things have been quiet for a while.
  let shardLostAt: number | undefined;
  let first = true;
  let settling: NodeJS.Timeout | undefined;
  const settled = () => {
    settling = undefined;
    const at = Math.min(shardLostAt ?? Infinity, Date.now() - 2 * SLOTS_REFRESH_MS - SHARDS_SETTLE_MS);
    shardLostAt = undefined;
    listener(at);
  };
  const onShardLost = () => {
    shardLostAt ??= Date.now();
    if (settling) settling.refresh();
  };
  const onSubscribed = () => {
    if (first) {
      first = false;
      return;
    }
    if (settling) settling.refresh();
    else settling = setTimeout(settled, SHARDS_SETTLE_MS).unref();
  };
  client.on('-node', onShardLost);
  client.on('nodeError', onShardLost);
  client.on('subscribersReady', onSubscribed);
  return () => {
    clearTimeout(settling);
    client.off('close', onLost);
    client.off('ready', onReady);
    client.off('-node', onShardLost);
    client.off('nodeError', onShardLost);
    client.off('subscribersReady', onSubscribed);
  };
}

/** REDIS_KEY_PREFIX as this connection applies it ('' without one): for names a script builds itself. */
export function keyPrefixOf(conn: RedisClient): string {
  return (conn.options as { keyPrefix?: string }).keyPrefix ?? '';
}

/**
 * Pub/sub channels get REDIS_KEY_PREFIX here, the one place they cross the wire (ioredis's
 * keyPrefix leaves channels alone): outgoing channel arguments are prefixed, and incoming
 * messages reach listeners under the name they were subscribed with. A name that already has the
 * prefix passes as it is: ioredis resubscribes after a reconnect with the names Redis confirmed.
 * (env.ts refuses a prefix that a channel name could begin with.)
 */
function prefixChannels(conn: RedisClient, prefix: string): void {
  const raw = Buffer.from(prefix);
  const add = (c: unknown) => (typeof c === 'string' ? (c.startsWith(prefix) ? c : prefix + c) : Buffer.isBuffer(c) && !c.subarray(0, raw.length).equals(raw) ? Buffer.concat([raw, c]) : c);
  const strip = (c: unknown) =>
    typeof c === 'string' ? (c.startsWith(prefix) ? c.slice(prefix.length) : c) : Buffer.isBuffer(c) && c.subarray(0, raw.length).equals(raw) ? c.subarray(raw.length) : c;
  const target = conn as unknown as { sendCommand(command: { name: string; args: unknown[] }, ...rest: unknown[]): unknown; emit(event: string | symbol, ...args: unknown[]): boolean };
  const send = target.sendCommand.bind(conn);
  target.sendCommand = (command, ...rest) => {
    const which = CHANNEL_COMMANDS[command.name];
    if (which === 'first') command.args = [add(command.args[0]), ...command.args.slice(1)];
    else if (which === 'all') command.args = command.args.map(add);
    return send(command, ...rest);
  };
  const emit = target.emit.bind(conn);
  target.emit = (event, ...args) => {
    const n = typeof event === 'string' ? CHANNEL_EVENTS[event] : undefined;
    return emit(event, ...(n ? [...args.slice(0, n).map(strip), ...args.slice(n)] : args));
  };
}

/**
 * The commands a connection is given in one turn of the event loop leave in one write, as with
 * ioredis's auto-pipelining, but each is sent as ioredis sends a lone command: its socket is
 * corked at the turn's first command and uncorked by setImmediate (where auto-pipelining flushes,
 * so the writes are grouped as before). Auto-pipelining builds a Pipeline per turn, with a promise
 * and a result array for each command in it; a send's PUBLISH is usually alone or with two or
 * three others in its turn, and that machinery cost more than the write it saved (bench:rooms,
 * the publisher without it: CPU a delivery 6-9% lower, a write per PUBLISH). Corked, a typing
 * storm's many PUBLISHes of a turn still share one write.
 */
function oneWritePerTurn(conn: Redis): void {
  const target = conn as unknown as { sendCommand(...args: unknown[]): unknown };
  const send = target.sendCommand.bind(conn);
  let corked = false;
  target.sendCommand = (...args) => {
    // Only a connection that writes at once: otherwise ioredis fails or queues the command itself.
    if (!corked && conn.status === 'ready') {
      // The stream of this turn: a reconnect meanwhile brings a new one, and the old one is uncorked all the same.
      const stream = conn.stream;
      corked = true;
      stream.cork();
      setImmediate(() => {
        corked = false;
        stream.uncork();
      });
    }
    return send(...args);
  };
}

/**
 * ioredis 5.11's sharded subscribers can be asked for a slot's subscriber before they know the
 * cluster's slots: the SSUBSCRIBE queued while the cluster connected, sent as it turns ready, threw
 * a TypeError out of ioredis's ready handler (reading an empty slot), and the channel stayed
 * unsubscribed (seen twice in CI's Redis Cluster suite). Such a command is sent again a moment
 * later, until the slots are known (a few seconds at most), then fails as it would have.
 */
export function subscribeOnceSlotsKnown(conn: RedisClient, waitMs = 20, tries = 250): void {
  type Sent = { name: string; promise: Promise<unknown>; reject(e: Error): void };
  const target = conn as unknown as { sendCommand(command: Sent, ...rest: unknown[]): unknown };
  const send = target.sendCommand.bind(conn);
  const attempt = (command: Sent, rest: unknown[], left: number): unknown => {
    try {
      return send(command, ...rest);
    } catch (e) {
      if (!(e instanceof TypeError) || (command.name !== 'ssubscribe' && command.name !== 'sunsubscribe')) throw e;
      // Out of tries: the command fails, never the timer (an uncaught throw would end the process).
      if (left <= 0) command.reject(e);
      else setTimeout(() => attempt(command, rest, left - 1), waitMs).unref();
      return command.promise;
    }
  };
  target.sendCommand = (command, ...rest) => attempt(command, rest, tries);
}

/** How much sooner than the command timeout a held command counts as held (see failFastWhileHeld). */
const HELD_SLACK_MS = 100;

/**
 * While Redis holds this connection's commands (the oldest still unanswered was sent over
 * `timeoutMs` ago), a new one fails at once as when Redis is away, instead of waiting out its own
 * timeout: a sign-in asks Redis up to eight things in turn, and took eight timeouts. The held
 * commands themselves tell when Redis answers again (the queue drains), so no probe is needed.
 * Decided once for all the commands passed on in one synchronous run: a pipeline (MULTI, or
 * auto-pipelining) hands its commands over one by one and writes them only once all were taken,
 * so refusing one after taking an earlier one left that one queued, never written nor answered,
 * and every command after it refused for good (an outside probe: an instance off Redis for
 * minutes, after a stall). Returns when the oldest held command was sent, while one is held.
 */
function failFastWhileHeld(conn: Redis, timeoutMs: number): () => number | undefined {
  type Sent = { command: { reject(e: Error): void; promise: Promise<unknown>; sentAt?: number } };
  const target = conn as unknown as { sendCommand(command: Sent['command'], ...rest: unknown[]): unknown; commandQueue?: { peekFront(): Sent | undefined } };
  const send = target.sendCommand.bind(conn);
  let decided: string | undefined | null = null;
  target.sendCommand = (command, ...rest) => {
    const now = Date.now();
    if (decided === null) {
      const oldest = target.commandQueue?.peekFront()?.command.sentAt;
      // HELD_SLACK_MS short of the timeout: commands queued behind an auto-pipeline that Redis holds
      // are written as its first command times out, and at that very moment the comparison fell
      // just short at times: they waited a timeout more (/readyz 3-4 s into a stall: two outside probes).
      decided = oldest !== undefined && now - oldest > timeoutMs - HELD_SLACK_MS ? `Redis has not answered for ${now - oldest} ms` : undefined;
      queueMicrotask(() => (decided = null));
    }
    if (decided !== undefined) {
      command.reject(new Error(decided));
      return command.promise;
    }
    command.sentAt = now;
    return send(command, ...rest);
  };
  // When the oldest unanswered command was sent, while it has waited longer than the timeout.
  return () => {
    const oldest = target.commandQueue?.peekFront()?.command.sentAt;
    return oldest !== undefined && Date.now() - oldest > timeoutMs ? oldest : undefined;
  };
}

/**
 * Opens the three connections Parley needs, to one Redis (REDIS_URL) or a Redis Cluster
 * (REDIS_CLUSTER_NODES). Returns undefined when neither is configured.
 */
export function connectRedis(env: Env, logger: Logger): RedisConnections | undefined {
  if (!env.REDIS_URL && !env.REDIS_CLUSTER_NODES) return undefined;
  const base: RedisOptions = {
    // Fail commands at once while disconnected instead of queueing them without bound.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 3000,
    retryStrategy: (times) => Math.min(200 * times, 2000),
    lazyConnect: false,
    // A Redis that stops answering without closing the connection (stopped, cut off without a
    // reset) holds commands instead of failing them: every send, sign-in and /readyz waited for as
    // long as it did (an outside probe, 20-65 s). Past this, a command fails as when Redis is away,
    // and its caller rides that out (a send's events are kept to publish again: see keepUnsent). Its
    // bytes are written already: a Redis that answers again still runs it.
    commandTimeout: env.REDIS_COMMAND_TIMEOUT * 1000,
  };
  let lastError: string | undefined;
  const prefix = env.REDIS_KEY_PREFIX;
  const make = (name: string, opts: RedisOptions = {}, cluster: { shardedSubscribers?: boolean } = {}): RedisClient => {
    // keyPrefix: every key of every command and script (ioredis prefixes what the command declares a key).
    const conn = env.REDIS_CLUSTER_NODES
      ? new Cluster(
          env.REDIS_CLUSTER_NODES.map((n) => ({ host: n.split(':')[0], port: Number(n.split(':')[1]) })),
          { redisOptions: { ...base, ...opts }, enableOfflineQueue: opts.enableOfflineQueue ?? false, keyPrefix: prefix, slotsRefreshInterval: SLOTS_REFRESH_MS, ...cluster },
        )
      : new Redis(env.REDIS_URL!, { ...base, ...opts, keyPrefix: prefix, connectionName: `parley-${name}` });
    if (prefix) prefixChannels(conn, prefix);
    let down = false;
    conn.on('error', (e: Error & { code?: string }) => {
      lastError = e.message || e.code || e.name;
      if (!down) logger.warn({ err: e.message, connection: name }, 'redis connection error');
      down = true;
    });
    conn.on('ready', () => {
      if (down) logger.info({ connection: name }, 'redis connection restored');
      down = false;
    });
    return conn;
  };
  // Commands issued in one turn go out in one write: concurrent requests' rate-limit and presence
  // calls share writes.
  const client = make('client', { enableAutoPipelining: true });
  const held: (() => number | undefined)[] = [];
  if (client instanceof Redis) held.push(failFastWhileHeld(client, env.REDIS_COMMAND_TIMEOUT * 1000));
  // The publisher too, without a pipeline per turn (see oneWritePerTurn): a batch of typing changes
  // answered together publishes its events in one write (bench:conversations' typing storm: one
  // write a turn took its publishes from 31 to 15 ms of server CPU a second). A cluster's writes go
  // to a node per slot, which ioredis's auto-pipelining sorts out.
  const publisher = make('pub', { enableAutoPipelining: !!env.REDIS_CLUSTER_NODES });
  if (publisher instanceof Redis) {
    oneWritePerTurn(publisher);
    held.push(failFastWhileHeld(publisher, env.REDIS_COMMAND_TIMEOUT * 1000));
  }
  // The subscriber queues its SUBSCRIBE commands until connected, so subscriptions made during an outage still land.
  const sharded = !!env.REDIS_CLUSTER_NODES && env.REDIS_SHARDED_PUBSUB;
  // On a cluster with sharded pub/sub, ioredis keeps one subscriber per shard and follows slot moves.
  const subscriber = make('sub', { enableOfflineQueue: true, maxRetriesPerRequest: null, commandTimeout: undefined }, { shardedSubscribers: sharded });
  if (sharded) subscribeOnceSlotsKnown(subscriber);
  return {
    client,
    publisher,
    subscriber,
    sharded,
    get lastError() {
      return lastError;
    },
    heldSince() {
      let since: number | undefined;
      for (const h of held) {
        const at = h();
        if (at !== undefined && (since === undefined || at < since)) since = at;
      }
      return since;
    },
    async ready(ms) {
      const conns = [client, publisher, subscriber];
      const all = Promise.all(conns.map((c) => (c.status === 'ready' ? undefined : new Promise((r) => c.once('ready', r))))).then(() => true);
      let timer: NodeJS.Timeout | undefined;
      const failures = new Map<RedisClient, number>();
      let failing: (e: unknown) => void = () => undefined;
      const late = new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), ms);
        failing = function (this: RedisClient) {
          const n = (failures.get(this) ?? 0) + 1;
          failures.set(this, n);
          if (n >= 3) r(false);
        };
      });
      for (const c of conns) c.on('error', failing);
      return Promise.race([all, late]).finally(() => {
        clearTimeout(timer);
        for (const c of conns) c.off('error', failing);
      });
    },
    async ping() {
      try {
        // A node of a failed cluster (a shard and its replicas gone) still answers PING, while
        // the failed slots' commands answer CLUSTERDOWN: its own view of the cluster says so.
        if (client instanceof Cluster) return /cluster_state:ok/.test(String(await client.cluster('INFO')));
        return (await client.ping()) === 'PONG';
      } catch {
        return false;
      }
    },
    async dispose() {
      // QUIT waits for a reply; while Redis is away (or reconnecting) it would wait forever, so cut
      // instead. A connection still ready may be to a Redis that stalled, or went a moment ago and
      // is not noticed yet: the subscriber's QUIT (no command timeout) waited for good. Cut after a moment.
      // And no resubscribing after: a connection cut while its ready check was answered still turns
      // ready, and ioredis's own SUBSCRIBE then, failed by the closing, is a rejection nobody
      // handles, which ends a Node process (CI, stopped as Redis came back: 1 of 40 there).
      for (const c of [client, publisher, subscriber]) if (c instanceof Redis) c.options.autoResubscribe = false;
      await Promise.all([client, publisher, subscriber].map((c) => (c.status === 'ready' ? quitWithin(c, QUIT_WAIT_MS) : c.disconnect())));
    },
  };
}
