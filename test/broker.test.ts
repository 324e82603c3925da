import { randomUUID } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { createBroker, MemoryBroker, RedisBroker, ShardedRedisBroker, type Broker } from '../src/shared/pubsub/broker';
import { Topic } from '../src/shared/pubsub/topics';
import { eventually, sleep } from './helpers/graphql';
import { OwnRedis } from './helpers/redis-server';
import { OwnRedisCluster } from './helpers/redis-cluster';
import { describeRedis, redisName } from './helpers/server';
import { loadEnv } from '../src/config/env';
import { createLogger } from '../src/shared/logger';
import { connectRedis, subscribeOnceSlotsKnown, type RedisConnections } from '../src/shared/redis';
import { describeNeeding, tools } from './helpers/tools';
import { TcpProxy } from './helpers/tcp-proxy';

type Heard = [channel: string, message: string][];

/** A broker with its handler set, and what the handler got. */
function listening(broker: Broker): Heard {
  const heard: Heard = [];
  broker.onMessage((channel, message) => heard.push([channel, message]));
  return heard;
}

/**
 * What every broker does, whatever carries it. `pair` makes a broker that publishes and one that
 * subscribes (the same one in memory, two instances' worth of connections on Redis).
 */
function behavesAsABroker(pair: () => Promise<{ publisher: Broker; subscriber: Broker; close: () => Promise<void> }>) {
  let publisher: Broker;
  let subscriber: Broker;
  let close: () => Promise<void>;
  let heard: Heard;
  // Channels of this run alone: a topic-wide one (a topic's name) and a conversation's. One hash
  // tag puts them on one shard of a cluster, so they arrive in the order published.
  const run = `{${randomUUID()}}`;
  const topicWide = `${Topic.GroupEvent}.${run}`;
  const conversation = `parley.conv:g:${run}`;
  const barrier = `parley.conv:u:${run}`;

  beforeEach(async () => {
    ({ publisher, subscriber, close } = await pair());
    heard = listening(subscriber);
  });
  afterEach(() => close());

  /** Publishes on the barrier channel and waits for it: what was published before it has arrived too. */
  const settle = async () => {
    await subscriber.subscribe(barrier);
    await publisher.publish(barrier, 'barrier');
    await eventually(() => heard.some(([c]) => c === barrier));
    return heard.filter(([c]) => c !== barrier);
  };

  it('should hand its one handler the text as published, on a topic-wide channel and a conversation channel alike', async () => {
    await subscriber.subscribe(topicWide);
    await subscriber.subscribe(conversation);
    await publisher.publish(topicWide, '{"parleyOrigin":"x","payload":{"id":"1"}}');
    await publisher.publish(conversation, 'not JSON at all');
    expect(await settle()).toEqual([
      [topicWide, '{"parleyOrigin":"x","payload":{"id":"1"}}'],
      [conversation, 'not JSON at all'],
    ]);
  });

  it('should hand over nothing of a channel not subscribed, or unsubscribed', async () => {
    await subscriber.subscribe(conversation);
    await publisher.publish(conversation, 'first');
    await eventually(() => heard.length === 1);
    await subscriber.unsubscribe(conversation);
    await publisher.publish(conversation, 'after unsubscribe');
    await publisher.publish(topicWide, 'never subscribed');
    expect(await settle()).toEqual([[conversation, 'first']]);
  });

  it('should hand over nothing once closed, and subscribe again after', async () => {
    await subscriber.subscribe(topicWide);
    await subscriber.subscribe(conversation);
    await subscriber.close();
    await publisher.publish(topicWide, 'closed');
    await publisher.publish(conversation, 'closed');
    expect(await settle()).toEqual([]);
    await subscriber.subscribe(conversation);
    await publisher.publish(conversation, 'again');
    expect(await settle()).toEqual([[conversation, 'again']]);
  });
}

describe('MemoryBroker', () => {
  behavesAsABroker(async () => {
    const broker = new MemoryBroker();
    return { publisher: broker, subscriber: broker, close: () => broker.close() };
  });

  it('should deliver within publish(), before it resolves', async () => {
    const broker = new MemoryBroker();
    const heard = listening(broker);
    await broker.subscribe('c');
    void broker.publish('c', 'now');
    expect(heard).toEqual([['c', 'now']]);
  });
});

describeRedis('RedisBroker', () => {
  const url = process.env.REDIS_URL!;
  const open: Redis[] = [];
  const connect = () => {
    const r = new Redis(url);
    open.push(r);
    return r;
  };
  afterEach(async () => {
    await Promise.all(open.splice(0).map((r) => r.quit()));
  });

  behavesAsABroker(async () => {
    const publisher = new RedisBroker(connect(), connect());
    const subscriber = new RedisBroker(connect(), connect());
    return { publisher, subscriber, close: async () => void (await Promise.all([publisher.close(), subscriber.close()])) };
  });

  it('should pass what Redis itself publishes (a Lua PUBLISH) and ignore the connection channels it did not subscribe', async () => {
    const sub = connect();
    const broker = new RedisBroker(connect(), sub);
    const heard = listening(broker);
    const mine = `${Topic.PresenceChanged}.${randomUUID()}`;
    const other = `other.${randomUUID()}`;
    await broker.subscribe(mine);
    // The same connection subscribed to another channel by someone else: not the broker's.
    await sub.subscribe(other);
    const client = connect();
    await client.publish(other, 'not ours');
    await client.eval("redis.call('PUBLISH', KEYS[1], cjson.encode({ parleyBatch = { { userId = 'u1' } } }))", 1, mine);
    await eventually(() => heard.length === 1);
    expect(heard).toEqual([[mine, '{"parleyBatch":[{"userId":"u1"}]}']]);
    await broker.close();
  });
});

describeNeeding('redis-server and redis-cli', tools.redisCluster)('ShardedRedisBroker', () => {
  const cluster = new OwnRedisCluster();
  const open: Cluster[] = [];
  beforeAll(() => cluster.start(), 30_000);
  afterAll(() => cluster.stop());
  const connect = async (shardedSubscribers = false) => {
    const c = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })), { shardedSubscribers });
    open.push(c);
    await new Promise((r) => c.once('ready', r));
    return c;
  };
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.quit().catch(() => c.disconnect())));
  });

  behavesAsABroker(async () => {
    const publisher = new ShardedRedisBroker(await connect(), await connect(true));
    const subscriber = new ShardedRedisBroker(await connect(), await connect(true));
    return { publisher, subscriber, close: async () => void (await Promise.all([publisher.close(), subscriber.close()])) };
  });
});

describeRedis("Parley's publisher connection", () => {
  let redis: RedisConnections;
  let raw: Redis;
  const channel = `parley.conv:g:{${randomUUID()}}`;
  beforeEach(async () => {
    const env = loadEnv({ REDIS_URL: process.env.REDIS_URL, REDIS_KEY_PREFIX: process.env.REDIS_KEY_PREFIX, LOG_LEVEL: 'silent' });
    redis = connectRedis(env, createLogger(env))!;
    expect(await redis.ready(5000)).toBe(true);
    raw = new Redis(process.env.REDIS_URL!);
    await raw.subscribe(redisName(channel));
  });
  afterEach(async () => {
    raw.disconnect();
    await redis.dispose();
  });

  /** The socket writes the publisher makes while `publish` runs, and what a raw subscriber then hears. */
  async function writesOf(publish: () => Promise<unknown>, expected: number): Promise<{ writes: number; heard: string[] }> {
    const heard: string[] = [];
    const hear = (_c: string, m: string) => heard.push(m);
    raw.on('message', hear);
    const stream = (redis.publisher as Redis).stream as unknown as { _write: (...a: unknown[]) => void; _writev?: (...a: unknown[]) => void };
    const [write, writev] = [stream._write, stream._writev];
    let writes = 0;
    stream._write = (...a) => (writes++, write.apply(stream, a));
    if (writev) stream._writev = (...a) => (writes++, writev.apply(stream, a));
    try {
      await publish();
    } finally {
      [stream._write, stream._writev] = [write, writev];
    }
    await eventually(() => heard.length >= expected);
    raw.off('message', hear);
    return { writes, heard };
  }

  it("should write the PUBLISHes of one turn of the event loop once, microtasks' included, and answer each in order", async () => {
    const texts = Array.from({ length: 40 }, (_, i) => `m${i}`);
    const { writes, heard } = await writesOf(async () => {
      // Half of them from promise continuations of the same turn, as a batch's answered sends publish.
      const sends = texts.slice(0, 20).map((t) => redis.publisher.publish(channel, t));
      // Each sent as a lone command (into the corked socket), none held in an auto-pipeline for the turn.
      expect((redis.publisher as Redis).autoPipelineQueueSize).toBe(0);
      for (const t of texts.slice(20)) sends.push(Promise.resolve().then(() => redis.publisher.publish(channel, t)));
      expect(await Promise.all(sends)).toEqual(texts.map(() => 1));
    }, texts.length);
    expect(heard).toEqual(texts);
    expect(writes).toBe(1);
  });

  it('should write again in the next turn, and on the new socket after a reconnect', async () => {
    const first = await writesOf(async () => {
      await redis.publisher.publish(channel, 'a');
      await redis.publisher.publish(channel, 'b');
    }, 2);
    expect(first).toEqual({ writes: 2, heard: ['a', 'b'] });
    const before = (redis.publisher as Redis).stream;
    (redis.publisher as Redis).disconnect(true);
    await new Promise((r) => (redis.publisher as Redis).once('ready', r));
    expect((redis.publisher as Redis).stream).not.toBe(before);
    const again = await writesOf(() => Promise.all(['c', 'd', 'e'].map((t) => redis.publisher.publish(channel, t))), 3);
    expect(again).toEqual({ writes: 1, heard: ['c', 'd', 'e'] });
  });
});

describe("a Redis Cluster's sharded subscriber asked before it knows the slots", () => {
  /** A connection whose sendCommand throws as ioredis 5.11's sharded subscribers did, `fails` times. */
  const connection = (fails: number) => {
    let calls = 0;
    return {
      get calls() {
        return calls;
      },
      sendCommand(command: { resolve(v: unknown): void; promise: Promise<unknown> }) {
        if (++calls <= fails) throw new TypeError("Cannot read properties of undefined (reading '0')");
        command.resolve('subscribed');
        return command.promise;
      },
    };
  };
  const command = (name: string) => {
    let resolve!: (v: unknown) => void;
    let reject!: (e: Error) => void;
    const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
    return { name, promise, resolve, reject };
  };

  it('should send an SSUBSCRIBE again until the slots are known, fail it past its tries, and leave other errors alone', async () => {
    const late = connection(3);
    subscribeOnceSlotsKnown(late as never, 1, 10);
    const c = command('ssubscribe');
    expect(() => (late as unknown as { sendCommand(c: unknown): unknown }).sendCommand(c)).not.toThrow();
    await expect(c.promise).resolves.toBe('subscribed');
    expect(late.calls).toBe(4);
    // Never known: the command fails, no timer throws.
    const never = connection(Infinity);
    subscribeOnceSlotsKnown(never as never, 1, 3);
    const lost = command('ssubscribe');
    (never as unknown as { sendCommand(c: unknown): unknown }).sendCommand(lost);
    await expect(lost.promise).rejects.toThrow(TypeError);
    expect(never.calls).toBe(4);
    // Another command's error is its caller's, at once.
    const other = connection(1);
    subscribeOnceSlotsKnown(other as never, 1, 10);
    expect(() => (other as unknown as { sendCommand(c: unknown): unknown }).sendCommand(command('publish'))).toThrow(TypeError);
  });
});

describeRedis("Parley's connections while Redis holds commands", () => {
  /** Parley's connections to REDIS_URL through a proxy of the test's own, which can hold what passes. */
  const throughProxy = async () => {
    const proxy = new TcpProxy({ host: new URL(process.env.REDIS_URL!).hostname, port: Number(new URL(process.env.REDIS_URL!).port || 6379) });
    await proxy.start();
    const url = new URL(process.env.REDIS_URL!);
    url.hostname = '127.0.0.1';
    url.port = String(proxy.port);
    const env = loadEnv({ REDIS_URL: url.toString(), REDIS_KEY_PREFIX: process.env.REDIS_KEY_PREFIX, LOG_LEVEL: 'silent' });
    return { proxy, env, redis: connectRedis(env, createLogger(env))! };
  };

  /**
   * Parley's connections to REDIS_URL through a proxy that holds what passes from the moment `body`
   * runs (it releases it); then the client must serve again, nothing left unanswered.
   */
  const whileHeld = async (body: (c: { proxy: TcpProxy; timeoutMs: number; client: Redis }) => Promise<void>) => {
    const { proxy, env, redis } = await throughProxy();
    const realNow = Date.now;
    try {
      expect(await redis.ready(5000)).toBe(true);
      const client = redis.client as Redis;
      proxy.hold();
      await body({ proxy, timeoutMs: env.REDIS_COMMAND_TIMEOUT * 1000, client });
      await eventually(async () => (await client.ping().catch(() => 'refused')) === 'PONG');
    } finally {
      Date.now = realNow;
      await redis.dispose();
      await proxy.cut();
    }
  };

  it("should count a command held just short of the timeout as held: one written then (behind an auto-pipeline Redis holds) fails at once, not after a timeout more", async () => {
    await whileHeld(async ({ proxy, timeoutMs, client }) => {
      const realNow = Date.now;
      const first = client.ping().catch((e: Error) => e.message);
      await new Promise((r) => setImmediate(r));
      const sentAt = (client as unknown as { commandQueue: { peekFront(): { command: { sentAt: number } } } }).commandQueue.peekFront().command.sentAt;
      // The second waits behind the first's auto-pipeline, written only once the first times out;
      // the clock then reads 50 ms short of the timeout (as it did at times: timers and clocks differ).
      const second = client.ping().catch((e: Error) => e.message);
      Date.now = () => sentAt + timeoutMs - 50;
      expect(await second).toMatch(/^Redis has not answered/);
      Date.now = realNow;
      proxy.release();
      await first;
    });
  }, 30_000);

  it('should stop within moments while Redis answers nothing, its connections still taken for ready', async () => {
    const { proxy, redis } = await throughProxy();
    try {
      expect(await redis.ready(5000)).toBe(true);
      // A Redis stalled, or gone a moment ago and not yet noticed: each QUIT waits for an answer
      // that never comes (the subscriber's has no command timeout), and stopping waited for good.
      proxy.hold();
      const started = Date.now();
      await redis.dispose();
      expect(Date.now() - started).toBeLessThan(3000);
    } finally {
      await proxy.cut();
    }
  }, 30_000);

  it('should not split a pipeline when a command is found held in its midst, and be answered again once Redis is', async () => {
    await whileHeld(async ({ proxy, timeoutMs, client }) => {
      const realNow = Date.now;
      const held = client.ping().catch((e: Error) => e.message);
      // The MULTI of a pipeline is taken; the clock then passes the held command's timeout before
      // the pipeline's next command (a slow turn of the event loop): before, that one was refused,
      // the pipeline never written, and the MULTI left at the head of the queue for good.
      const sentAt = realNow();
      let late = false;
      const queue = (client as unknown as { commandQueue: { push: (...a: unknown[]) => unknown } }).commandQueue;
      const push = queue.push.bind(queue);
      queue.push = (...a: unknown[]) => ((late = true), push(...a));
      Date.now = () => (late ? sentAt + timeoutMs + 1000 : realNow());
      const multi = client.multi().ping().ping().exec().then(
        (r) => r?.map(([e, v]) => e?.message ?? v),
        (e: Error) => e.message,
      );
      queue.push = push;
      Date.now = realNow;
      proxy.release();
      expect(await multi).toEqual(['PONG', 'PONG']);
      await held;
    });
  }, 30_000);
});

describeNeeding('redis-server', tools.redisServer)("Parley's connections stopped as Redis comes back", () => {
  const own = new OwnRedis();
  beforeAll(() => own.start());
  afterAll(() => own.stop());

  it("should not resubscribe a subscriber whose ready check is answered after stopping began: ioredis's SUBSCRIBE then failed with nobody to handle it", async () => {
    const env = loadEnv({ REDIS_URL: own.url, LOG_LEVEL: 'silent' });
    const redis = connectRedis(env, createLogger(env))!;
    const sub = redis.subscriber as Redis;
    expect(await redis.ready(5000)).toBe(true);
    await sub.subscribe('parley-test');
    await own.stop();
    // Stopped with the ready check's INFO written to the Redis that is back, before its answer is read.
    const sentAfter: string[] = [];
    const target = sub as unknown as { sendCommand(c: { name: string }, ...rest: unknown[]): unknown };
    const send = target.sendCommand.bind(sub);
    let stopping: Promise<void> | undefined;
    target.sendCommand = (c, ...rest) => {
      const out = send(c, ...rest);
      if (stopping) sentAfter.push(c.name);
      else if (c.name === 'info') stopping = redis.dispose();
      return out;
    };
    await own.start();
    await eventually(async () => stopping !== undefined, 10_000);
    await stopping;
    // Its answer still comes, and the connection turns ready before it closes.
    await sleep(300);
    expect(sub.status).toBe('end');
    expect(sentAfter).not.toContain('subscribe');
  }, 30_000);

  it('should receive on a channel subscribed while the subscriber reconnects, before its ready check: its SUBSCRIBE made the check fail, and the channel stayed silent', async () => {
    const env = loadEnv({ REDIS_URL: own.url, LOG_LEVEL: 'silent' });
    const redis = connectRedis(env, createLogger(env))!;
    const broker = createBroker(redis);
    const heard = listening(broker);
    try {
      expect(await redis.ready(5000)).toBe(true);
      await broker.subscribe('before');
      await own.stop();
      // Taken the moment the connection is back, before ioredis's ready check (a socket reconnecting as Redis returns).
      const during = new Promise<unknown>((resolve) => redis.subscriber.once('connect', () => resolve(broker.subscribe('during').catch((e: Error) => e.message))));
      await own.start();
      await during;
      const publisher = new Redis(own.url);
      try {
        await eventually(async () => {
          await publisher.publish('during', 'hello');
          await publisher.publish('before', 'hello');
          return heard.some(([c]) => c === 'during') && heard.some(([c]) => c === 'before');
        }, 10_000);
      } finally {
        publisher.disconnect();
      }
    } finally {
      await broker.close();
      await redis.dispose();
    }
  }, 30_000);
});
