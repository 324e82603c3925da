import { Redis } from 'ioredis';
import pg from 'pg';
import { codeOf, eventually, gql, listen as listenOn, ok, sleep, subscribe, wsClient } from './helpers/graphql';
import { createTestServer, describeRedis, redisName, type TestServer } from './helpers/server';
import { befriend, lobbyOf, signup, type TestUser, sendMessage, request } from './helpers/factories';
import { CreateGroupDocument, JoinGroupDocument, LeaveGroupDocument } from '../generated/client/graphql';
import { TcpProxy, throughRedisProxy } from './helpers/tcp-proxy';

const ALL_MESSAGES = 'subscription { messageAdded { content } }';

/** `u`'s subscription (messageAdded over all their conversations unless said), running on `s`. */
const listen = (s: TestServer, u: TestUser, query = ALL_MESSAGES) => listenOn<any>(s, u, query);

const contents = (values: any[]) => values.map((v) => v.messageAdded.content);

/** A through the Redis proxy, B on Redis; Ada's group with Bo in it; `back` resolves when A is on Redis again. */
/** Resolves when the instance is next back on Redis after a loss. */
const reconnected = (s: TestServer) =>
  new Promise<void>((resolve) => {
    const off = s.services.pubsub.onReconnect(() => (off(), resolve()));
  });

async function cutOffPair(proxiedUrl: string, name: string, { bothCut = false } = {}) {
  const a = await createTestServer({ REDIS_URL: proxiedUrl });
  // Both through the proxy: Redis itself gone for every instance (B's publishes fail too, and are sent again once it is back).
  const b = await createTestServer(bothCut ? { REDIS_URL: proxiedUrl } : {}, { clean: false });
  const [ada, bo] = [await signup(b.url), await signup(b.url)];
  const group = (await request(b.url, CreateGroupDocument, { name }, ada.token)).createGroup.id;
  await request(b.url, JoinGroupDocument, { groupId: group }, bo.token);
  const back = bothCut ? Promise.all([reconnected(a), reconnected(b)]).then(() => undefined) : reconnected(a);
  return { a, b, ada, bo, group, back };
}


/**
 * While A is off Redis: b1 and b2 through B, then a1 through A (delivered on A at once); Redis back,
 * 'after' through B. Bo's socket on A gets the four, in that order.
 */
async function twoThenOneHere(o: { a: TestServer; b: TestServer; ada: TestUser; group: string; live: { nth(n: number): Promise<unknown>; values: any[] }; proxy: { restore(): Promise<void> }; back: Promise<void> }) {
  const { a, b, ada, group, live } = o;
  await sendMessage(b.url, ada.token, { groupId: group, content: 'b1' });
  await sendMessage(b.url, ada.token, { groupId: group, content: 'b2' });
  await sendMessage(a.url, ada.token, { groupId: group, content: 'a1' });
  await live.nth(3);
  await afterTheOutage(o, ['b1', 'b2', 'a1']);
}

/** Redis back (the proxy restored, the instances on it again), 'after' through B: Bo's socket on A got `before`, then it, and nothing more. */
async function afterTheOutage(o: Pick<Parameters<typeof twoThenOneHere>[0], 'b' | 'ada' | 'group' | 'live' | 'proxy' | 'back'>, before: string[]) {
  await o.proxy.restore();
  await o.back;
  // What came before is in (one sent while away may come only now, read back), then one more.
  await o.live.nth(before.length);
  await sendMessage(o.b.url, o.ada.token, { groupId: o.group, content: 'after' });
  await o.live.nth(before.length + 1);
  await sleep(300);
  expect(contents(o.live.values)).toEqual([...before, 'after']);
}

/** One counter (or labelled series) of an instance's /metrics. */
async function metric(s: TestServer, name: string): Promise<number> {
  const text = await (await fetch(s.url.replace('/graphql', '/metrics'))).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : 0;
}

/**
 * Instance A on Redis through `proxiedUrl`, B straight on it; bo, on B, subscribed to a group of
 * ada's, has had her first message ('before').
 */
async function heldPair(proxiedUrl: string) {
  const a = await createTestServer({ REDIS_URL: proxiedUrl });
  const b = await createTestServer({}, { clean: false });
  const [ada, bo] = [await signup(a.url), await signup(a.url)];
  const g = (await request(a.url, CreateGroupDocument, { name: 'Held' }, ada.token)).createGroup.id;
  await request(a.url, JoinGroupDocument, { groupId: g }, bo.token);
  const onB = await listenOn<any>(b, bo, 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }', { g });
  await sendMessage(a.url, ada.token, { groupId: g, content: 'before' });
  await onB.nth(1);
  return { a, b, ada, bo, g, onB };
}

/**
 * Once Redis answers again: 'while held' has reached B, and A's next message after it, each once
 * (a copy sent again after the stall would come late, after a pause for it).
 */
async function eachOnceAfterTheStall({ a, ada, g, onB }: Awaited<ReturnType<typeof heldPair>>): Promise<void> {
  await onB.nth(2, 10_000);
  await sendMessage(a.url, ada.token, { groupId: g, content: 'after' });
  await onB.nth(3);
  await sleep(1500);
  expect(contents(onB.values)).toEqual(['before', 'while held', 'after']);
}

describeRedis('event routing', () => {
  it('should examine only the subscriptions of an event’s local recipients', async () => {
    const s = await createTestServer();
    const [ada, bo] = [await signup(s.url), await signup(s.url)];
    const group = (await request(s.url, CreateGroupDocument, { name: 'Small room' }, ada.token)).createGroup.id;
    await request(s.url, JoinGroupDocument, { groupId: group }, bo.token);
    const subs = [await listen(s, ada), await listen(s, bo)];
    // Bystanders on the same instance, each on "all my conversations", in none of the room's.
    for (let i = 0; i < 20; i++) await listen(s, await signup(s.url));
    const before = await metric(s, 'parley_fanout_evaluations_total');
    await sendMessage(s.url, ada.token, { groupId: group, content: 'just us' });
    for (const sub of subs) expect(contents([await sub.nth(1)])).toEqual(['just us']);
    expect((await metric(s, 'parley_fanout_evaluations_total')) - before).toBe(2);
  });

  it('should not send a conversation’s events to an instance with none of its members', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [ada, bo, stranger] = [await signup(a.url), await signup(a.url), await signup(b.url)];
    const group = (await request(a.url, CreateGroupDocument, { name: 'On A only', isPrivate: true }, ada.token)).createGroup.id;
    await ok(gql(a.url, 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }', { g: group, u: bo.id }, ada.token));
    const onA = await listen(a, bo);
    const onB = await listen(b, stranger);
    const receivedOnB = await metric(b, 'parley_pubsub_events_received_total{topic="parley.message.added"}');
    for (let i = 1; i <= 5; i++) await sendMessage(b.url, ada.token, { groupId: group, content: `m${i}` });
    // Then a lobby message from A as a barrier: once B has it, it would have had any of the five before it.
    await sendMessage(a.url, ada.token, { groupId: await lobbyOf(a.url, ada.token), content: 'barrier' });
    await onA.nth(6);
    await onB.nth(1);
    expect(contents(onA.values)).toEqual(['m1', 'm2', 'm3', 'm4', 'm5', 'barrier']);
    expect(contents(onB.values)).toEqual(['barrier']);
    // B published them, and took none back: it has no member of the group connected.
    expect(await metric(b, 'parley_pubsub_events_received_total{topic="parley.message.added"}')).toBe(receivedOnB + 1);
    expect(b.services.pubsub.takenChannels()).not.toContain(`parley.conv:g:${group}`);
    expect(a.services.pubsub.takenChannels()).toContain(`parley.conv:g:${group}`);
    // A took each from Redis once, and delivered each once.
    expect(await metric(a, 'parley_pubsub_events_received_total{topic="parley.message.added"}')).toBeGreaterThanOrEqual(5);
  });

  it('should carry a message and the sidebar change it makes in one envelope, read whole by other instances and the first event by an earlier release', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [ada, bo] = [await signup(a.url), await signup(a.url)];
    const group = (await request(a.url, CreateGroupDocument, { name: 'One envelope' }, ada.token)).createGroup.id;
    await request(a.url, JoinGroupDocument, { groupId: group }, bo.token);
    // Bo on A (messages and sidebar); Ada on B, so that B holds the channel and hears its own echo.
    const messages = await listen(a, bo);
    const sidebar = await listen(a, bo, 'subscription { conversationUpdated { id unreadCount lastMessage { content } } }');
    await listen(b, ada);
    const channel = redisName(`parley.conv:g:${group}`);
    // An instance of an earlier release: it reads `topic` and `payload`, nothing else.
    const earlier = new Redis(a.env.REDIS_URL!);
    const readByEarlier: { topic: string; content: string }[] = [];
    earlier.on('message', (_c: string, text: string) => {
      const e = JSON.parse(text);
      readByEarlier.push({ topic: e.topic, content: e.payload.content });
    });
    await earlier.subscribe(channel);
    const topics = ['parley.message.added', 'parley.conversation.updated'];
    const received = (s: TestServer) => Promise.all(topics.map((t) => metric(s, `parley_pubsub_events_received_total{topic="${t}"}`)));
    const [onA, onB] = [await received(a), await received(b)];
    try {
      await sendMessage(b.url, ada.token, { groupId: group, content: 'together' });
      expect(contents([await messages.nth(1)])).toEqual(['together']);
      expect((await sidebar.nth(1)).conversationUpdated).toMatchObject({ unreadCount: 1, lastMessage: { content: 'together' } });
      // One PUBLISH: the earlier release got one message, the message's own event.
      await eventually(() => readByEarlier.length >= 1);
      await sleep(100);
      expect(readByEarlier).toEqual([{ topic: 'parley.message.added', content: 'together' }]);
      // A took both events from it; B's echo counts both too.
      expect(await received(a)).toEqual(onA.map((n) => n + 1));
      await eventually(async () => (await received(b)).every((n, i) => n === onB[i] + 1));
    } finally {
      earlier.disconnect();
    }
  });

  it('should carry a conversation’s edits, reactions, read receipts, typing and sidebar updates only to instances with a member', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [ada, bo, stranger] = [await signup(a.url), await signup(a.url), await signup(b.url)];
    const group = (await request(a.url, CreateGroupDocument, { name: 'Quiet on B', isPrivate: true }, ada.token)).createGroup.id;
    await ok(gql(a.url, 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }', { g: group, u: bo.id }, ada.token));
    const conversation = { groupId: group };
    // Members on A, on every stream of the conversation; a stranger on B on the same streams, without argument.
    const streams = [
      'subscription { messageEvent { kind message { id } } }',
      'subscription { typing { typing user { id } } }',
      'subscription { readReceipt { lastReadMessageId user { id } } }',
      'subscription { conversationUpdated { id unreadCount } }',
    ];
    // Ada reads the receipts (nobody is told of their own marker); Bo everything else.
    const onA = await Promise.all(streams.map((q) => listen(a, q.includes('readReceipt') ? ada : bo, q)));
    const onB = await Promise.all(streams.map((q) => listen(b, stranger, q)));
    const topics = ['parley.message.event', 'parley.conversation.typing', 'parley.conversation.read', 'parley.conversation.updated'];
    const receivedOnB = () => Promise.all(topics.map((t) => metric(b, `parley_pubsub_events_received_total{topic="${t}"}`)));
    const before = await receivedOnB();
    // Everything is done through B, so B publishes every event; A has the members.
    const id = (await sendMessage(b.url, ada.token, { groupId: group, content: 'first' })).id;
    await ok(gql(b.url, 'mutation($m: ID!) { editMessage(messageId: $m, content: "fixed") { id } }', { m: id }, ada.token));
    await ok(gql(b.url, 'mutation($m: ID!) { addReaction(messageId: $m, emoji: "👍") { id } }', { m: id }, bo.token));
    await ok(gql(b.url, 'mutation($c: ConversationInput!) { markRead(conversation: $c) { id } }', { c: conversation }, bo.token));
    await ok(gql(b.url, 'mutation($c: ConversationInput!) { setTyping(conversation: $c) }', { c: conversation }, ada.token));
    const [events, typing, receipts, updated] = onA;
    expect((await events.nth(2)).messageEvent.kind).toBe('REACTIONS_CHANGED');
    expect(events.values.map((v) => v.messageEvent.kind)).toEqual(['EDITED', 'REACTIONS_CHANGED']);
    expect((await typing.nth(1)).typing).toEqual({ typing: true, user: { id: ada.id } });
    expect((await receipts.nth(1)).readReceipt).toEqual({ lastReadMessageId: id, user: { id: bo.id } });
    // The send, the edit of the last message, the marker.
    await eventually(() => updated.values.length >= 3);
    expect(updated.values.map((v) => v.conversationUpdated.unreadCount)).toEqual([1, 1, 0]);
    // A took them from Redis; B, with no member connected, took none back and delivered nothing.
    expect(await metric(a, 'parley_pubsub_events_received_total{topic="parley.conversation.typing"}')).toBeGreaterThanOrEqual(1);
    expect(await receivedOnB()).toEqual(before);
    for (const sub of onB) expect(sub.values).toEqual([]);
    expect(b.services.pubsub.takenChannels()).not.toContain(`parley.conv:g:${group}`);
  });

  it('should deliver a direct message once to each of its two users, wherever their sockets are', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [ada, bo] = [await signup(a.url), await signup(a.url)];
    await befriend(a.url, ada, bo);
    // Both on B (so B gets the message on both user channels), and Ada on A too.
    const subs = [await listen(b, ada), await listen(b, bo), await listen(a, ada)];
    await ok(gql(a.url, 'mutation($u: ID!) { sendMessage(input: { toUserId: $u, content: "psst" }) { id } }', { u: bo.id }, ada.token));
    // A second one as a barrier: once it arrives, a duplicate of the first would have.
    await ok(gql(a.url, 'mutation($u: ID!) { sendMessage(input: { toUserId: $u, content: "then" }) { id } }', { u: bo.id }, ada.token));
    for (const sub of subs) await sub.nth(2);
    for (const sub of subs) expect(contents(sub.values)).toEqual(['psst', 'then']);
  });

  it('should remember what a channel carried only while a join’s catch-up may repeat it', async () => {
    const s = await createTestServer();
    const [ada, bo] = [await signup(s.url), await signup(s.url)];
    const lobby = await lobbyOf(s.url, ada.token);
    const subs = [await listen(s, ada), await listen(s, bo)];
    for (let i = 1; i <= 3; i++) await sendMessage(s.url, ada.token, { groupId: lobby, content: `m${i}` });
    for (const sub of subs) expect(contents([await sub.nth(3)])).toEqual(['m3']);
    // Taken as its members connected: nothing to catch up, so nothing kept of the messages it carried.
    expect(s.services.pubsub.takenChannels()).toEqual(expect.arrayContaining([`parley.conv:g:${lobby}`, `parley.conv:u:${ada.id}`, `parley.conv:u:${bo.id}`]));
    expect(s.services.pubsub.rememberingChannels()).toEqual([]);
    // Taken as a connected member joins: caught up from the database, so it skips what arrived meanwhile.
    const group = (await request(s.url, CreateGroupDocument, { name: 'Joined live' }, ada.token)).createGroup.id;
    await request(s.url, JoinGroupDocument, { groupId: group }, bo.token);
    await sendMessage(s.url, ada.token, { groupId: group, content: 'welcome' });
    for (const sub of subs) expect(contents([await sub.nth(4)])).toEqual(['welcome']);
    expect(s.services.pubsub.rememberingChannels()).toEqual([`parley.conv:g:${group}`]);
  });

  it('should deliver the next message after a join made on another instance, and nothing after leaving', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [ada, bo] = [await signup(b.url), await signup(b.url)];
    const group = (await request(b.url, CreateGroupDocument, { name: 'Joined live' }, ada.token)).createGroup.id;
    const sub = await listen(a, bo);
    await request(b.url, JoinGroupDocument, { groupId: group }, bo.token);
    await sendMessage(b.url, ada.token, { groupId: group, content: 'welcome' });
    expect(contents([await sub.nth(1)])).toEqual(['welcome']);
    await request(b.url, LeaveGroupDocument, { groupId: group }, bo.token);
    await eventually(() => !a.services.pubsub.takenChannels().includes(`parley.conv:g:${group}`));
    await sendMessage(b.url, ada.token, { groupId: group, content: 'gone' });
    // A lobby message after it as a barrier: once it arrives, 'gone' would have.
    await sendMessage(b.url, ada.token, { groupId: await lobbyOf(b.url, ada.token), content: 'barrier' });
    await sub.nth(2);
    expect(contents(sub.values)).toEqual(['welcome', 'barrier']);
  });

  it('should lose nothing published while the instance is still subscribing to a newly joined conversation', async () => {
    // A reaches Redis through a proxy that can hold what A sends: its SUBSCRIBE arrives late.
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const a = await createTestServer({ REDIS_URL: proxiedUrl });
      const b = await createTestServer({}, { clean: false });
      const [ada, bo] = [await signup(b.url), await signup(b.url)];
      const group = (await request(b.url, CreateGroupDocument, { name: 'Racy' }, ada.token)).createGroup.id;
      const sub = await listen(a, bo, 'subscription { messageAdded { content mentions { id } } }');
      proxy.hold();
      await request(b.url, JoinGroupDocument, { groupId: group }, bo.token);
      // A has seen the join (events still reach it) but its SUBSCRIBE is held: this message misses the channel.
      await eventually(() => a.services.memberships.has('group', bo.id, group));
      await sendMessage(b.url, ada.token, { groupId: group, content: `during the switch @${bo.username}` });
      const redis = new Redis(process.env.REDIS_URL!);
      try {
        expect(((await redis.pubsub('NUMSUB', redisName(`parley.conv:g:${group}`))) as [string, number])[1]).toBe(0);
      } finally {
        redis.disconnect();
      }
      proxy.release();
      // Read back by the join's catch-up, whole: its mentions too.
      expect((await sub.nth(1)).messageAdded).toEqual({ content: `during the switch @${bo.username}`, mentions: [{ id: bo.id }] });
      await sendMessage(b.url, ada.token, { groupId: group, content: 'after' });
      // A lobby message after it as a barrier: once it arrives, a duplicate of the others would have.
      await sendMessage(b.url, ada.token, { groupId: await lobbyOf(b.url, ada.token), content: 'barrier' });
      await sub.nth(3);
      expect(contents(sub.values)).toEqual([`during the switch @${bo.username}`, 'after', 'barrier']);
    });
  });

  it('should deliver what was published while the instance was off Redis once it is back, in order and once, with no next message to show the gap', async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const a = await createTestServer({ REDIS_URL: proxiedUrl });
      const b = await createTestServer({}, { clean: false });
      const [ada, bo, cy, dan] = [await signup(b.url), await signup(b.url), await signup(b.url), await signup(b.url)];
      await befriend(b.url, ada, cy);
      const group = (await request(b.url, CreateGroupDocument, { name: 'Cut off' }, ada.token)).createGroup.id;
      await request(b.url, JoinGroupDocument, { groupId: group }, bo.token);
      await request(b.url, JoinGroupDocument, { groupId: group }, dan.token);
      const GROUP_ADDED = 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }';
      const inGroup = await listenOn<any>(a, bo, GROUP_ADDED, { g: group });
      const removed = await listenOn<any>(a, dan, ALL_MESSAGES);
      const direct = await listen(a, cy);
      await sendMessage(b.url, ada.token, { groupId: group, content: 'before' });
      await sendMessage(b.url, ada.token, { toUserId: cy.id, content: 'dm before' });
      await Promise.all([inGroup.nth(1), direct.nth(1), removed.nth(1)]);
      const back = new Promise<void>((resolve) => {
        const off = a.services.pubsub.onReconnect(() => (off(), resolve()));
      });
      // A is off Redis: what B publishes meanwhile never reaches it, Dan's removal included.
      await proxy.cut();
      await ok(gql(b.url, 'mutation($g: ID!, $u: ID!) { removeGroupMember(groupId: $g, userId: $u) { id } }', { g: group, u: dan.id }, ada.token));
      await sendMessage(b.url, ada.token, { groupId: group, content: 'away 1' });
      await sendMessage(b.url, ada.token, { groupId: group, content: 'away 2' });
      await sendMessage(b.url, ada.token, { toUserId: cy.id, content: 'dm away' });
      await proxy.restore();
      await back;
      // Nothing is sent after them: only the read-back brings them.
      await Promise.all([inGroup.nth(3), direct.nth(2)]);
      await sendMessage(b.url, ada.token, { groupId: group, content: 'after' });
      await sendMessage(b.url, ada.token, { toUserId: cy.id, content: 'dm after' });
      await Promise.all([inGroup.nth(4), direct.nth(3)]);
      await sleep(300);
      expect(contents(inGroup.values)).toEqual(['before', 'away 1', 'away 2', 'after']);
      expect(contents(direct.values)).toEqual(['dm before', 'dm away', 'dm after']);
      // Read again once A is back: Dan's removal holds there too, for what was read back and what came after.
      expect(contents(removed.values)).toEqual(['before']);
    });
  });

  it('should hold a block made while the instance was off Redis once it is back, for the blocker\'s sockets there', async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const a = await createTestServer({ REDIS_URL: proxiedUrl });
      const b = await createTestServer({}, { clean: false });
      const [ada, bo, cy] = [await signup(b.url), await signup(b.url), await signup(b.url)];
      const group = (await request(b.url, CreateGroupDocument, { name: 'Blocked meanwhile' }, ada.token)).createGroup.id;
      for (const u of [bo, cy]) await request(b.url, JoinGroupDocument, { groupId: group }, u.token);
      const GROUP_ADDED = 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }';
      const onA = await listenOn<any>(a, bo, GROUP_ADDED, { g: group });
      await sendMessage(b.url, ada.token, { groupId: group, content: 'before' });
      await onA.nth(1);
      const back = new Promise<void>((resolve) => {
        const off = a.services.pubsub.onReconnect(() => (off(), resolve()));
      });
      // A is off Redis: Bo's block, answered by B, is never told to A.
      await proxy.cut();
      await ok(gql(b.url, 'mutation($u: ID!) { blockUser(userId: $u) }', { u: ada.id }, bo.token));
      await sendMessage(b.url, ada.token, { groupId: group, content: 'while away' });
      await proxy.restore();
      await back;
      // The lists are read again as A comes back (before what was stored meanwhile is read back);
      // 'after' is published live, so it waits for that (without the resync, this never holds).
      await eventually(() => a.services.safety.hides(bo.id, ada.id), 5000);
      await sendMessage(b.url, ada.token, { groupId: group, content: 'after' });
      // Cy's message as a barrier: once it arrives, Ada's before it would have.
      await sendMessage(b.url, cy.token, { groupId: group, content: 'barrier' });
      await onA.nth(2);
      await sleep(200);
      expect(contents(onA.values)).toEqual(['before', 'barrier']);
    });
  });

  it("should bring other instances' subscribers what an instance stored while it could not publish, once it is back on Redis", async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const a = await createTestServer({ REDIS_URL: proxiedUrl });
      const b = await createTestServer({}, { clean: false });
      const [ada, bo] = [await signup(b.url), await signup(b.url)];
      const GROUP_ADDED = 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }';
      const [quiet, busy] = [(await request(b.url, CreateGroupDocument, { name: 'Quiet' }, ada.token)).createGroup.id, (await request(b.url, CreateGroupDocument, { name: 'Busy' }, ada.token)).createGroup.id];
      for (const g of [quiet, busy]) await request(b.url, JoinGroupDocument, { groupId: g }, bo.token);
      const [onQuiet, onBusy] = [await listenOn<any>(b, bo, GROUP_ADDED, { g: quiet }), await listenOn<any>(b, bo, GROUP_ADDED, { g: busy })];
      const rows = await listenOn<any>(b, bo, 'subscription { conversationUpdated { id unreadCount lastMessage { content } } }');
      // B has had a message of the busy group (its line stands), none of the quiet one.
      await sendMessage(a.url, ada.token, { groupId: busy, content: 'before' });
      await onBusy.nth(1);
      const back = new Promise<void>((resolve) => {
        const off = a.services.pubsub.onReconnect(() => (off(), resolve()));
      });
      // A can't publish: its sends are stored and answered, and B hears nothing of them; Bo's own
      // send through A moves his read marker there.
      await proxy.cut();
      await sendMessage(a.url, ada.token, { groupId: busy, content: 'stored, not published' });
      await sendMessage(a.url, ada.token, { groupId: quiet, content: 'first, not published' });
      await sendMessage(a.url, bo.token, { groupId: busy, content: 'mine, through A' });
      await proxy.restore();
      await back;
      // Nothing is sent after them: A publishes them again, each message's sidebar row after it
      // (one at a time): the row of Bo's own send, which moved his marker, reaches B before 'after'
      // is sent (under a loaded CI run, 'after' went out between the two and read 4).
      await Promise.all([onBusy.nth(3), onQuiet.nth(1)]);
      await eventually(() => rows.values.some((v) => v.conversationUpdated.lastMessage?.content === 'mine, through A'));
      await sendMessage(b.url, ada.token, { groupId: busy, content: 'after' });
      await onBusy.nth(4);
      // B's row knows Bo read up to his own message: 'after' is his one unread there.
      const last = await eventually(() => rows.values.map((v) => v.conversationUpdated).find((r) => r.lastMessage?.content === 'after'));
      expect(last.unreadCount).toBe(1);
      await sleep(300);
      expect(contents(onBusy.values)).toEqual(['before', 'stored, not published', 'mine, through A', 'after']);
      expect(contents(onQuiet.values)).toEqual(['first, not published']);
    });
  });

  it('should deliver exactly once while members join and leave during a burst from two instances', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const owner = await signup(a.url);
    const group = (await request(a.url, CreateGroupDocument, { name: 'Busy' }, owner.token)).createGroup.id;
    const steady = await signup(a.url);
    await request(a.url, JoinGroupDocument, { groupId: group }, steady.token);
    const watcher = await listen(b, steady);
    const churners = [await signup(a.url), await signup(a.url), await signup(a.url)];
    const churnSubs = await Promise.all(churners.map((u) => listen(b, u)));
    const sends: Promise<unknown>[] = [];
    const churn: Promise<unknown>[] = [];
    for (let i = 0; i < 30; i++) {
      sends.push(sendMessage(i % 2 ? a.url : b.url, owner.token, { groupId: group, content: `m${i}` }));
      const u = churners[i % churners.length];
      churn.push((i % 6 < 3 ? request(a.url, JoinGroupDocument, { groupId: group }, u.token) : request(a.url, LeaveGroupDocument, { groupId: group }, u.token)).catch(() => undefined));
      // A pause every five, so joins and leaves land between sends rather than all before them.
      if (i % 5 === 4) await sleep(10);
    }
    await Promise.all([...sends, ...churn]);
    await watcher.nth(30);
    // Then a lobby message from each instance as a barrier: once both arrive, a late duplicate would have.
    const lobby = await lobbyOf(a.url, owner.token);
    for (const url of [a.url, b.url]) await sendMessage(url, owner.token, { groupId: lobby, content: `barrier ${url}` });
    const done = (got: string[]) => got.includes(`barrier ${a.url}`) && got.includes(`barrier ${b.url}`);
    await eventually(() => [watcher, ...churnSubs].every((sub) => done(contents(sub.values))));
    // The steady member got every message exactly once; a churner never got one twice.
    const sent = (got: string[]) => got.filter((t) => !t.startsWith('barrier'));
    expect(sent(contents(watcher.values)).sort()).toEqual(Array.from({ length: 30 }, (_, i) => `m${i}`).sort());
    for (const s of churnSubs) {
      const got = contents(s.values);
      expect(new Set(got).size).toBe(got.length);
    }
  });
  it("should not deliver twice a message sent through the joiner's instance while its join catches up", async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const owner = await signup(a.url);
    for (let trial = 0; trial < 10; trial++) {
      const group = (await request(a.url, CreateGroupDocument, { name: `Catch-up ${trial}` }, owner.token)).createGroup.id;
      // The joiner's socket is the only one of the group's members on b: the join makes b take the channel and catch up.
      const joiner = await signup(a.url);
      const sub = await listen(b, joiner);
      const sends: Promise<unknown>[] = [];
      for (let i = 0; i < 12; i++) {
        sends.push(sendMessage(b.url, owner.token, { groupId: group, content: `t${trial} m${i}` }));
        if (i === 4) sends.push(request(a.url, JoinGroupDocument, { groupId: group }, joiner.token));
      }
      await Promise.all(sends);
      await sendMessage(b.url, owner.token, { groupId: group, content: `t${trial} barrier` });
      await eventually(() => contents(sub.values).includes(`t${trial} barrier`));
      const got = contents(sub.values);
      expect(got.length).toBe(new Set(got).size);
    }
  });

  it("should bring a joiner only what was sent after the join, in the conversation's order, through its catch-up", async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const owner = await signup(a.url);
    const HISTORY = 'query($g: ID!) { history(conversation: { groupId: $g }, last: 100) { edges { node { content } } } }';
    for (let trial = 0; trial < 5; trial++) {
      const group = (await request(a.url, CreateGroupDocument, { name: `Joined ${trial}` }, owner.token)).createGroup.id;
      // Said before the join: history to the joiner, not news.
      for (let i = 0; i < 3; i++) await sendMessage(b.url, owner.token, { groupId: group, content: `t${trial} before ${i}` });
      // The joiner's socket is the group's only member on b: the join makes b take the channel and catch up.
      const joiner = await signup(a.url);
      const sub = await listen(b, joiner);
      const joined = request(a.url, JoinGroupDocument, { groupId: group }, joiner.token);
      const sends = Array.from({ length: 12 }, (_, i) => sendMessage(i % 2 ? a.url : b.url, owner.token, { groupId: group, content: `t${trial} m${i}` }));
      await Promise.all([joined, ...sends]);
      // Sent once the join was answered: every one of them is news to the joiner.
      for (let i = 0; i < 4; i++) await sendMessage(i % 2 ? a.url : b.url, owner.token, { groupId: group, content: `t${trial} after ${i}` });
      await sendMessage(b.url, owner.token, { groupId: group, content: `t${trial} barrier` });
      await eventually(() => contents(sub.values).includes(`t${trial} barrier`));
      const got = contents(sub.values);
      expect(got.filter((t) => t.includes('before'))).toEqual([]);
      expect(got.filter((t) => t.includes(' after '))).toEqual([0, 1, 2, 3].map((i) => `t${trial} after ${i}`));
      const history = (await ok(gql(a.url, HISTORY, { g: group }, joiner.token))).history.edges.map((e: any) => e.node.content);
      expect(got).toEqual(history.filter((t: string) => got.includes(t)));
    }
  });

  it('should answer sends, sign-ins and readiness while Redis holds every command, and deliver the sends once it answers again', async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      // A Redis that stops answering without closing its connections (a stopped process, a network
      // partition): nothing fails at once, and without a bound every request waiting on it hung.
      const held = await heldPair(proxiedUrl);
      const { a, ada, g } = held;
      proxy.hold();
      try {
        // Each answered within a bound of a few REDIS_COMMAND_TIMEOUTs (2 s): without one, each
        // waited as long as the stall (20-65 s in a probe); with it alone, a sign-in waited eight
        // in turn (a command at a time, each timed out), where a command now fails at once while
        // an older one is held.
        const bounded = <T>(what: Promise<T>) => Promise.race([what, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no answer in 8 s')), 8_000).unref())]);
        const sent = await bounded(sendMessage(a.url, ada.token, { groupId: g, content: 'while held', clientMessageId: 'held-1' }));
        expect(sent.content).toBe('while held');
        const login = await bounded(gql(a.url, 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }', { u: ada.username, p: ada.password }));
        expect(login.errors).toBeUndefined();
        expect((await bounded(signup(a.url))).token).toBeTruthy();
        const ready = await bounded(fetch(a.url.replace('/graphql', '/readyz')));
        expect(ready.status).toBe(503);
        // What needs Redis to answer is refused as with Redis away: to try again, not an internal error.
        expect(codeOf(await bounded(gql(a.url, 'mutation { streamTicket }', {}, ada.token)))).toBe('SERVICE_UNAVAILABLE');
      } finally {
        proxy.release();
      }
      // The publish held meanwhile reaches B's subscriber once Redis answers, once.
      await eachOnceAfterTheStall(held);
    });
  }, 60_000);

  it('should deliver a send whose publish Redis held once, after the stall: Redis runs the held publish, and it is not sent again', async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const held = await heldPair(proxiedUrl);
      const { a, ada, g } = held;
      proxy.hold(true);
      try {
        // Its PUBLISH is written, then times out: kept to send again, but Redis holds it and will run it.
        await sendMessage(a.url, ada.token, { groupId: g, content: 'while held' });
        await eventually(() => a.services.redis!.heldSince() !== undefined, 5000);
        await sleep(700);
      } finally {
        proxy.release();
      }
      await eachOnceAfterTheStall(held);
    });
  }, 60_000);

  it('should stop delivering here, within seconds, to a member removed and a blocker blocking on another instance while Redis holds this one', async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      // B's Redis holds every command (a stopped process, a partition without a reset): no connection
      // drops, so B is told of no loss, and what A tells over Redis meanwhile does not come.
      const a = await createTestServer();
      const b = await createTestServer({ REDIS_URL: proxiedUrl }, { clean: false });
      const [alice, bob, erin, frank] = [await signup(a.url), await signup(a.url), await signup(a.url), await signup(a.url)];
      const g = (await request(a.url, CreateGroupDocument, { name: 'Stalled' }, alice.token)).createGroup.id;
      for (const u of [bob, erin, frank]) await request(a.url, JoinGroupDocument, { groupId: g }, u.token);
      const bobs = await listenOn<any>(b, bob, 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }', { g });
      const erins = await listenOn<any>(b, erin, 'subscription { messageAdded { content } }');
      proxy.hold(true);
      try {
        await ok(gql(a.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g }, bob.token));
        await ok(gql(a.url, 'mutation($u: ID!) { blockUser(userId: $u) }', { u: frank.id }, erin.token));
        // What is sent through B reaches its own subscribers: it stops reaching bob, and frank's messages erin.
        let n = 0;
        await eventually(async () => {
          const content = `probe ${n++}`;
          await sendMessage(b.url, alice.token, { groupId: g, content });
          await eventually(() => contents(erins.values).includes(content), 5000);
          return !contents(bobs.values).includes(content);
        }, 15_000, 500);
        await sendMessage(b.url, frank.token, { groupId: g, content: 'from frank' });
        await sendMessage(b.url, alice.token, { groupId: g, content: 'sentinel' });
        await eventually(() => contents(erins.values).includes('sentinel'), 5000);
        expect(contents(erins.values)).not.toContain('from frank');
      } finally {
        proxy.release();
      }
      // Redis answers again: B reads them once more, as after a reconnect, and they hold.
      await sendMessage(a.url, frank.token, { groupId: g, content: 'frank after' });
      await sendMessage(a.url, alice.token, { groupId: g, content: 'alice after' });
      await eventually(() => contents(erins.values).includes('alice after'), 10_000);
      expect(contents(erins.values)).not.toContain('frank after');
      expect(contents(bobs.values)).not.toContain('alice after');
    });
  }, 60_000);

  it('should deliver nothing to a member removed through another instance while Redis was gone: not what is sent through this one meanwhile, nor what the other sends again once it is back', async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const { a, b, ada, bo, group, back } = await cutOffPair(proxiedUrl, 'Removed away', { bothCut: true });
      const carol = await signup(b.url);
      await request(b.url, JoinGroupDocument, { groupId: group }, carol.token);
      const bos = await listen(a, bo);
      const carols = await listen(a, carol);
      await sleep(300);
      await proxy.cut();
      await ok(gql(b.url, 'mutation($g: ID!, $u: ID!) { removeGroupMember(groupId: $g, userId: $u) { id } }', { g: group, u: bo.id }, ada.token));
      // Through A at once: A never heard of the removal, and delivered it to Bo's socket there
      // until its next read of memberships (2 s); through B, sent again to A once Redis is back,
      // where it reached Bo before A read memberships again (an outside probe, 2 of 2).
      await sendMessage(a.url, ada.token, { groupId: group, content: 'through A' });
      await sendMessage(b.url, ada.token, { groupId: group, content: 'through B' });
      await proxy.restore();
      await back;
      await sendMessage(b.url, ada.token, { groupId: group, content: 'after' });
      await eventually(() => contents(carols.values).includes('after'), 10_000);
      await sleep(300);
      expect(contents(carols.values).sort()).toEqual(['after', 'through A', 'through B']);
      expect(contents(bos.values)).toEqual([]);
    });
  }, 40_000);

  it("should end, once Redis is back, the indicator a blocker's socket on another instance showed of a typist they blocked while it was gone", async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const a = await createTestServer({ REDIS_URL: proxiedUrl, TYPING_TIMEOUT: '60s' });
      const b = await createTestServer({ REDIS_URL: proxiedUrl, TYPING_TIMEOUT: '60s' }, { clean: false });
      const [alice, bob] = [await signup(a.url), await signup(a.url)];
      const group = (await request(a.url, CreateGroupDocument, { name: 'Typing away' }, alice.token)).createGroup.id;
      await request(a.url, JoinGroupDocument, { groupId: group }, bob.token);
      const c = { groupId: group };
      const typing = await listenOn<any>(a, bob, 'subscription($c: ConversationInput) { typing(conversation: $c) { typing } }', { c });
      await ok(gql(a.url, 'mutation($c: ConversationInput!) { setTyping(conversation: $c) }', { c }, alice.token));
      await typing.nth(1);
      const back = Promise.all([reconnected(a), reconnected(b)]);
      await proxy.cut();
      // Through B, whose publish of the block fails while Redis is gone: kept, and sent again once it
      // is back. Before, A never heard of it and showed Alice typing until her lapse (an outside probe).
      await ok(gql(b.url, 'mutation($u: ID!) { blockUser(userId: $u) }', { u: alice.id }, bob.token));
      await proxy.restore();
      await back;
      await typing.nth(2, 15_000);
      expect(typing.values).toEqual([{ typing: { typing: true } }, { typing: { typing: false } }]);
    });
  }, 40_000);

  it("should tell a socket whose session can't open in time (Redis held) to try again (1013), not leave it without an ack", async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const a = await createTestServer({ REDIS_URL: proxiedUrl, REALTIME_OPEN_TIMEOUT: '1s' });
      const u = await signup(a.url);
      proxy.hold();
      const socket = new (await import('ws')).default(a.wsUrl, 'graphql-transport-ws');
      const first = new Promise<string>((resolve) => {
        socket.on('message', (m) => resolve(`message ${JSON.parse(String(m)).type}`));
        socket.on('close', (code) => resolve(`close ${code}`));
      });
      socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init', payload: { token: u.token } })));
      // Told after REALTIME_OPEN_TIMEOUT (1 s here), well before the default 10 s.
      const waited = new Promise<string>((r) => setTimeout(r, 5000, 'still waiting').unref());
      expect(await Promise.race([first, waited])).toBe('close 1013');
      proxy.release();
    });
  }, 30_000);

  it("should answer an SSE stream whose session can't open in time (Redis held) 503, to try again, not leave it without an answer", async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const a = await createTestServer({ REDIS_URL: proxiedUrl, REALTIME_OPEN_TIMEOUT: '1s' });
      const u = await signup(a.url);
      proxy.hold();
      try {
        const res = await fetch(`${a.url}/stream`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${u.token}` },
          body: JSON.stringify({ query: ALL_MESSAGES }),
          // Answered after REALTIME_OPEN_TIMEOUT (1 s here), well before the default 10 s.
          signal: AbortSignal.timeout(5000),
        });
        expect([res.status, res.headers.get('retry-after')]).toEqual([503, '1']);
        const body = (await res.json()) as { errors: { extensions: { code: string } }[] };
        expect(body.errors[0].extensions.code).toBe('SERVICE_UNAVAILABLE');
      } finally {
        proxy.release();
      }
    });
  }, 30_000);

  it('should open a socket while its instance is off Redis, and bring it what was sent after it opened once Redis is back', async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const { a, b, ada, bo, group, back } = await cutOffPair(proxiedUrl, 'Opened away');
      await proxy.cut();
      await sendMessage(b.url, ada.token, { groupId: group, content: 'long before' });
      // Past the read-back's margin: a socket that opens now reads it in history, as it opens.
      await sleep(5500);
      // Bo has no socket on A: his channels are taken now, while A is off Redis.
      const opened = Date.now();
      const live = await listen(a, bo);
      expect(Date.now() - opened).toBeLessThan(5000);
      await sendMessage(b.url, ada.token, { groupId: group, content: 'while away' });
      await afterTheOutage({ b, ada, group, live, proxy, back }, ['while away']);
    });
  }, 40_000);

  it('should bring a socket opened while its instance is off Redis, in order, what other instances sent before a message sent through its own', async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const { a, b, ada, bo, group, back } = await cutOffPair(proxiedUrl, 'Opened away, sent here');
      await proxy.cut();
      // Bo's first socket on A: the group's channel is taken while A is off Redis.
      const live = await listen(a, bo);
      await sleep(100);
      // B's sends never reach A over Redis; then one through A, delivered here at once. Before, it
      // opened the conversation's line past B's, which were never delivered (an outside probe, 6 of 15).
      await twoThenOneHere({ a, b, ada, group, live, proxy, back });
    });
  }, 40_000);

  it('should not bring a socket opened while its instance is off Redis, after a message sent through its own, what other instances sent before it opened', async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const { a, b, ada, bo, group, back } = await cutOffPair(proxiedUrl, 'Sent before it opened', { bothCut: true });
      await proxy.cut();
      // Sent through B while Redis is gone, moments before Bo's socket opens on A: history's, as
      // the socket opens. Before, B's publishing them again once Redis was back delivered them
      // after a1 (an outside probe, 4 of 6).
      await sendMessage(b.url, ada.token, { groupId: group, content: 'b1' });
      await sendMessage(b.url, ada.token, { groupId: group, content: 'b2' });
      await sleep(50);
      const live = await listen(a, bo);
      await sleep(100);
      await sendMessage(a.url, ada.token, { groupId: group, content: 'a1' });
      await live.nth(1);
      await afterTheOutage({ b, ada, group, live, proxy, back }, ['a1']);
    });
  }, 40_000);

  it('should not bring a socket opened after a message, with Redis up, that message again when Redis comes back from a loss', async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const { a, b, ada, bo, group, back } = await cutOffPair(proxiedUrl, 'Old news');
      await sendMessage(b.url, ada.token, { groupId: group, content: 'old' });
      await sleep(300);
      // Bo's first socket on A opens after it (history's), and A loses Redis moments later, with
      // no traffic since. Before, the read-back once it was back delivered 'old' as new (an
      // outside probe, 2 of 2).
      const live = await listen(a, bo);
      await sleep(300);
      await proxy.cut();
      await sleep(300);
      await afterTheOutage({ b, ada, group, live, proxy, back }, []);
    });
  }, 40_000);

  it("should bring a group's events published while Redis was gone to the sockets that stayed open, once it is back", async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const { a, b, ada, bo, group, back } = await cutOffPair(proxiedUrl, 'Renamed away', { bothCut: true });
      const events = await listen(a, bo, 'subscription { groupEvent { kind name: group { name } } }');
      const p = (await ok(gql(b.url, 'mutation { createProject(title: "Away") { id } }', {}, ada.token))).createProject.id;
      await ok(gql(b.url, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p, u: bo.id }, ada.token));
      const actions = await listen(a, bo, 'subscription { projectAction { kind } }');
      // Bo's join and addition, published as they were answered, may still reach the subscriptions
      // that opened just after (a full run's late MEMBER_JOINED): only what comes after counts.
      await sleep(300);
      const [e0, a0] = [events.values.length, actions.values.length];
      await proxy.cut();
      // Through B, whose publishes fail while Redis is gone: kept, and sent again once it is back.
      // Before, a socket open through the outage never heard them (an outside probe, 4 of 4).
      await ok(gql(b.url, 'mutation($g: ID!) { renameGroup(groupId: $g, name: "Renamed while away") { id } }', { g: group }, ada.token));
      await ok(gql(b.url, 'mutation($g: ID!) { setSlowMode(groupId: $g, seconds: 30) { id } }', { g: group }, ada.token));
      await ok(gql(b.url, 'mutation($p: ID!) { renameProject(projectId: $p, title: "Away still") { id } }', { p }, ada.token));
      await sleep(200);
      expect([events.values.slice(e0), actions.values.slice(a0)]).toEqual([[], []]);
      await proxy.restore();
      await back;
      await events.nth(e0 + 2, 10_000);
      await sleep(500);
      const told = events.values.slice(e0);
      expect(told.map((v: any) => v.groupEvent.kind)).toEqual(['RENAMED', 'SLOW_MODE_CHANGED']);
      expect(told[0].groupEvent.name).toEqual({ name: 'Renamed while away' });
      // A project's action too (its inbox kept it, and the live socket hears it as well).
      await actions.nth(a0 + 1, 10_000);
      expect(actions.values.slice(a0)).toEqual([{ projectAction: { kind: 'PROJECT_RENAMED' } }]);
    });
  }, 40_000);

  it('should bring a friend request made while Redis was gone to the sockets that stayed open, once it is back, and once', async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const { a, b, ada, bo, back } = await cutOffPair(proxiedUrl, 'Friends away', { bothCut: true });
      const events = await listen(a, bo, 'subscription { friendEvent { kind request { status } user: request { from { id } } } }');
      await proxy.cut();
      // Through B, whose publish fails while Redis is gone: kept, and sent again once it is back.
      // Before, the request was lost for good to sockets open through the outage (an outside probe, 2 of 2).
      await ok(gql(b.url, 'mutation($u: ID!) { sendFriendRequest(userId: $u) { id } }', { u: bo.id }, ada.token));
      await sleep(200);
      expect(events.values).toEqual([]);
      await proxy.restore();
      await back;
      await events.nth(1, 10_000);
      await sleep(500);
      expect(events.values).toEqual([{ friendEvent: { kind: 'REQUESTED', request: { status: 'PENDING' }, user: { from: { id: ada.id } } } }]);
    });
  }, 40_000);

  it("should bring a message's edit, reaction, pin and thread counters made while Redis was gone to the sockets that stayed open, once it is back", async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const { a, b, ada, bo, group, back } = await cutOffPair(proxiedUrl, 'Edited away', { bothCut: true });
      const events = await listen(a, bo, 'subscription { messageEvent { kind message { content replyCount pinnedAt reactions { emoji count } } } }');
      const rows = await listen(a, bo, 'subscription { conversationUpdated { lastMessage { content } } }');
      const id = (await sendMessage(b.url, ada.token, { groupId: group, content: 'first draft' })).id;
      await rows.nth(1);
      await proxy.cut();
      // Through B, whose publishes fail while Redis is gone: kept, and sent again once it is back.
      // Before, a socket open through the outage kept the first draft for good.
      await ok(gql(b.url, 'mutation($m: ID!) { editMessage(messageId: $m, content: "final") { id } }', { m: id }, ada.token));
      await ok(gql(b.url, 'mutation($m: ID!) { addReaction(messageId: $m, emoji: "👍") { id } }', { m: id }, ada.token));
      await ok(gql(b.url, 'mutation($m: ID!) { pinMessage(messageId: $m) { id } }', { m: id }, ada.token));
      await sendMessage(b.url, ada.token, { groupId: group, content: 'a reply', parentId: id });
      await sleep(200);
      expect(events.values).toEqual([]);
      await proxy.restore();
      await back;
      await events.nth(4, 10_000);
      await sleep(500);
      const told = events.values.map((v: any) => v.messageEvent);
      expect(told.map((e: any) => e.kind)).toEqual(['EDITED', 'REACTIONS_CHANGED', 'PINNED', 'THREAD_UPDATED']);
      expect(told[3].message).toMatchObject({ content: 'final', replyCount: 1, reactions: [{ emoji: '👍', count: 1 }] });
      expect(told[3].message.pinnedAt).toEqual(expect.any(String));
      // The sidebar row the edit changed, too (not kept before: its message's event was not).
      expect(rows.values.at(-1).conversationUpdated.lastMessage).toEqual({ content: 'final' });
    });
  }, 40_000);

  it("should bring a group's event, and the sidebar rows and receipts made meanwhile, to an instance that came back to Redis later than the one that published them", async () => {
    await throughRedisProxy(async (toA, proxiedA) => {
      const redisUrl = new URL(process.env.REDIS_URL!);
      const toB = new TcpProxy({ host: redisUrl.hostname, port: Number(redisUrl.port || 6379) });
      await toB.start();
      try {
        const a = await createTestServer({ REDIS_URL: proxiedA });
        const b = await createTestServer({ REDIS_URL: `redis://127.0.0.1:${toB.port}${redisUrl.pathname}` }, { clean: false });
        const [ada, bo] = [await signup(b.url), await signup(b.url)];
        const group = (await request(b.url, CreateGroupDocument, { name: 'Back late' }, ada.token)).createGroup.id;
        await request(b.url, JoinGroupDocument, { groupId: group }, bo.token);
        const events = await listen(a, bo, 'subscription { groupEvent { kind } }');
        const rows = await listen(a, bo, 'subscription { conversationUpdated { title unreadCount } }');
        const receipts = await listen(a, ada, 'subscription { readReceipt { user { id } } }');
        const [aBack, bBack] = [reconnected(a), reconnected(b)];
        await Promise.all([toA.cut(), toB.cut()]);
        await ok(gql(b.url, 'mutation($g: ID!) { renameGroup(groupId: $g, name: "Renamed") { id } }', { g: group }, ada.token));
        const sent = await sendMessage(b.url, ada.token, { groupId: group, content: 'while away' });
        await ok(gql(b.url, 'mutation($g: ID!, $m: ID!) { markRead(conversation: { groupId: $g }, messageId: $m) { id } }', { g: group, m: sent.id }, bo.token));
        // B is back first and sends the rename again; A comes back a moment later. Before, B sent it at
        // once, to no instance that was not listening yet (an outside probe).
        await toB.restore();
        await bBack;
        await sleep(200);
        await toA.restore();
        await aBack;
        await events.nth(1, 10_000);
        expect(events.values).toEqual([{ groupEvent: { kind: 'RENAMED' } }]);
        // The rows and the receipt too, which no instance reads back either: sent at once, they
        // reached no instance that came back a moment later (an outside probe: 3 of 11 runs).
        await eventually(() => rows.values.some((v) => v.conversationUpdated.unreadCount === 0 && v.conversationUpdated.title === 'Renamed'), 10_000);
        await receipts.nth(1, 10_000);
        expect(receipts.values).toEqual([{ readReceipt: { user: { id: bo.id } } }]);
      } finally {
        await toB.cut();
      }
    });
  }, 40_000);

  it('should bring a socket open through an outage, in order, what other instances sent before a message sent through its own', async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      const { a, b, ada, bo, group, back } = await cutOffPair(proxiedUrl, 'Held through it');
      // Bo's socket on A is open well before the outage (past a new channel's first 10 s, when a line
      // opening reads what came before it anyway); the conversation has no line on A yet.
      const live = await listen(a, bo);
      await sleep(10_500);
      await proxy.cut();
      // The one through A while it is off Redis opens its line. Before, it opened past b1 and b2, and
      // the read-back once Redis was back found them behind it and dropped them for good (an outside
      // probe: direct messages lost in 8 s outages).
      await twoThenOneHere({ a, b, ada, group, live, proxy, back });
    });
  }, 40_000);

  it('should deliver what is sent while a new subscription’s access check waits on the database', async () => {
    // A has one database connection, which a blocked query holds, so a subscription's check waits there; B takes the send.
    const a = await createTestServer({ DB_POOL_MAX: '1' });
    const b = await createTestServer({}, { clean: false });
    const [ada, bo] = [await signup(b.url), await signup(b.url)];
    const group = (await request(b.url, CreateGroupDocument, { name: 'Checked' }, ada.token)).createGroup.id;
    await request(b.url, JoinGroupDocument, { groupId: group }, bo.token);
    const w = wsClient(a.wsUrl, bo.token);
    // Acknowledged: A receives the group's channel from here on.
    await w.connected;
    const locker = new pg.Client({ connectionString: a.env.DATABASE_URL });
    await locker.connect();
    try {
      await locker.query('begin');
      await locker.query('lock table friendships in access exclusive mode');
      const blocked = gql(a.url, '{ friends { id } }', {}, bo.token);
      await eventually(async () => (await locker.query("select count(*)::int as n from pg_locks where not granted and relation = 'friendships'::regclass")).rows[0].n > 0);
      const sub = subscribe<any>(w, 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { content } }', { c: { groupId: group } });
      const typing = subscribe<any>(w, 'subscription($c: ConversationInput) { typing(conversation: $c) { typing user { id } } }', { c: { groupId: group } });
      await sleep(150);
      await ok(gql(b.url, 'mutation($c: ConversationInput!) { setTyping(conversation: $c) }', { c: { groupId: group } }, ada.token));
      await sendMessage(b.url, ada.token, { groupId: group, content: 'during the check' });
      // Their events reach A while the checks still wait (neither subscription runs yet).
      await sleep(300);
      expect(a.fanout.active.messageAdded ?? 0).toBe(0);
      expect(a.fanout.active.typing ?? 0).toBe(0);
      await locker.query('commit');
      expect((await blocked).errors).toBeUndefined();
      expect(contents([await sub.nth(1)])).toEqual(['during the check']);
      expect((await typing.nth(1)).typing).toEqual({ typing: true, user: { id: ada.id } });
      await sendMessage(b.url, ada.token, { groupId: group, content: 'after' });
      expect(contents([await sub.nth(2)])).toEqual(['after']);
      expect(contents(sub.values)).toEqual(['during the check', 'after']);
    } finally {
      await locker.query('rollback').catch(() => undefined);
      await locker.end();
    }
  });
  it('should keep nothing listening for a subscription its check refuses', async () => {
    const s = await createTestServer();
    const [ada, bo] = [await signup(s.url), await signup(s.url)];
    const group = (await request(s.url, CreateGroupDocument, { name: 'Refused' }, ada.token)).createGroup.id;
    await request(s.url, JoinGroupDocument, { groupId: group }, bo.token);
    const w = wsClient(s.wsUrl, bo.token);
    await w.connected;
    // A thread that is not there: the check throws, after the stream began listening.
    const refused = subscribe<any>(w, 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { content } }', { c: { groupId: group, threadId: '00000000-0000-4000-8000-000000000000' } });
    await eventually(() => refused.errors.length > 0);
    const plain = await listen(s, bo);
    const before = await metric(s, 'parley_fanout_evaluations_total');
    await sendMessage(s.url, ada.token, { groupId: group, content: 'one listener' });
    await plain.nth(1);
    // The plain subscription only: the refused one's stream was let go.
    expect((await metric(s, 'parley_fanout_evaluations_total')) - before).toBe(1);
    expect(refused.values).toEqual([]);
  });

  it("should tell a member who joins a group again, or is added to a project, their row as it starts, on an instance that held none of its members", async () => {
    const a = await createTestServer({ RATE_LIMIT_GROUP_MEMBERSHIP: '1000/1h' });
    const b = await createTestServer({ RATE_LIMIT_GROUP_MEMBERSHIP: '1000/1h' }, { clean: false });
    const [ada, bo] = [await signup(a.url), await signup(a.url)];
    const group = (await request(a.url, CreateGroupDocument, { name: 'Come and go', isPrivate: false }, ada.token)).createGroup.id;
    await request(b.url, JoinGroupDocument, { groupId: group }, bo.token);
    const rows = await listen(b, bo, 'subscription { conversationUpdated { id group { id } project { id } unreadCount unreadMentionCount mutedUntil lastMessage { content } } }');
    await sendMessage(a.url, ada.token, { groupId: group, content: `one @${bo.username}` });
    await eventually(() => rows.values.some((v) => v.conversationUpdated.unreadCount === 1));
    await ok(gql(b.url, 'mutation($g: ID!) { muteConversation(conversation: { groupId: $g }) { id } }', { g: group }, bo.token));
    await request(b.url, LeaveGroupDocument, { groupId: group }, bo.token);
    await sendMessage(a.url, ada.token, { groupId: group, content: 'two' });
    await sleep(200);
    const told = rows.values.length;
    await request(b.url, JoinGroupDocument, { groupId: group }, bo.token);
    // Read up to 'two' as the join starts them, the old badge gone: the row a sidebar shows is told, not left as it was.
    const rejoined = await eventually(() => rows.values.slice(told).find((v) => v.conversationUpdated.group?.id === group));
    // The mute went with the membership, as the query reads it.
    expect(rejoined.conversationUpdated).toMatchObject({ unreadCount: 0, unreadMentionCount: 0, mutedUntil: null, lastMessage: { content: 'two' } });
    expect((await ok(gql(b.url, 'query($g: ID!) { conversation(conversation: { groupId: $g }) { mutedUntil } }', { g: group }, bo.token))).conversation.mutedUntil).toBeNull();

    // A first join too, on an instance that never took the group's channel.
    const other = (await request(a.url, CreateGroupDocument, { name: 'Never here before', isPrivate: false }, ada.token)).createGroup.id;
    await sendMessage(a.url, ada.token, { groupId: other, content: 'hello, newcomer' });
    await request(b.url, JoinGroupDocument, { groupId: other }, bo.token);
    const joined = await eventually(() => rows.values.find((v) => v.conversationUpdated.group?.id === other));
    expect(joined.conversationUpdated).toMatchObject({ unreadCount: 0, unreadMentionCount: 0, lastMessage: { content: 'hello, newcomer' } });

    const project = (await ok(gql(a.url, 'mutation { createProject(title: "Added later") { id } }', {}, ada.token))).createProject.id;
    await sendMessage(a.url, ada.token, { projectId: project, content: 'before you came' });
    await ok(gql(a.url, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p: project, u: bo.id }, ada.token));
    const added = await eventually(() => rows.values.find((v) => v.conversationUpdated.project?.id === project));
    expect(added.conversationUpdated).toMatchObject({ unreadCount: 0, lastMessage: { content: 'before you came' } });
  });
});
