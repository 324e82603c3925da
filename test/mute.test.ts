import { codeOf, eventually, gql, listen, ok, sleep } from './helpers/graphql';
import { createTestServer, describeRedis, hasRedis, type TestServer } from './helpers/server';
import { conversationRoutes } from '../src/modules/conversation/conversation.keys';
import { SafetyLists } from '../src/modules/safety/safety.lists';
import { createLogger } from '../src/shared/logger';
import { createPubSub } from '../src/shared/pubsub/pubsub';
import { Topic } from '../src/shared/pubsub/topics';
import { befriend, buildGroup, login, sendMessage, signup } from './helpers/factories';
import { snapshot, sql } from './helpers/db';
import { startReceiver, type Receiver } from './helpers/webhook-receiver';

const FIELDS = 'id unreadCount mutedUntil';
const MUTE = `mutation($c: ConversationInput!, $until: DateTime) { muteConversation(conversation: $c, until: $until) { ${FIELDS} } }`;
const UNMUTE = `mutation($c: ConversationInput!) { unmuteConversation(conversation: $c) { ${FIELDS} } }`;
const ONE = `query($c: ConversationInput!) { conversation(conversation: $c) { ${FIELDS} } }`;
const SIDEBAR = `{ conversations(first: 20) { edges { node { ${FIELDS} } } } }`;
const UPDATED = `subscription { conversationUpdated { ${FIELDS} } }`;
const BLOCK = 'mutation($id: ID!) { blockUser(userId: $id) }';
const FOREVER = '9999-12-31T23:59:59.999Z';

const inAnHour = () => new Date(Date.now() + 3600_000).toISOString();
const mutedIn = (s: { env: { DATABASE_URL?: string } }) => sql(s.env.DATABASE_URL!, 'select user_id, conversation_key, muted_until from conversation_members where muted_until is not null order by 1, 2');

describe('mute', () => {
  it("should mute and unmute, still counting unread, told by mutedUntil and to the user's other sessions", async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = (await buildGroup(s.url, bob, { members: [alice] })).id;
    const c = { groupId: g };
    const otherDevice = { ...alice, token: await login(s.url, alice) };
    const rows = await listen(s, otherDevice, UPDATED);

    const until = inAnHour();
    const muted = (await ok(gql(s.url, MUTE, { c, until }, alice.token))).muteConversation;
    expect(muted).toEqual({ id: `g:${g}`, unreadCount: 0, mutedUntil: until });
    expect((await rows.nth(1)).conversationUpdated).toEqual({ id: `g:${g}`, unreadCount: 0, mutedUntil: until });
    expect((await ok(gql(s.url, ONE, { c }, alice.token))).conversation.mutedUntil).toBe(until);
    // Private to Alice.
    expect((await ok(gql(s.url, ONE, { c }, bob.token))).conversation.mutedUntil).toBeNull();

    // Still counted: the client drops the badge by mutedUntil.
    await sendMessage(s.url, bob.token, { groupId: g, content: 'while muted' });
    expect((await rows.nth(2)).conversationUpdated).toEqual({ id: `g:${g}`, unreadCount: 1, mutedUntil: until });
    const side = (await ok(gql(s.url, SIDEBAR, {}, alice.token))).conversations.edges.map((e: any) => e.node);
    expect(side.find((n: any) => n.id === `g:${g}`)).toEqual({ id: `g:${g}`, unreadCount: 1, mutedUntil: until });

    // Without until: until unmuted. Muting again just moves it.
    expect((await ok(gql(s.url, MUTE, { c }, alice.token))).muteConversation.mutedUntil).toBe(FOREVER);
    expect((await rows.nth(3)).conversationUpdated.mutedUntil).toBe(FOREVER);
    const unmuted = (await ok(gql(s.url, UNMUTE, { c }, alice.token))).unmuteConversation;
    expect(unmuted).toEqual({ id: `g:${g}`, unreadCount: 1, mutedUntil: null });
    expect((await rows.nth(4)).conversationUpdated.mutedUntil).toBeNull();
    // Idempotent: nothing for her other session either (the next row it gets is the next message's).
    expect((await ok(gql(s.url, UNMUTE, { c }, alice.token))).unmuteConversation.mutedUntil).toBeNull();
    expect(await mutedIn(s)).toEqual([]);
    await sendMessage(s.url, bob.token, { groupId: g, content: 'after' });
    expect((await rows.nth(5)).conversationUpdated).toEqual({ id: `g:${g}`, unreadCount: 2, mutedUntil: null });
  });

  it('should read null once a mute is over, and mute direct conversations', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    await befriend(s.url, alice, bob);
    const c = { userId: bob.id };
    await sendMessage(s.url, bob.token, { toUserId: alice.id, content: 'hi' });
    const until = new Date(Date.now() + 1200).toISOString();
    expect((await ok(gql(s.url, MUTE, { c, until }, alice.token))).muteConversation.mutedUntil).toBe(until);
    expect((await ok(gql(s.url, ONE, { c }, alice.token))).conversation.mutedUntil).toBe(until);
    await sleep(1300);
    expect((await ok(gql(s.url, ONE, { c }, alice.token))).conversation.mutedUntil).toBeNull();
  });

  it('should drop a mute with the membership: a rejoin starts unmuted, on a live socket too', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = (await buildGroup(s.url, bob, { members: [alice] })).id;
    const c = { groupId: g };
    const rows = await listen(s, alice, UPDATED);
    await ok(gql(s.url, MUTE, { c }, alice.token));
    await rows.nth(1);
    await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g }, alice.token));
    await ok(gql(s.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g }, alice.token));
    expect(await mutedIn(s)).toEqual([]);
    await sendMessage(s.url, bob.token, { groupId: g, content: 'welcome back' });
    await eventually(() => rows.values.some((v) => v.conversationUpdated.unreadCount === 1));
    expect(rows.values[rows.values.length - 1].conversationUpdated).toEqual({ id: `g:${g}`, unreadCount: 1, mutedUntil: null });
    expect((await ok(gql(s.url, ONE, { c }, alice.token))).conversation.mutedUntil).toBeNull();
  });

  it('should drop a direct conversation’s mute with the friendship: friends again start unmuted, on a live socket too', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    await befriend(s.url, alice, bob);
    const c = { userId: bob.id };
    await sendMessage(s.url, bob.token, { toUserId: alice.id, content: 'hi' });
    const rows = await listen(s, alice, UPDATED);
    await ok(gql(s.url, MUTE, { c }, alice.token));
    expect((await rows.nth(1)).conversationUpdated.mutedUntil).toBe(FOREVER);
    await ok(gql(s.url, 'mutation($u: ID!) { removeFriend(userId: $u) }', { u: alice.id }, bob.token));
    await befriend(s.url, bob, alice);
    expect(await mutedIn(s)).toEqual([]);
    await sendMessage(s.url, bob.token, { toUserId: alice.id, content: 'friends again' });
    // The live row agrees with a fresh read: before, the socket's instance kept the dropped mute.
    await eventually(() => rows.values.some((v) => v.conversationUpdated.unreadCount === 2));
    expect(rows.values[rows.values.length - 1].conversationUpdated.mutedUntil).toBeNull();
    expect((await ok(gql(s.url, ONE, { c }, alice.token))).conversation.mutedUntil).toBeNull();
  });

  it('should refuse bad input and conversations the user may not use, changing nothing', async () => {
    const s = await createTestServer();
    const [alice, bob, stranger] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = (await buildGroup(s.url, bob, { members: [alice] })).id;
    const foreign = (await buildGroup(s.url, stranger, { isPrivate: true })).id;
    await befriend(s.url, alice, bob);
    await ok(gql(s.url, MUTE, { c: { groupId: g }, until: inAnHour() }, alice.token));
    const before = { rows: await snapshot(s.env.DATABASE_URL!), muted: await mutedIn(s) };
    const c = { groupId: g };
    const cases: [string, Record<string, unknown>, string][] = [
      [MUTE, { c, until: new Date(Date.now() - 1000).toISOString() }, 'BAD_USER_INPUT'],
      [MUTE, { c, until: new Date(Date.now() + 400 * 86_400_000).toISOString() }, 'BAD_USER_INPUT'],
      [MUTE, { c, until: 'tomorrow' }, 'BAD_USER_INPUT'],
      // Days a month does not have are no date, not the next month's first days.
      [MUTE, { c, until: `${new Date().getUTCFullYear() + 1}-02-30T00:00:00Z` }, 'BAD_USER_INPUT'],
      [MUTE, { c, until: `${new Date().getUTCFullYear() + 1}-04-31T12:00:00.000+02:00` }, 'BAD_USER_INPUT'],
      [MUTE, { c: {} }, 'BAD_USER_INPUT'],
      [MUTE, { c: { groupId: g, userId: bob.id } }, 'BAD_USER_INPUT'],
      [MUTE, { c: { groupId: 'nope' } }, 'NOT_FOUND'],
      [MUTE, { c: { groupId: foreign } }, 'NOT_FOUND'],
      [MUTE, { c: { userId: stranger.id } }, 'FORBIDDEN'],
      [MUTE, { c: { userId: alice.id } }, 'BAD_USER_INPUT'],
      // Friends without a message yet: nothing to mute.
      [MUTE, { c: { userId: bob.id } }, 'BAD_USER_INPUT'],
      [UNMUTE, { c: { groupId: foreign } }, 'NOT_FOUND'],
      [UNMUTE, { c: { userId: stranger.id } }, 'FORBIDDEN'],
    ];
    for (const [q, vars, code] of cases) expect([JSON.stringify(vars), codeOf(await gql(s.url, q, vars, alice.token))]).toEqual([JSON.stringify(vars), code]);
    expect(codeOf(await gql(s.url, MUTE, { c }))).toBe('UNAUTHENTICATED');
    expect({ rows: await snapshot(s.env.DATABASE_URL!), muted: await mutedIn(s) }).toEqual(before);
  });
});

describeRedis('mute across instances', () => {
  it("should reach the user's session on another instance at once", async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [alice, bob] = [await signup(a.url), await signup(a.url)];
    const g = (await buildGroup(a.url, bob, { members: [alice] })).id;
    const rows = await listen(b, alice, UPDATED);
    const until = inAnHour();
    await ok(gql(a.url, MUTE, { c: { groupId: g }, until }, alice.token));
    expect((await rows.nth(1)).conversationUpdated.mutedUntil).toBe(until);
    // A message afterwards: B derives Alice's row in memory, her mute with it.
    await sendMessage(a.url, bob.token, { groupId: g, content: 'hello' });
    expect((await rows.nth(2)).conversationUpdated).toMatchObject({ unreadCount: 1, mutedUntil: until });
    await ok(gql(a.url, UNMUTE, { c: { groupId: g } }, alice.token));
    expect((await rows.nth(3)).conversationUpdated.mutedUntil).toBeNull();
    await sendMessage(a.url, bob.token, { groupId: g, content: 'again' });
    expect((await rows.nth(4)).conversationUpdated).toMatchObject({ unreadCount: 2, mutedUntil: null });
  });
});

describe('safety and offline notifications', () => {
  let receiver: Receiver;
  beforeEach(async () => {
    receiver = await startReceiver();
  });
  afterEach(async () => {
    await receiver.close();
  });

  const serverFor = (r: Receiver): Promise<TestServer> =>
    createTestServer({ WEBHOOK_URL: r.url, WEBHOOK_SECRET: 'whsec_test_0123456789abcdef', WEBHOOK_COALESCE: '0', PRESENCE_GRACE: '0.2' }, { jobs: true });

  it('should send nothing for a muted conversation but mentions, and nothing from a blocked sender', async () => {
    const s = await serverFor(receiver);
    const [alice, bob, carol, away] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = (await buildGroup(s.url, bob, { members: [alice, carol, away] })).id;
    // Everyone offline: signups' sessions are HTTP only, and the grace is short.
    await ok(gql(s.url, MUTE, { c: { groupId: g } }, alice.token));
    await ok(gql(s.url, BLOCK, { id: bob.id }, carol.token));
    await sendMessage(s.url, bob.token, { groupId: g, content: 'plain message' });
    await sendMessage(s.url, bob.token, { groupId: g, content: `hey @${alice.username} and @${carol.username}` });

    // The control: `away`, neither muting nor blocking, gets both.
    await eventually(() => receiver.of(away.id).length === 2, 10_000);
    await eventually(() => receiver.of(alice.id).length >= 1, 5000);
    await sleep(1500);
    expect(receiver.of(away.id).map((e) => e.body.kind)).toEqual(['MESSAGE', 'MESSAGE']);
    // Muted: only the mention.
    expect(receiver.of(alice.id).map((e) => [e.body.kind, e.body.preview])).toEqual([['MENTION', `hey @${alice.username} and @${carol.username}`]]);
    // Blocked sender: nothing, not even the mention.
    expect(receiver.of(carol.id)).toEqual([]);
  });
});

describe('mute changes at once', () => {
  it('should keep a session’s lists on the mute applied last when changes are heard in the other order', async () => {
    const pubsub = createPubSub(undefined, createLogger({ LOG_LEVEL: 'silent', LOG_PRETTY: false }), conversationRoutes);
    const lists = new SafetyLists(pubsub, async () => ({ blocked: [], mutes: new Map() }));
    lists.start();
    await lists.track('u');
    const [first, second] = [new Date(Date.now() + 3600_000), new Date(Date.now() + 7200_000)];
    // Applied first then second (versions 1, 2), published second then first.
    await pubsub.publish(Topic.SafetyChanged, { userId: 'u', conversationKey: 'g:x', mutedUntil: second.toISOString(), v: 2 });
    await pubsub.publish(Topic.SafetyChanged, { userId: 'u', conversationKey: 'g:x', mutedUntil: first.toISOString(), v: 1 });
    expect(lists.mutedUntil('u', 'g:x')).toEqual(second);
    // A change without a version (a departure) applies, and the next is compared afresh.
    await pubsub.publish(Topic.SafetyChanged, { userId: 'u', conversationKey: 'g:x', mutedUntil: null });
    expect(lists.mutedUntil('u', 'g:x')).toBeNull();
    await pubsub.publish(Topic.SafetyChanged, { userId: 'u', conversationKey: 'g:x', mutedUntil: first.toISOString(), v: 1 });
    expect(lists.mutedUntil('u', 'g:x')).toEqual(first);
    lists.dispose();
    await pubsub.dispose();
  });

  it('should answer a mute racing its user’s leaving as any non-member’s, FORBIDDEN, never as a conversation with nothing to mute', async () => {
    const a = await createTestServer();
    const b = hasRedis ? await createTestServer({}, { clean: false }) : a;
    const owner = await signup(a.url);
    const codes = new Set<string>();
    for (let round = 0; round < 8; round++) {
      const alice = await signup(a.url);
      const g = (await buildGroup(a.url, owner, { members: [alice] })).id;
      const calls = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map((i) =>
        i % 2 ? gql([a, b][i % 4 === 1 ? 0 : 1].url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g }, alice.token).then(() => undefined) : gql([a, b][i % 4 ? 1 : 0].url, MUTE, { c: { groupId: g } }, alice.token),
      );
      for (const r of await Promise.all(calls)) if (r) codes.add(r.errors ? codeOf(r)! : 'OK');
    }
    // Before, a mute whose check passed and whose member row went meanwhile read "no message yet" (an outside probe).
    expect([...codes].filter((c) => c !== 'OK' && c !== 'FORBIDDEN')).toEqual([]);
  });

  it('should leave every session’s live row on the mute the database kept, mutes sent at once through two instances', async () => {
    const a = await createTestServer();
    const b = hasRedis ? await createTestServer({}, { clean: false }) : a;
    const [alice, bob] = [await signup(a.url), await signup(a.url)];
    const g = (await buildGroup(a.url, bob, { members: [alice] })).id;
    await sendMessage(a.url, bob.token, { groupId: g, content: 'hi' });
    const c = { groupId: g };
    const otherDevice = { ...alice, token: await login(a.url, alice) };
    const rows = await listen(b, otherDevice, UPDATED);
    for (let round = 0; round < 8; round++) {
      const untils = [1, 2, 3].map((h) => new Date(Date.now() + (round * 10 + h) * 3600_000).toISOString());
      await Promise.all(untils.map((until, i) => ok(gql([a, b][i % 2].url, MUTE, { c, until }, alice.token))));
      const kept = (await ok(gql(a.url, ONE, { c }, alice.token))).conversation.mutedUntil;
      // The last row heard is the kept mute (each change's row comes after its own change).
      await eventually(() => rows.values.at(-1)?.conversationUpdated.mutedUntil === kept, 3000).catch(() => undefined);
      expect([round, rows.values.at(-1)?.conversationUpdated.mutedUntil]).toEqual([round, kept]);
    }
  });
});
