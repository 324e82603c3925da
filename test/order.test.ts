import { loadEnv } from '../src/config/env';
import { channelRoutes } from '../src/modules/conversation/conversation.keys';
import { createLogger } from '../src/shared/logger';
import { EventOrder, InOrder, type Ordered } from '../src/shared/pubsub/order';
import { createPubSub, PubSub } from '../src/shared/pubsub/pubsub';
import { transact } from '../src/shared/pubsub/outbox';
import type { EntityManager } from '@mikro-orm/postgresql';
import { Topic } from '../src/shared/pubsub/topics';

/** Lets the promise callbacks queued by a line's search run (fake timers leave microtasks alone). */
async function settled(): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

/** The line's rules alone (the API-level test is test/ordering.test.ts): what comes out, in what order. */
describe('InOrder', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  const line = () => {
    const out: string[] = [];
    const order = new InOrder<string>((e) => out.push(e), { openMs: 20, holdMs: 100 });
    const pub = (pos: number) => order.admit('k', pos, `#${pos}`);
    return { out, order, pub };
  };

  it('should open from the earliest event gathered, then pass what is in order at once', () => {
    const { out, pub } = line();
    pub(6);
    pub(5);
    expect(out).toEqual([]);
    jest.advanceTimersByTime(20);
    expect(out).toEqual(['#5', '#6']);
    pub(7);
    expect(out).toEqual(['#5', '#6', '#7']);
  });

  it("should start a line at once from the first place there is (a new conversation's first message): nothing can come before it", () => {
    const { out, order, pub } = line();
    pub(1);
    expect(out).toEqual(['#1']);
    pub(2);
    expect(out).toEqual(['#1', '#2']);
    // Its channel's catch-up on its way: it waits for it as any line does.
    order.holdOpening('c', 1000);
    order.admit('other', 1, 'other #1', 'c');
    expect(out).toEqual(['#1', '#2']);
    order.releaseOpening('c');
    expect(out).toEqual(['#1', '#2', 'other #1']);
  });

  it('should hold an event until the one before it comes, and give the gap up after holdMs', () => {
    const { out, order, pub } = line();
    pub(1);
    jest.advanceTimersByTime(20);
    pub(3);
    pub(4);
    expect(out).toEqual(['#1']);
    pub(2);
    expect(out).toEqual(['#1', '#2', '#3', '#4']);
    pub(6);
    jest.advanceTimersByTime(99);
    expect(out).toEqual(['#1', '#2', '#3', '#4']);
    jest.advanceTimersByTime(1);
    expect(out).toEqual(['#1', '#2', '#3', '#4', '#6']);
    expect([order.held, order.gaps]).toEqual([3, 1]);
    // A late one still goes (nothing is dropped), and the line goes on.
    pub(5);
    pub(7);
    expect(out.slice(-2)).toEqual(['#5', '#7']);
  });

  it('should give what still waits its whole wait again once the line moved on', () => {
    const { out, order, pub } = line();
    pub(1);
    jest.advanceTimersByTime(20);
    pub(3);
    jest.advanceTimersByTime(90);
    pub(5);
    jest.advanceTimersByTime(5);
    pub(2);
    expect(out).toEqual(['#1', '#2', '#3']);
    // #5 waits for #4 from here, not from when #3 began to wait.
    jest.advanceTimersByTime(50);
    pub(4);
    expect(out).toEqual(['#1', '#2', '#3', '#4', '#5']);
    expect(order.gaps).toBe(0);
  });

  it("should look for a gap's events before giving it up, and pass what came meanwhile after them", async () => {
    const { out, order, pub } = line();
    const asked: unknown[] = [];
    let answer!: (found: { pos: number; event: string }[]) => void;
    order.fillFrom((q) => {
      asked.push([q.after, q.before, q.limit]);
      return new Promise((resolve) => (answer = resolve));
    });
    pub(1);
    jest.advanceTimersByTime(20);
    pub(4);
    jest.advanceTimersByTime(100);
    // Searching for #2 and #3, between the last delivered and the last waiting.
    expect(asked).toEqual([['#1', '#4', 2]]);
    pub(3);
    pub(6);
    jest.advanceTimersByTime(50);
    expect(asked).toHaveLength(1);
    answer([{ pos: 2, event: '#2 (stored)' }, { pos: 3, event: '#3 (stored)' }]);
    await settled();
    expect(out).toEqual(['#1', '#2 (stored)', '#3', '#4']);
    expect([order.filled, order.gaps, order.awaits('k', 4), order.awaits('k', 5)]).toEqual([1, 0, false, true]);
    // #6 came during the search, past what it covered: it waits for #5 afresh, then its own search finds nothing.
    jest.advanceTimersByTime(100);
    expect(asked).toEqual([['#1', '#4', 2], ['#4', '#6', 1]]);
    answer([]);
    await settled();
    expect(out).toEqual(['#1', '#2 (stored)', '#3', '#4', '#6']);
    expect(order.gaps).toBe(1);
  });

  it('should give a gap up once its search took holdMs, as a lost publish did', async () => {
    const { out, order, pub } = line();
    order.fillFrom(() => new Promise(() => undefined));
    pub(1);
    jest.advanceTimersByTime(20);
    pub(3);
    jest.advanceTimersByTime(100);
    expect(out).toEqual(['#1']);
    jest.advanceTimersByTime(100);
    await settled();
    expect(out).toEqual(['#1', '#3']);
    expect(order.gaps).toBe(1);
  });

  it('should deliver late, once, what a search that took longer than holdMs found for a gap given up meanwhile', async () => {
    const { out, order, pub } = line();
    let answer: (found: { pos: number; event: string }[]) => void = () => undefined;
    order.fillFrom(() => new Promise((resolve) => (answer = resolve)));
    pub(1);
    jest.advanceTimersByTime(20);
    pub(4);
    jest.advanceTimersByTime(200);
    await settled();
    expect(out).toEqual(['#1', '#4']);
    // The database answers at last (busy): 2 and 3 were stored; a copy of 3's publish then is one.
    answer([{ pos: 2, event: '#2 (stored)' }, { pos: 3, event: '#3 (stored)' }]);
    await settled();
    pub(3);
    expect(out).toEqual(['#1', '#4', '#2 (stored)', '#3 (stored)']);
    expect(order.whereIs('k', 2)).toBe('read');
  });

  it('should drop the late publish of an event the search delivered, once', async () => {
    const { out, order, pub } = line();
    order.fillFrom(async () => [{ pos: 2, event: '#2 (stored)' }]);
    pub(1);
    jest.advanceTimersByTime(20);
    pub(3);
    jest.advanceTimersByTime(100);
    await settled();
    expect(out).toEqual(['#1', '#2 (stored)', '#3']);
    // #2's own publish, from an instance that stalled past holdMs: a copy.
    pub(2);
    pub(4);
    expect(out).toEqual(['#1', '#2 (stored)', '#3', '#4']);
  });

  it("should take a replay in its place and drop the original's publish when it comes after all", () => {
    const { out, order, pub } = line();
    pub(1);
    jest.advanceTimersByTime(20);
    order.admitCopy('k', 2, '#2 (replay)', 'k');
    pub(2);
    pub(3);
    expect(out).toEqual(['#1', '#2 (replay)', '#3']);
  });

  it('should give a gap up as before when the search fails', async () => {
    const { out, order, pub } = line();
    order.fillFrom(() => Promise.reject(new Error('database away')));
    pub(1);
    jest.advanceTimersByTime(20);
    pub(3);
    jest.advanceTimersByTime(100);
    await settled();
    expect(out).toEqual(['#1', '#3']);
    expect(order.gaps).toBe(1);
  });

  it('should search a gap again while the database is away, and deliver late, once, what it finds when it is back', async () => {
    const { out, order, pub } = line();
    // Stored, its sender told SERVICE_UNAVAILABLE (the connection broke with the commit), never published.
    let away = 3;
    const searches: number[] = [];
    order.fillFrom(async () => {
      searches.push(Date.now());
      if (away-- > 0) throw new Error('database away');
      return [{ pos: 2, event: '#2 (stored)' }];
    });
    pub(1);
    jest.advanceTimersByTime(20);
    pub(3);
    jest.advanceTimersByTime(100);
    await settled();
    expect(out).toEqual(['#1', '#3']);
    // Given up, then sought again after 1, 2 and 4 s: the fourth search finds it (before, never).
    for (let i = 0; i < 8; i++) {
      jest.advanceTimersByTime(1000);
      await settled();
    }
    expect(searches.length).toBe(4);
    expect(out).toEqual(['#1', '#3', '#2 (stored)']);
    // Found, no more searches; its own publish, should it come, is a copy.
    pub(2);
    jest.advanceTimersByTime(60_000);
    await settled();
    expect([searches.length, out]).toEqual([4, ['#1', '#3', '#2 (stored)']]);
  });

  it("should open a line only once its channel's catch-up joined it, or after the longest wait", () => {
    const out: string[] = [];
    const order = new InOrder<string>((e) => out.push(e), { openMs: 20, holdMs: 100 });
    order.holdOpening('g:1', 1000);
    // Live, while the catch-up is read: #101 gathers past openMs.
    order.admit('g:1', 101, '#101', 'g:1');
    jest.advanceTimersByTime(50);
    order.admit('g:1', 103, '#103', 'g:1');
    // Past holdMs too: a line waiting for its catch-up gives nothing up.
    jest.advanceTimersByTime(150);
    expect(out).toEqual([]);
    // The catch-up's #99 and #100 (#101 was published after the channel was taken) go first.
    order.admit('g:1', 99, '#99', 'g:1');
    order.admit('g:1', 100, '#100', 'g:1');
    order.releaseOpening('g:1');
    expect(out).toEqual(['#99', '#100', '#101']);
    order.admit('g:1', 102, '#102', 'g:1');
    expect(out).toEqual(['#99', '#100', '#101', '#102', '#103']);
    // A catch-up that never comes holds a line no longer than its longest wait.
    order.holdOpening('g:2', 1000);
    order.admit('g:2', 7, '#7', 'g:2');
    jest.advanceTimersByTime(999);
    expect(out).toHaveLength(5);
    jest.advanceTimersByTime(1);
    expect(out.slice(5)).toEqual(['#7']);
  });

  it("should keep a started line's gap while its channel's read-back is on its way, and give it up only after", () => {
    const { out, order, pub } = line();
    pub(1);
    jest.advanceTimersByTime(20);
    // Redis came back: what was published meanwhile is being read back on channel 'k'.
    order.holdOpening('k', 1000);
    pub(3);
    jest.advanceTimersByTime(500);
    expect(out).toEqual(['#1']);
    // The read-back's #2 fills the gap in its place.
    pub(2);
    order.releaseOpening('k');
    expect(out).toEqual(['#1', '#2', '#3']);
    // A read-back that never comes holds a gap no longer than its longest wait (and holdMs at most after).
    order.holdOpening('k', 1000);
    pub(5);
    jest.advanceTimersByTime(999);
    expect(out).toHaveLength(3);
    jest.advanceTimersByTime(101);
    expect(out.slice(3)).toEqual(['#5']);
    expect(order.gaps).toBe(1);
  });

  it('should start a line anew once its channel was let go, not wait at what went by meanwhile', () => {
    const out: string[] = [];
    const order = new InOrder<string>((e) => out.push(e), { openMs: 20, holdMs: 100 });
    order.admit('g:1', 1, '#1', 'g:1');
    jest.advanceTimersByTime(20);
    order.forget('g:1');
    // #2 was sent while this instance did not take the channel.
    order.admit('g:1', 3, '#3', 'g:1');
    jest.advanceTimersByTime(20);
    expect(out).toEqual(['#1', '#3']);
    expect(order.gaps).toBe(0);
  });
});

/** MESSAGE_ORDER_HOLD reaches the pub/sub's message lines: a busy deployment may wait longer for a late publish. */
describe('the hold of a deployment', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  const gapAfter = (holdMs: number | undefined) => {
    const env = loadEnv(holdMs === undefined ? {} : { MESSAGE_ORDER_HOLD: `${holdMs}ms` });
    const pubsub = createPubSub(undefined, createLogger({ ...env, LOG_LEVEL: 'silent' }), channelRoutes({ presencePerUser: false }), { holdMs: env.MESSAGE_ORDER_HOLD * 1000 });
    const event = (pos: number): Ordered => ({ topic: Topic.MessageAdded, payload: { pos }, channel: 'g:x', keyedOnly: false });
    pubsub.order.admit('g:x', 1, event(1));
    jest.advanceTimersByTime(20);
    pubsub.order.admit('g:x', 3, event(3));
    let waited = 0;
    while (pubsub.order.gaps === 0 && waited < 10_000) {
      jest.advanceTimersByTime(10);
      waited += 10;
    }
    return waited;
  };

  it('should give a gap up after 500 ms by default, and after MESSAGE_ORDER_HOLD when set', () => {
    expect(gapAfter(undefined)).toBe(500);
    expect(gapAfter(3000)).toBe(3000);
    // A timer can't wait past 24.8 days (Node fires it at once): a hold is a minute at most.
    expect(() => loadEnv({ MESSAGE_ORDER_HOLD: '2m' })).toThrow(/at most 60s/);
  });
});

/** An instance's lines for group g:1, taken at TAKEN, and its messages as each kind of publish brings them. */
const TAKEN = 1_000_000;
const setup = () => {
  const out: string[] = [];
  const order = new EventOrder({ dispatch: (_t, p) => void out.push((p as { content: string }).content) }, channelRoutes({ presencePerUser: false }), () => true, { openMs: 20, holdMs: 100 });
  // The channel g:1 was taken at TAKEN; a gap's search finds nothing.
  order.fillFrom(async () => [], () => TAKEN);
  const message = (pos: number, extra: Record<string, unknown> = {}) => ({
    id: `m${pos}`, conversationKey: 'g:1', groupId: '1', projectId: null, recipientId: null, senderId: 'u', sender: null,
    content: `#${pos}`, attachment: null, clientMessageId: null, createdAt: new Date(TAKEN + pos).toISOString(), editedAt: null, deletedAt: null, pos, ...extra,
  });
  const live = (pos: number) => order.admit(Topic.MessageAdded, message(pos), 'g:1');
  const resent = (pos: number, extra: Record<string, unknown> = {}) => order.admit(Topic.MessageAdded, message(pos, { resent: true, ...extra }), 'g:1');
  const replay = (pos: number, extra: Record<string, unknown> = {}) => order.admit(Topic.MessageAdded, message(pos, { replay: true, ...extra }), 'g:1');
  return { out, live, resent, replay, order, message };
};

/** A message its instance published late, its first publish having failed (Redis away there): PubSub.resendUnsent. */
describe('EventOrder: a resent message', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('should reach a conversation with no line here at once, without opening one at its old place', async () => {
    const { out, live, resent } = setup();
    resent(5);
    expect(out).toEqual(['#5']);
    // The next live message opens its own line (its search since the channel was taken finds
    // nothing): it does not wait for 6-8 from a line opened at 5.
    live(9);
    jest.advanceTimersByTime(20);
    await settled();
    expect(out).toEqual(['#5', '#9']);
  });

  it('should not reach subscriptions taken after it was stored', () => {
    const { out, resent } = setup();
    resent(5, { createdAt: new Date(TAKEN - 1).toISOString() });
    jest.advanceTimersByTime(200);
    expect(out).toEqual([]);
  });

  it('should wait, where no line was, for the read-back under way of what was stored while off Redis, and go with it in order, once', async () => {
    const { out, resent, order, message } = setup();
    // Back on Redis, this instance reads back what it missed (PubSub.recoverFrom); the sender's
    // instance, back first, sends again 2 and 3 (its publish of 1 reached no one yet).
    order.lines.holdOpening('g:1', 5000);
    resent(2);
    resent(3);
    expect(out).toEqual([]);
    for (const pos of [1, 2, 3]) order.recovered('g:1', message(pos) as never);
    order.lines.releaseOpening('g:1');
    // Before, 2 and 3 went at once and again with the read-back (an outside probe: 2, 3, 1, 2, 3).
    expect(out).toEqual(['#1', '#2', '#3']);
    resent(1);
    jest.advanceTimersByTime(200);
    await settled();
    expect(out).toEqual(['#1', '#2', '#3']);
  });

  it('should deliver late, once, a message read back after Redis came back whose place the line gave up, and never one it delivered', async () => {
    const { out, live, order, message } = setup();
    live(1);
    live(2);
    // 3 and 4 were sent while this instance was off Redis; 5 came first once it was back.
    live(5);
    jest.advanceTimersByTime(100);
    await settled();
    expect(out).toEqual(['#1', '#2', '#5']);
    // The read-back of what was stored while off Redis (PubSub.recoverFrom): 2 again, 3 and 4.
    for (const pos of [2, 3, 4, 3]) order.recovered('g:1', message(pos) as never);
    expect(out).toEqual(['#1', '#2', '#5', '#3', '#4']);
  });
});

/** A send's retry that found its message stored publishes it again, marked replay (MessageService.replayed). */
describe('EventOrder: a replayed message', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('should open a line where none was yet, for a message stored once the channel was taken, and drop its late original', async () => {
    const { out, live, replay } = setup();
    replay(5);
    jest.advanceTimersByTime(20);
    await settled();
    expect(out).toEqual(['#5']);
    // Its first publish, late after all (a stalled instance, not a dead one): a copy.
    live(5);
    live(6);
    expect(out).toEqual(['#5', '#6']);
  });

  it('should not reach subscriptions taken after it was stored, nor come again where the line passed it', async () => {
    const { out, live, replay } = setup();
    replay(5, { createdAt: new Date(TAKEN - 1).toISOString() });
    jest.advanceTimersByTime(200);
    expect(out).toEqual([]);
    live(1);
    live(2);
    replay(2);
    replay(1);
    expect(out).toEqual(['#1', '#2']);
  });
});

/** What a resent message (its first publish failed) and a replayed one (a send's retry found it stored) share. */
describe.each(['resent', 'replayed'] as const)('EventOrder: a %s message on a line', (kind) => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('should take its place on a line before it, and come late, once, on a line past it', async () => {
    const { out, live, resent, replay } = setup();
    const again = kind === 'resent' ? resent : replay;
    live(1);
    live(3);
    again(2);
    expect(out).toEqual(['#1', '#2', '#3']);
    live(6);
    jest.advanceTimersByTime(100);
    await settled();
    expect(out).toEqual(['#1', '#2', '#3', '#6']);
    // 4 and 5 were given up; their publish comes late, and is delivered once (stamped by a clock
    // behind this instance's: the place given up decides, not when the channel was taken).
    const early = { createdAt: new Date(TAKEN - 1).toISOString() };
    again(5, early);
    again(5, early);
    again(4, early);
    expect(out).toEqual(['#1', '#2', '#3', '#6', '#5', '#4']);
  });
});

/** The lobby's events name no audience: each instance asks its membership index when one is delivered. */
describe("EventOrder: a group's membership and its events", () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('should apply a change to who is in a group after the events of that group numbered before it', async () => {
    const out: string[] = [];
    const order = new EventOrder(
      { dispatch: (t, p) => void out.push(t === Topic.GroupEvent ? (p as { kind: string }).kind : `${(p as { changes: { userId: string }[] }).changes[0].userId} out`) },
      channelRoutes({ presencePerUser: false }),
      () => true,
      { openMs: 20, holdMs: 100 },
    );
    const event = (kind: string, userId: string, pos: number) =>
      order.admit(Topic.GroupEvent, { kind, groupId: 'L', isPrivate: false, userId, audience: null, createdAt: new Date().toISOString(), pos }, undefined);
    // A removal opens the group's line here, which gathers before it lets the first go; the ban
    // right after it puts its member out (the membership change) and tells it (the event).
    event('MEMBER_REMOVED', 'removed', 7);
    order.admit(Topic.MembershipChanged, { scope: 'group', id: 'L', changes: [{ userId: 'banned', member: false }] }, undefined);
    event('MEMBER_BANNED', 'banned', 8);
    expect(out).toEqual([]);
    jest.advanceTimersByTime(20);
    await settled();
    // Applied first, the ban took the removal from the one banned, a member when it happened.
    expect(out).toEqual(['MEMBER_REMOVED', 'banned out', 'MEMBER_BANNED']);
    // With nothing held, a change goes at once.
    order.admit(Topic.MembershipChanged, { scope: 'group', id: 'L', changes: [{ userId: 'leaver', member: false }] }, undefined);
    expect(out.at(-1)).toBe('leaver out');
  });
});

describe("transact: a transaction's events", () => {
  it('should ask for every publish at once, in the order they were added, once committed', async () => {
    // Awaited one by one, an account deletion's ~900 events took 0.4-5 s to go, and a change made
    // meanwhile to one of its groups overtook them (an outside probe).
    const asked: number[] = [];
    const answers: (() => void)[] = [];
    const pubsub = {
      publishSafe: (_topic: Topic, payload: { n: number }) => {
        asked.push(payload.n);
        return new Promise<boolean>((resolve) => answers.push(() => resolve(true)));
      },
    } as unknown as PubSub;
    let committed = false;
    const em = {
      getTransactionContext: () => undefined,
      transactional: async (fn: (tem: unknown) => Promise<unknown>) => {
        const r = await fn({});
        committed = true;
        return r;
      },
    } as unknown as EntityManager;
    const done = transact(em, pubsub, async (_tem, outbox) => {
      for (let n = 1; n <= 5; n++) outbox.add(Topic.GroupEvent, { n } as never);
      expect(asked).toEqual([]);
      return 'ok';
    });
    await settled();
    expect(committed).toBe(true);
    // None answered yet, and all asked for, in order.
    expect(asked).toEqual([1, 2, 3, 4, 5]);
    let finished = false;
    void done.then(() => (finished = true));
    answers.slice(0, 4).forEach((answer) => answer());
    await settled();
    expect(finished).toBe(false);
    answers[4]();
    await expect(done).resolves.toBe('ok');
  });
});

describe('PubSub: what could not be published', () => {
  /** A broker whose publishes fail while `down`, and whose reconnect the test calls. */
  const flaky = () => {
    const sent: string[] = [];
    let reconnected: (lostAt: number) => void = () => undefined;
    const broker = {
      kind: 'redis' as const,
      down: false,
      onMessage: () => undefined,
      publish: async (_channel: string, text: string) => {
        if (broker.down) throw new Error('Connection is closed.');
        sent.push(text);
      },
      subscribe: async () => undefined,
      unsubscribe: async () => undefined,
      close: async () => undefined,
      onReconnect: (l: (lostAt: number) => void) => ((reconnected = l), () => undefined),
    };
    const logger = createLogger({ ...loadEnv({}), LOG_LEVEL: 'silent' });
    const pubsub = new PubSub(broker, logger, channelRoutes({ presencePerUser: false }));
    return { broker, sent, pubsub, reconnect: () => reconnected(Date.now()) };
  };
  const message = (pos: number) => ({
    id: `m${pos}`, conversationKey: 'g:1', groupId: '1', projectId: null, recipientId: null, senderId: 'u',
    content: `#${pos}`, attachment: null, clientMessageId: null, createdAt: new Date().toISOString(), editedAt: null, deletedAt: null, pos,
  });

  it('should publish each again once, in order, marked resent, however many tries the publisher needs', async () => {
    const { broker, sent, pubsub, reconnect } = flaky();
    broker.down = true;
    // Each message with its sidebar row, as a send publishes them.
    const row = (pos: number) => ({
      conversationKey: 'g:1', kind: 'GROUP' as const, groupId: '1', projectId: null, userIds: null, title: null, titles: null,
      message: message(pos), head: [pos, `m${pos}`, message(pos).createdAt] as [number, string, string], members: {}, only: null,
    });
    for (const pos of [1, 2, 3]) {
      const together = [{ topic: Topic.MessageAdded, payload: message(pos) }, { topic: Topic.ConversationUpdated, payload: row(pos) }] as Parameters<PubSub['publishTogetherSafe']>[0];
      expect(await pubsub.publishTogetherSafe(together)).toBe(false);
    }
    // Back on Redis, the publisher not yet: the tries fail, and are kept once each.
    jest.useFakeTimers();
    try {
      reconnect();
      for (let i = 0; i < 3; i++) {
        await settled();
        jest.advanceTimersByTime(1000);
      }
      expect(sent).toEqual([]);
      broker.down = false;
      await settled();
      jest.advanceTimersByTime(1000);
      for (let i = 0; i < 5; i++) await settled();
    } finally {
      jest.useRealTimers();
    }
    // Every event of every envelope, each once (a failed try kept the rows again, and they pushed
    // the messages out): the messages in order, then the rows in order, which wait for the other
    // instances to be back too (no instance reads them back).
    const events = sent.flatMap((t) => {
      const e = JSON.parse(t);
      return [e.topic, ...(e.more ?? [])].map((topic: string, i: number) => [topic, i === 0 ? e.payload : e.then[i - 1]] as const);
    });
    expect(events.map(([topic, p]) => (topic === Topic.MessageAdded ? `${p.content} resent:${p.resent}` : `row ${p.head[0]}`))).toEqual([
      '#1 resent:true', '#2 resent:true', '#3 resent:true', 'row 1', 'row 2', 'row 3',
    ]);
    await pubsub.dispose();
  });
});

/** An edit's sidebar row and a newer messageEvent of the same message, as two instances publish them close together. */
describe('EventOrder: a sidebar row behind a newer messageEvent', () => {
  const setupRows = () => {
    const out: { topic: Topic; payload: any }[] = [];
    const order = new EventOrder({ dispatch: (topic, payload) => void out.push({ topic, payload }) }, channelRoutes({ presencePerUser: false }), () => true);
    const at = new Date().toISOString();
    const message = (version: number, reactions: string[]) => ({
      id: 'm1', conversationKey: 'g:1', groupId: '1', projectId: null, recipientId: null, senderId: 'u', sender: null,
      content: 'x3', attachment: null, clientMessageId: null, createdAt: at, editedAt: at, deletedAt: null, version, reactions,
    });
    const row = (version: number, reactions: string[]) => ({
      conversationKey: 'g:1', kind: 'GROUP' as const, groupId: '1', projectId: null, userIds: null, title: null, titles: null,
      message: message(version, reactions), head: [1, 'm1', at] as [number, string, string], members: {}, only: null,
    });
    return { out, order, message, row };
  };

  it("should carry the newer copy a messageEvent brought first, so that no subscriber ends on the edit's reactions", () => {
    const { out, order, message, row } = setupRows();
    // The reaction (version 3) reached this instance before the row of the edit (version 2) made on another.
    order.admit(Topic.MessageEvent, { kind: 'REACTIONS_CHANGED', message: message(3, ['👍', '🔥']) }, 'g:1');
    order.admit(Topic.ConversationUpdated, row(2, ['👍']), 'g:1');
    expect(out.map((e) => [e.topic, e.payload.message.version, e.payload.message.reactions])).toEqual([
      [Topic.MessageEvent, 3, ['👍', '🔥']],
      [Topic.ConversationUpdated, 3, ['👍', '🔥']],
    ]);
    // In the usual order both go as they are.
    order.admit(Topic.ConversationUpdated, row(4, ['👍']), 'g:1');
    order.admit(Topic.MessageEvent, { kind: 'REACTIONS_CHANGED', message: message(5, []) }, 'g:1');
    expect(out.slice(2).map((e) => [e.topic, e.payload.message.version])).toEqual([
      [Topic.ConversationUpdated, 4],
      [Topic.MessageEvent, 5],
    ]);
  });
});
