import type { RedisClient } from '../src/shared/redis';
import { RateLimit } from '../src/shared/ratelimit';
import { BadUserInputError } from '../src/shared/errors';
import { PasswordLimiter } from '../src/modules/auth/auth.ratelimit';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A Redis client as LeasedPoints uses it, answering each lease script when the test says: not a
 * `Redis` instance, so each key is leased by a call of its own, as on a cluster.
 */
function fakeRedis() {
  const calls: { keys: string[]; answer(grants: [number, number][] | Error): void }[] = [];
  const client = {
    defineCommand(name: string) {
      (client as Record<string, unknown>)[name] = (n: number, ...args: (string | number)[]) =>
        new Promise<number[]>((resolve, reject) => {
          const keys = args.slice(0, n).map(String);
          calls.push({ keys, answer: (g) => (g instanceof Error ? reject(g) : resolve(g.flat())) });
        });
    },
  };
  return { client: client as unknown as RedisClient, calls };
}

/** Whether `p` settled within `ms`. */
const settles = (p: Promise<unknown>, ms = 50) => Promise.race([p.then(() => true, () => true), sleep(ms).then(() => false)]);

describe('rate limits leased from Redis, first action ahead', () => {
  it('should answer each key of a batch from its own node: one node away fails only its keys', async () => {
    const { client, calls } = fakeRedis();
    const rate = new RateLimit('t', { points: 64, duration: 60 }, client);
    // Two first actions go ahead; their leases are asked together, a call per key.
    await rate.consume('good');
    await rate.consume('bad');
    await sleep(30);
    expect(calls.map((c) => c.keys)).toEqual([['rl:t:good'], ['rl:t:bad']]);
    calls[0].answer([[4, 60_000]]);
    calls[1].answer(new Error('CLUSTERDOWN'));
    await sleep(5);
    // The good key's lease (4, one spent ahead) serves its next three actions with no call.
    expect(await settles(Promise.all([0, 1, 2].map(() => rate.consume('good'))))).toBe(true);
    expect(calls).toHaveLength(2);
    // The fourth asks Redis.
    const fourth = rate.consume('good');
    await sleep(5);
    expect(calls).toHaveLength(3);
    calls[2].answer([[4, 60_000]]);
    await fourth;
  });

  it("should ask Redis for one lease at a time per key, a burst's actions spending it rather than each leasing its own", async () => {
    const { client, calls } = fakeRedis();
    const rate = new RateLimit('t', { points: 64, duration: 60 }, client);
    await rate.consume('k'); // goes ahead
    await sleep(30);
    calls[0].answer([[1, 60_000]]); // only the point spent ahead
    await sleep(5);
    // A burst finds the lease spent: one asks Redis, the others wait for its lease.
    const burst = Array.from({ length: 10 }, () => rate.consume('k'));
    await sleep(5);
    expect(calls).toHaveLength(2);
    calls[1].answer([[10, 60_000]]);
    // Its ten points serve the whole burst: none refused, no other call.
    await Promise.all(burst);
    expect(calls).toHaveLength(2);
    // Spent again: the next action asks, and a refusal is its own and the waiting ones' alike.
    const [x, y] = [rate.consume('k'), rate.consume('k')];
    await sleep(5);
    expect(calls).toHaveLength(3);
    calls[2].answer([[0, 1000]]);
    await expect(x).rejects.toMatchObject({ extensions: { code: 'RATE_LIMITED' } });
    await sleep(5);
    expect(calls).toHaveLength(4);
    calls[3].answer([[0, 995]]);
    await expect(y).rejects.toMatchObject({ extensions: { code: 'RATE_LIMITED' } });
  });

  it("should not let an older window's answer replace a newer first action's lease on its way", async () => {
    const { client, calls } = fakeRedis();
    // A window of 100 ms.
    const rate = new RateLimit('t', { points: 64, duration: 0.1 }, client);
    await rate.consume('k'); // goes ahead
    await sleep(20);
    calls[0].answer([[1, 40]]); // one point: the one spent ahead; the window ends in 40 ms
    await sleep(5);
    // Spent: the next action asks Redis, and waits for it.
    const a = rate.consume('k');
    await sleep(5);
    expect(calls).toHaveLength(2);
    // Past the local window: the next action is the next window's first, and goes ahead.
    await sleep(50);
    await rate.consume('k');
    await sleep(20);
    expect(calls).toHaveLength(3);
    // The older request is answered now: refused, its window about to end.
    calls[1].answer([[0, 5]]);
    await expect(a).rejects.toMatchObject({ extensions: { code: 'RATE_LIMITED' } });
    // The newer lease is still on its way: the next action waits for it, and nothing goes ahead.
    await sleep(10);
    const c = rate.consume('k');
    expect(await settles(c)).toBe(false);
    expect(calls).toHaveLength(3);
    calls[2].answer([[4, 100]]);
    await c;
    expect(calls).toHaveLength(3);
  });
});

describe('rate limits in Redis, calls under way', () => {
  it("should ask again a refusal Redis made before a call's point came back, and not refuse a call while a point it needs is on its way back", async () => {
    const { client, calls } = fakeRedis();
    const rate = new RateLimit('t', { points: 3, duration: 3600 }, client);
    // A copy takes the last point and is refused for what it asks (a CONFLICT); the second copy's
    // count is asked of Redis meanwhile, and Redis answers it (none left) before the point is back.
    let refuse!: () => void;
    const first = rate.spend('k', 'slow down', () => new Promise((_, reject) => (refuse = () => reject(new BadUserInputError('taken', 'x')))));
    await sleep(5);
    calls[0].answer([[1, 3_600_000]]);
    await sleep(5);
    const second = rate.spend('k', 'slow down', async () => 'second ran');
    await sleep(5);
    expect(calls).toHaveLength(2); // the second's lease, unanswered
    refuse();
    await sleep(5);
    expect(calls).toHaveLength(3); // the first's point, given back
    calls[2].answer([[2]] as never);
    await expect(first).rejects.toThrow('taken');
    calls[1].answer([[0, 3_599_000]]);
    await sleep(5);
    // Asked again: the point is there.
    expect(calls).toHaveLength(4);
    calls[3].answer([[1, 3_599_000]]);
    expect(await second).toBe('second ran');
  });
});

describe('rate limits in this process', () => {
  it('should give a refused call its point back, keep a failed one\'s, and refuse past the limit', async () => {
    const rate = new RateLimit('t', { points: 2, duration: 60 });
    const refused = () => rate.spend('k', 'slow down', async () => Promise.reject(new BadUserInputError('bad input', 'x')));
    for (let i = 0; i < 5; i++) await expect(refused()).rejects.toThrow('bad input');
    expect(await rate.spend('k', 'slow down', async () => 1)).toBe(1);
    // The service's own failure (the database away) keeps its point: retries stay limited.
    await expect(rate.spend('k', 'slow down', async () => Promise.reject(new Error('database away')))).rejects.toThrow('database away');
    await expect(rate.spend('k', 'slow down', async () => 3)).rejects.toMatchObject({ extensions: { code: 'RATE_LIMITED' } });
  });

  it('should let a call past the limit wait for the calls of its key under way, which may give their points back, and no longer', async () => {
    const rate = new RateLimit('t', { points: 2, duration: 60 });
    let refuse!: () => void;
    const first = rate.spend('k', 'slow down', () => new Promise((_, reject) => (refuse = () => reject(new BadUserInputError('bad input', 'x')))));
    await rate.spend('k', 'slow down', async () => 1);
    // Past the limit while the first is under way: it waits, and gets the point the first gives back.
    const third = rate.spend('k', 'slow down', async () => 3);
    expect(await settles(third)).toBe(false);
    refuse();
    await expect(first).rejects.toThrow('bad input');
    expect(await third).toBe(3);
    // Nothing under way: refused at once. A call whose work throws rather than rejects ends too,
    // else the key's next refused call would wait for it for good.
    await expect(rate.spend('k', 'slow down', async () => 4)).rejects.toMatchObject({ extensions: { code: 'RATE_LIMITED' } });
    const other = new RateLimit('t', { points: 1, duration: 60 });
    await expect(other.spend('k', 'slow down', () => { throw new Error('thrown'); })).rejects.toThrow('thrown');
    expect(await settles(other.spend('k', 'slow down', async () => 5).catch((e) => e.extensions.code))).toBe(true);
  });

  it('should take a point before work that decides inside, keep it once made (twice or refused after), and give it back when never made', async () => {
    const rate = new RateLimit('t', { points: 2, duration: 60 });
    // Made, then made again by a deadlock's retry: one point.
    expect(await rate.spendWhenMade('k', 'slow down', async (made) => (made(), made(), 'in'))).toBe('in');
    // Never made (a member already in, a refusal): given back, so both below still fit in two points.
    expect(await rate.spendWhenMade('k', 'slow down', async () => 'already')).toBe('already');
    await expect(rate.spendWhenMade('k', 'slow down', async () => Promise.reject(new BadUserInputError('no such user', 'userId')))).rejects.toThrow('no such user');
    // Made, then refused (a signup's taken name): kept.
    await expect(rate.spendWhenMade('k', 'slow down', async (made) => (made(), Promise.reject(new BadUserInputError('taken', 'username'))))).rejects.toThrow('taken');
    // Past the limit the work never runs: RATE_LIMITED before it looks at what it asks.
    let looked = false;
    await expect(rate.spendWhenMade('k', 'slow down', async () => ((looked = true), Promise.reject(new BadUserInputError('no such user', 'userId'))))).rejects.toMatchObject({ extensions: { code: 'RATE_LIMITED' } });
    expect(looked).toBe(false);
  });
});

describe('wrong-password limits', () => {
  afterEach(() => jest.useRealTimers());

  it('should give back no attempt to a window that ended between the check and its answer (a new window below zero was one attempt more)', async () => {
    jest.useFakeTimers({ now: new Date('2026-11-26T12:00:00Z') });
    // The account-wide limit is the one measured: 2 wrong passwords.
    const limits = new PasswordLimiter({ maxPerUserIp: 100, maxPerUser: 2, maxPerIp: 100 });
    await limits.take('account', '192.0.2.1');
    // The password check took so long that the 15-minute window ended meanwhile; then it was right.
    jest.setSystemTime(new Date('2026-11-26T12:15:01Z'));
    jest.advanceTimersByTime(15 * 60_000 + 1000);
    await limits.passed('account', '192.0.2.1');
    let allowed = 0;
    for (let i = 0; i < 5; i++) {
      try {
        await limits.take('account', `198.51.100.${i}`);
        allowed++;
      } catch {
        break;
      }
    }
    expect(allowed).toBe(2);
  });
});
