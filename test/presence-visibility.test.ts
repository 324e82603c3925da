import { codeOf, eventually, gql, listen, ok, sleep, subscribe, wsClient, type Subscription } from './helpers/graphql';
import { createTestServer, describeRedis, type TestServer } from './helpers/server';
import { befriend, groupWith, lobbyOf, login, sendMessage, signup, type TestUser } from './helpers/factories';
import { snapshot } from './helpers/db';
import { ConfigError, loadEnv } from '../src/config/env';
import { OwnRedis } from './helpers/redis-server';
import { describeNeeding, tools } from './helpers/tools';
import { presenceRepository } from '../src/modules/presence/presence.repository';

const STATUS = 'query($id: ID!) { userStatus(userId: $id) { status lastSeenAt } }';
const USER = 'query($id: ID!) { user(id: $id) { status lastSeenAt } }';
const ONLINE_USERS = 'query($first: Int, $after: String) { onlineUsers(first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id status } } } }';
const PRESENCE = 'subscription($ids: [ID!]) { presenceChanged(userIds: $ids) { status lastSeenAt user { id } } }';
const SET_VISIBILITY = 'mutation($v: PresenceVisibility!) { setPresenceVisibility(visibility: $v) { id presenceVisibility status } }';
const RECEIVED = 'parley_pubsub_events_received_total{topic="parley.presence.changed"}';

type Event = { presenceChanged: { status: string; lastSeenAt: string | null; user: { id: string } } };
const CONTACTS = { PRESENCE_VISIBILITY: 'contacts' };

function watch(s: TestServer, watcher: TestUser, ids?: string[]): Promise<Subscription<Event>> {
  return listen<Event>(s, watcher, PRESENCE, ids ? { ids } : {});
}

/** "<userId> <STATUS>" for each event, in order. */
const seen = (sub: Subscription<Event>) => sub.values.map((v) => `${v.presenceChanged.user.id} ${v.presenceChanged.status}`);

async function statusOf(s: TestServer, viewer: TestUser, id: string): Promise<{ status: string; lastSeenAt: string | null }> {
  return (await ok(gql(s.url, STATUS, { id }, viewer.token))).userStatus;
}

async function onlineOf(s: TestServer, viewer: TestUser): Promise<{ total: number; ids: string[] }> {
  const r = (await ok(gql(s.url, ONLINE_USERS, { first: 50 }, viewer.token))).onlineUsers;
  return { total: r.totalCount, ids: r.edges.map((e: { node: { id: string } }) => e.node.id) };
}

const logout = (s: TestServer, u: TestUser) => ok(gql(s.url, 'mutation { logout }', {}, u.token));

/** Logs the user out and back in (OFFLINE then ONLINE); the user's new token is kept. */
async function cycle(s: TestServer, u: TestUser): Promise<void> {
  await logout(s, u);
  u.token = await login(s.url, u);
}

async function metric(s: TestServer, name: string): Promise<number> {
  const text = await (await fetch(s.url.replace('/graphql', '/metrics'))).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('presence visibility settings', () => {
  it('should default to everyone and 100, and refuse anything but everyone or contacts at boot', () => {
    expect(loadEnv({})).toMatchObject({ PRESENCE_VISIBILITY: 'everyone', PRESENCE_GROUP_MAX: 100 });
    expect(loadEnv({ PRESENCE_VISIBILITY: 'Contacts', PRESENCE_GROUP_MAX: '20' })).toMatchObject({ PRESENCE_VISIBILITY: 'contacts', PRESENCE_GROUP_MAX: 20 });
    expect(() => loadEnv({ PRESENCE_VISIBILITY: 'friends' })).toThrow(ConfigError);
    expect(() => loadEnv({ PRESENCE_VISIBILITY: 'friends' })).toThrow(/PRESENCE_VISIBILITY/);
    expect(() => loadEnv({ PRESENCE_GROUP_MAX: '1' })).toThrow(/PRESENCE_GROUP_MAX/);
  });
});

describeRedis('presence visibility', () => {
  it('should show status, lastSeenAt and onlineUsers only to contacts in contacts mode, OFFLINE with no lastSeenAt to others', async () => {
    const s = await createTestServer({ ...CONTACTS, PRESENCE_GROUP_MAX: '3' });
    const [ada, friend, roommate, stranger, big1, big2, big3] = await Promise.all(Array.from({ length: 7 }, () => signup(s.url)));
    await befriend(s.url, ada, friend);
    await groupWith(s.url, ada, 'Small room', [roommate]);
    // Four members: over PRESENCE_GROUP_MAX, so it makes no contacts (nor does the lobby, shared by all).
    await groupWith(s.url, ada, 'Big room', [big1, big2, big3]);
    for (const viewer of [friend, roommate]) {
      const st = await statusOf(s, viewer, ada.id);
      expect(st.status).toBe('ONLINE');
      expect(st.lastSeenAt).not.toBeNull();
    }
    for (const viewer of [stranger, big1]) {
      expect(await statusOf(s, viewer, ada.id)).toEqual({ status: 'OFFLINE', lastSeenAt: null });
      expect((await ok(gql(s.url, USER, { id: ada.id }, viewer.token))).user).toEqual({ status: 'OFFLINE', lastSeenAt: null });
    }
    // The user themselves always sees their own.
    expect((await statusOf(s, ada, ada.id)).status).toBe('ONLINE');
    // onlineUsers: the viewer's online contacts and themselves; totalCount counts just those.
    const mine = await onlineOf(s, ada);
    expect(mine.ids).toEqual([ada.id, friend.id, roommate.id].sort());
    expect(mine.total).toBe(3);
    expect(await onlineOf(s, stranger)).toEqual({ total: 1, ids: [stranger.id] });
    // An offline contact's lastSeenAt shows to contacts only.
    await logout(s, friend);
    expect((await statusOf(s, ada, friend.id)).lastSeenAt).not.toBeNull();
    expect(await statusOf(s, stranger, friend.id)).toEqual({ status: 'OFFLINE', lastSeenAt: null });
    expect((await onlineOf(s, ada)).total).toBe(2);
  });

  it('should keep today’s contract in everyone mode: every user sees everyone', async () => {
    const s = await createTestServer();
    const [ada, stranger] = [await signup(s.url), await signup(s.url)];
    expect((await statusOf(s, stranger, ada.id)).status).toBe('ONLINE');
    expect((await onlineOf(s, stranger)).total).toBe(2);
    const events = await watch(s, stranger);
    await logout(s, ada);
    await events.nth(1);
    expect(seen(events)).toEqual([`${ada.id} OFFLINE`]);
  });

  it('should show the user signing up or logging in their own presence (ONLINE), in contacts mode too', async () => {
    const s = await createTestServer(CONTACTS);
    const AUTH_USER = '{ user { id status lastSeenAt } }';
    const up = await ok(gql(s.url, `mutation($u: String!, $p: String!) { signup(username: $u, password: $p) ${AUTH_USER} }`, { u: 'self_seer', p: 'correct horse battery' }));
    expect(up.signup.user.status).toBe('ONLINE');
    const again = await ok(gql(s.url, `mutation($u: String!, $p: String!) { login(username: $u, password: $p) ${AUTH_USER} }`, { u: 'self_seer', p: 'correct horse battery' }));
    expect(again.login.user).toMatchObject({ id: up.signup.user.id, status: 'ONLINE' });
    expect(again.login.user.lastSeenAt).not.toBeNull();
  });

  it('should deliver an argument-less presenceChanged of contacts only, and filter explicit userIds by visibility', async () => {
    const s = await createTestServer(CONTACTS);
    const [ada, friend, stranger, barrier] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    await befriend(s.url, ada, friend);
    await befriend(s.url, ada, barrier);
    const mine = await watch(s, ada);
    const named = await watch(s, ada, [friend.id, stranger.id, barrier.id]);
    await cycle(s, stranger);
    await cycle(s, friend);
    // A contact's logout last: once it arrives, the stranger's would have.
    await logout(s, barrier);
    await mine.nth(3);
    await named.nth(3);
    const expected = [`${friend.id} OFFLINE`, `${friend.id} ONLINE`, `${barrier.id} OFFLINE`];
    expect(seen(mine)).toEqual(expected);
    expect(seen(named)).toEqual(expected);
  });

  it('should start and stop a friend’s presence live on every instance when a friendship is made or ended', async () => {
    const a = await createTestServer(CONTACTS);
    const b = await createTestServer(CONTACTS, { clean: false });
    const [ada, bo, barrier, cy] = [await signup(a.url), await signup(b.url), await signup(a.url), await signup(a.url)];
    await befriend(a.url, ada, barrier);
    await befriend(a.url, cy, bo);
    // Ada on A, Bo active on B; they become friends through B.
    const events = await watch(a, ada);
    // Subscriptions that name Bo: Ada's is told what her argument-less one is; Cy's (Bo's friend throughout) nothing of Ada's.
    const named = await watch(a, ada, [bo.id]);
    const cyNamed = await watch(a, cy, [bo.id]);
    await cycle(b, bo);
    expect((await statusOf(a, ada, bo.id)).status).toBe('OFFLINE');
    await befriend(b.url, bo, ada);
    // Bo is ONLINE: Ada is told at once, without reconnecting.
    await events.nth(1);
    expect(seen(events)).toEqual([`${bo.id} ONLINE`]);
    await eventually(async () => (await statusOf(a, ada, bo.id)).status === 'ONLINE');
    expect(a.services.pubsub.takenChannels()).toContain(`parley.conv:pr:${bo.id}`);
    await logout(b, bo);
    await events.nth(2);
    bo.token = await login(b.url, bo);
    await events.nth(3);
    expect(seen(events).slice(1)).toEqual([`${bo.id} OFFLINE`, `${bo.id} ONLINE`]);
    // Unfriended (from B): Ada's stream says OFFLINE with no lastSeenAt, and Bo's changes stop.
    await ok(gql(b.url, 'mutation($u: ID!) { removeFriend(userId: $u) }', { u: ada.id }, bo.token));
    const gone = await events.nth(4);
    expect(gone.presenceChanged).toMatchObject({ status: 'OFFLINE', lastSeenAt: null, user: { id: bo.id } });
    // (A still takes Bo's channel: Cy, his friend, watches him there.)
    await cycle(b, bo);
    await logout(a, barrier);
    await events.nth(5);
    expect(seen(events).slice(4)).toEqual([`${barrier.id} OFFLINE`]);
    expect(await statusOf(a, ada, bo.id)).toEqual({ status: 'OFFLINE', lastSeenAt: null });
    expect(named.values.map((v) => [v.presenceChanged.status, v.presenceChanged.lastSeenAt === null])).toEqual([
      ['ONLINE', false],
      ['OFFLINE', false],
      ['ONLINE', false],
      ['OFFLINE', true],
    ]);
    // Cy saw each of Bo's own transitions (his three logouts and logins), none of Ada's contact changes.
    await cyNamed.nth(6);
    expect(cyNamed.values.map((v) => [v.presenceChanged.status, v.presenceChanged.lastSeenAt === null])).toEqual(
      Array.from({ length: 3 }, () => [
        ['OFFLINE', false],
        ['ONLINE', false],
      ]).flat(),
    );
  });

  it("should end a deleted friend's presence for their friends on every instance, as an unfriending does", async () => {
    const a = await createTestServer(CONTACTS);
    const b = await createTestServer(CONTACTS, { clean: false });
    const [ada, bo] = [await signup(a.url), await signup(b.url)];
    await befriend(a.url, ada, bo);
    const events = await watch(a, ada);
    // A message of Bo's in the lobby, whose sender Ada reads after the deletion as anyone may.
    const sent = (await sendMessage(b.url, bo.token, { groupId: await lobbyOf(b.url, bo.token), content: 'bye' })).id;
    const SENDER = 'query($id: ID!) { node(id: $id) { ... on Message { sender { status lastSeenAt } } } }';
    await eventually(async () => (await ok(gql(a.url, SENDER, { id: sent }, ada.token))).node.sender.lastSeenAt !== null);
    // Bo holds a socket of his own on B: his deletion takes him out of presence there.
    const bos = wsClient(b.wsUrl, bo.token);
    await bos.connected;
    await sleep(300);
    const told = events.values.length;
    await ok(gql(b.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: bo.password }, bo.token));
    // Ada's socket stays open: her contacts no longer hold Bo, and the last she was told says so,
    // once (an outside probe: the deletion's own OFFLINE came as well, for 8 of 18 friends).
    await eventually(async () => events.values.at(-1)?.presenceChanged.lastSeenAt === null);
    await sleep(1000);
    expect(events.values.slice(told).map((v) => v.presenceChanged)).toEqual([{ status: 'OFFLINE', lastSeenAt: null, user: { id: bo.id } }]);
    expect((await ok(gql(a.url, SENDER, { id: sent }, ada.token))).node.sender).toEqual({ status: 'OFFLINE', lastSeenAt: null });
  });

  it('should make members of a small group contacts when they join, live, and never through the lobby', async () => {
    const s = await createTestServer(CONTACTS);
    const [ada, cy] = [await signup(s.url), await signup(s.url)];
    const events = await watch(s, ada);
    const group = await groupWith(s.url, ada, 'Book club', []);
    expect((await statusOf(s, ada, cy.id)).status).toBe('OFFLINE');
    await ok(gql(s.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g: group }, cy.token));
    await events.nth(1);
    expect(seen(events)).toEqual([`${cy.id} ONLINE`]);
    await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g: group }, cy.token));
    await events.nth(2);
    expect(events.values[1].presenceChanged).toMatchObject({ status: 'OFFLINE', lastSeenAt: null, user: { id: cy.id } });
    expect(await statusOf(s, ada, cy.id)).toEqual({ status: 'OFFLINE', lastSeenAt: null });
  });

  it('should send a user’s transitions only to instances where someone may see them', async () => {
    const a = await createTestServer(CONTACTS);
    const b = await createTestServer(CONTACTS, { clean: false });
    const [ada, cy, bo, dee] = [await signup(a.url), await signup(a.url), await signup(b.url), await signup(b.url)];
    await befriend(a.url, ada, cy);
    await befriend(b.url, bo, dee);
    // Ada (on A) may see Cy; on B only Bo is connected, who may see Dee but not Cy.
    const onA = await watch(a, ada);
    const onB = await watch(b, bo);
    const [aBefore, bBefore] = [await metric(a, RECEIVED), await metric(b, RECEIVED)];
    await cycle(b, cy); // published from B, which does not take Cy's channel
    await cycle(a, dee); // published from A, which does not take Dee's channel
    await onA.nth(2);
    await onB.nth(2);
    await sleep(200);
    expect(seen(onA)).toEqual([`${cy.id} OFFLINE`, `${cy.id} ONLINE`]);
    expect(seen(onB)).toEqual([`${dee.id} OFFLINE`, `${dee.id} ONLINE`]);
    // Each instance took from Redis only the two transitions a local socket may see.
    expect((await metric(a, RECEIVED)) - aBefore).toBe(2);
    expect((await metric(b, RECEIVED)) - bBefore).toBe(2);
    expect(a.services.pubsub.takenChannels()).toContain(`parley.conv:pr:${cy.id}`);
    expect(a.services.pubsub.takenChannels()).not.toContain(`parley.conv:pr:${dee.id}`);
    expect(b.services.pubsub.takenChannels()).not.toContain(`parley.conv:pr:${cy.id}`);
  });

  it('should announce the sweep’s OFFLINE transitions in batches to every instance, delivered to contacts only, each once', async () => {
    const a = await createTestServer({ ...CONTACTS, PRESENCE_TIMEOUT: '1' });
    const b = await createTestServer({ ...CONTACTS, PRESENCE_TIMEOUT: '1' }, { clean: false });
    const [ada, cy, bo] = [await signup(a.url), await signup(a.url), await signup(b.url)];
    await befriend(a.url, ada, cy);
    const onA = await watch(a, ada);
    const onB = await watch(b, bo);
    const bBefore = await metric(b, RECEIVED);
    // Cy holds no socket: the sweep takes them OFFLINE after PRESENCE_TIMEOUT.
    await sleep(1100);
    await a.services.presence.sweep();
    await onA.nth(1);
    await sleep(200);
    expect(seen(onA)).toEqual([`${cy.id} OFFLINE`]);
    expect(onA.values[0].presenceChanged.lastSeenAt).not.toBeNull();
    // B took the sweep's one message (the Lua step announces many per message on the topic-wide
    // channel) and had no one to hand it to.
    expect((await metric(b, RECEIVED)) - bBefore).toBe(1);
    expect(onB.values).toEqual([]);
  });

  describe.each([['everyone', {}] as const, ['contacts', CONTACTS] as const])('HIDDEN (%s mode)', (_mode, env) => {
    it('should read a HIDDEN user as OFFLINE to everyone but themselves, and publish none of their transitions', async () => {
      const s = await createTestServer(env);
      const [ada, bo, barrier] = [await signup(s.url), await signup(s.url), await signup(s.url)];
      await befriend(s.url, ada, bo);
      await befriend(s.url, barrier, bo);
      const events = await watch(s, bo);
      // Ada's own view, on a session of hers that stays (the cycle below logs the other one out).
      const own = await watch(s, { ...ada, token: await login(s.url, ada) }, [ada.id, bo.id]);
      const me = await ok(gql(s.url, SET_VISIBILITY, { v: 'HIDDEN' }, ada.token));
      expect(me.setPresenceVisibility).toEqual({ id: ada.id, presenceVisibility: 'HIDDEN', status: 'ONLINE' });
      // Going HIDDEN while online reads as going OFFLINE, with no lastSeenAt.
      const hid = await events.nth(1);
      expect(hid.presenceChanged).toMatchObject({ status: 'OFFLINE', lastSeenAt: null, user: { id: ada.id } });
      expect(await statusOf(s, bo, ada.id)).toEqual({ status: 'OFFLINE', lastSeenAt: null });
      expect((await statusOf(s, ada, ada.id)).status).toBe('ONLINE');
      expect((await onlineOf(s, bo)).ids).not.toContain(ada.id);
      // Their logout and login are not published.
      await cycle(s, ada);
      await logout(s, barrier);
      await events.nth(2);
      expect(seen(events)).toEqual([`${ada.id} OFFLINE`, `${barrier.id} OFFLINE`]);
      expect((await ok(gql(s.url, '{ me { presenceVisibility } }', {}, ada.token))).me.presenceVisibility).toBe('HIDDEN');
      // VISIBLE again while online: ONLINE at once.
      await ok(gql(s.url, SET_VISIBILITY, { v: 'VISIBLE' }, ada.token));
      await events.nth(3);
      expect(seen(events)[2]).toBe(`${ada.id} ONLINE`);
      expect((await statusOf(s, bo, ada.id)).status).toBe('ONLINE');
      // Ada herself was told neither (she reads herself ONLINE throughout); bo's logout is her barrier.
      await logout(s, bo);
      await own.nth(1);
      await sleep(200);
      expect(seen(own)).toEqual([`${bo.id} OFFLINE`]);
    });
  });

  it('should tell nothing of a user OFFLINE whose first request hides them, though that request is their activity', async () => {
    const s = await createTestServer({ PRESENCE_GRACE: '200ms' });
    const [ada, bo, barrier] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const socket = wsClient(s.wsUrl, ada.token);
    await socket.connected;
    const events = await watch(s, bo, [ada.id, barrier.id]);
    await socket.dispose();
    await events.nth(1);
    // The row lock slow to come: the request's activity batch (10 ms) lands before the hide. It was
    // told as ONLINE, then the hide as OFFLINE (an outside probe, 3 of 4).
    const lock = presenceRepository.lockPresenceVisibility.bind(presenceRepository);
    const slow = jest.spyOn(presenceRepository, 'lockPresenceVisibility').mockImplementation(async (...args) => {
      await sleep(100);
      return lock(...args);
    });
    try {
      expect((await ok(gql(s.url, SET_VISIBILITY, { v: 'HIDDEN' }, ada.token))).setPresenceVisibility.presenceVisibility).toBe('HIDDEN');
    } finally {
      slow.mockRestore();
    }
    await logout(s, barrier);
    await events.nth(2);
    await sleep(200);
    expect(seen(events)).toEqual([`${ada.id} OFFLINE`, `${barrier.id} OFFLINE`]);
  });

  it('should tell a change made by several calls at once once', async () => {
    const s = await createTestServer();
    const [ada, bo, barrier] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const events = await watch(s, bo);
    // Four HIDDEN at once (two devices, a retry): one change, one OFFLINE.
    await Promise.all([0, 1, 2, 3].map(() => ok(gql(s.url, SET_VISIBILITY, { v: 'HIDDEN' }, ada.token))));
    await logout(s, barrier);
    await events.nth(2);
    await sleep(200);
    expect(seen(events)).toEqual([`${ada.id} OFFLINE`, `${barrier.id} OFFLINE`]);
  });

  it('should read as the choice stored, and tell that last, when changes at once cross (one slow to be stored)', async () => {
    const s = await createTestServer();
    const [ada, bo] = [await signup(s.url), await signup(s.url)];
    const online = wsClient(s.wsUrl, ada.token);
    await online.connected;
    const events = await watch(s, bo, [ada.id]);
    // The first HIDDEN is slow to reach the database, its mirror written: another HIDDEN and a
    // VISIBLE come meanwhile. Before, the two were stored in one order and mirrored in the other:
    // stored HIDDEN, read ONLINE by everyone (an outside probe, 30 calls at once on two instances).
    const write = presenceRepository.setPresenceVisibility.bind(presenceRepository);
    let first = true;
    const slow = jest.spyOn(presenceRepository, 'setPresenceVisibility').mockImplementation(async (...args) => {
      if (first) {
        first = false;
        await sleep(400);
      }
      return write(...args);
    });
    try {
      const set = (v: string) => ok(gql(s.url, SET_VISIBILITY, { v }, ada.token));
      const slowOne = set('HIDDEN');
      await sleep(50);
      await set('HIDDEN');
      await sleep(50);
      await Promise.all([set('VISIBLE'), slowOne]);
    } finally {
      slow.mockRestore();
    }
    const stored = (await ok(gql(s.url, '{ me { presenceVisibility } }', {}, ada.token))).me.presenceVisibility;
    const expected = stored === 'HIDDEN' ? 'OFFLINE' : 'ONLINE';
    expect((await statusOf(s, bo, ada.id)).status).toBe(expected);
    await eventually(() => (expect(events.values[events.values.length - 1]?.presenceChanged.status).toBe(expected), true), 3000);
    online.dispose();
  });

  it('should show a HIDDEN user again as ONLINE when their last socket closed on another instance while they were active here', async () => {
    const a = await createTestServer({ PRESENCE_GRACE: '200ms' });
    const b = await createTestServer({ PRESENCE_GRACE: '200ms' }, { clean: false });
    const [ada, bo] = [await signup(a.url), await signup(a.url)];
    const socket = wsClient(b.wsUrl, ada.token);
    await socket.connected;
    await ok(gql(a.url, SET_VISIBILITY, { v: 'HIDDEN' }, ada.token));
    const events = await watch(a, bo, [ada.id]);
    // Active on A while connected on B; then B's socket closes and B decides her OFFLINE (not told: she is HIDDEN).
    await ok(gql(a.url, '{ me { id } }', {}, ada.token));
    await socket.client.dispose();
    await eventually(async () => (await a.services.presence.states([ada.id]))[0].status === 'OFFLINE', 5000);
    // Within A's throttle of her requests, she shows herself again: ONLINE to everyone, and told.
    await ok(gql(a.url, 'mutation { heartbeat { status } }', {}, ada.token));
    expect((await ok(gql(a.url, SET_VISIBILITY, { v: 'VISIBLE' }, ada.token))).setPresenceVisibility.status).toBe('ONLINE');
    expect((await statusOf(a, bo, ada.id)).status).toBe('ONLINE');
    expect((await statusOf(b, bo, ada.id)).status).toBe('ONLINE');
    await events.nth(1);
    expect(seen(events)).toEqual([`${ada.id} ONLINE`]);
  });

  describe.each([['everyone', {}] as const, ['contacts', CONTACTS] as const])('a hiding rule (%s mode)', (_mode, env) => {
    // Where safety's block plugs in: one rule hides a user from another in every read and delivery.
    it('should hide a user from the viewers a rule names, in userStatus, onlineUsers and its totalCount, and presenceChanged', async () => {
      const s = await createTestServer(env);
      const [ada, bo, barrier] = [await signup(s.url), await signup(s.url), await signup(s.url)];
      await befriend(s.url, ada, bo);
      await befriend(s.url, barrier, bo);
      s.services.presence.visibility.addRule({ hides: (v, u) => v === bo.id && u === ada.id, hiddenFrom: async (v) => (v === bo.id ? [ada.id] : []) });
      expect(await statusOf(s, bo, ada.id)).toEqual({ status: 'OFFLINE', lastSeenAt: null });
      expect((await statusOf(s, barrier, bo.id)).status).toBe('ONLINE');
      const online = await onlineOf(s, bo);
      expect(online.ids).toEqual([bo.id, barrier.id].sort());
      expect(online.total).toBe(2);
      const events = await watch(s, bo);
      const named = await watch(s, bo, [ada.id, barrier.id]);
      await logout(s, ada);
      await logout(s, barrier);
      await events.nth(1);
      await named.nth(1);
      expect(seen(events)).toEqual([`${barrier.id} OFFLINE`]);
      expect(seen(named)).toEqual([`${barrier.id} OFFLINE`]);
    });
  });

  it('should refuse bad input with a typed error and change nothing', async () => {
    const s = await createTestServer(CONTACTS);
    const [ada, bo] = [await signup(s.url), await signup(s.url)];
    const before = await snapshot(s.env.DATABASE_URL!);
    expect(codeOf(await gql(s.url, SET_VISIBILITY, { v: 'INVISIBLE' }, ada.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, SET_VISIBILITY, { v: null }, ada.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, SET_VISIBILITY, { v: 'HIDDEN' }))).toBe('UNAUTHENTICATED');
    expect(codeOf(await gql(s.url, 'query($id: ID!) { user(id: $id) { presenceVisibility } }', { id: bo.id }, ada.token))).toBe('FORBIDDEN');
    expect(codeOf(await gql(s.url, STATUS, { id: '00000000-0000-4000-8000-000000000000' }, ada.token))).toBe('NOT_FOUND');
    const w = wsClient(s.wsUrl, ada.token);
    const tooMany = subscribe(w, PRESENCE, { ids: Array.from({ length: 1001 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`) });
    await eventually(() => tooMany.errors.length > 0);
    expect((tooMany.errors[0] as { extensions?: { code?: string } }[] | { extensions?: { code?: string } })).toBeDefined();
    expect(JSON.stringify(tooMany.errors)).toContain('BAD_USER_INPUT');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    expect((await ok(gql(s.url, '{ me { presenceVisibility } }', {}, ada.token))).me.presenceVisibility).toBe('VISIBLE');
    await w.dispose();
  });
});

describeNeeding('redis-server', tools.redisServer)('presence after Redis loses its data', () => {
  const redis = new OwnRedis();
  beforeAll(() => redis.start());
  afterAll(() => redis.stop());

  it('should keep a HIDDEN user hidden, and bring connected users back ONLINE at once, after a Redis restart', async () => {
    // PRESENCE_TIMEOUT 20 s: the sockets' own refresh comes every 5 s, later than this test looks.
    const s = await createTestServer({ REDIS_URL: redis.url, PRESENCE_TIMEOUT: '20s' });
    const [ada, bob, watcher] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    await ok(gql(s.url, SET_VISIBILITY, { v: 'HIDDEN' }, ada.token));
    const sockets = [wsClient(s.wsUrl, ada.token), wsClient(s.wsUrl, bob.token)];
    await Promise.all(sockets.map((c) => c.connected));
    expect((await statusOf(s, watcher, ada.id)).status).toBe('OFFLINE');
    expect((await statusOf(s, watcher, bob.id)).status).toBe('ONLINE');

    // Restarted empty (no persistence): who is HIDDEN and who is connected is gone from it.
    await redis.stop();
    await redis.start();
    // Bob's socket is here: ONLINE again once the instance is reconnected, not at its next refresh.
    await eventually(async () => (await statusOf(s, watcher, bob.id)).status === "ONLINE", 3000);
    // Ada stays hidden, also once her socket's refresh passes (every 5 s here) and she is active.
    await ok(gql(s.url, 'mutation { heartbeat { status } }', {}, ada.token));
    await sleep(5500);
    expect(await statusOf(s, watcher, ada.id)).toEqual({ status: 'OFFLINE', lastSeenAt: null });
    expect((await onlineOf(s, watcher)).ids).not.toContain(ada.id);
    await Promise.all(sockets.map((c) => c.dispose()));
  }, 30_000);
});

describeNeeding('redis-server', tools.redisServer)('presence, accounts and sessions while Redis is away', () => {
  const redis = new OwnRedis();
  beforeAll(() => redis.start());
  afterAll(() => redis.stop());

  it('should refuse setPresenceVisibility with nothing changed, and answer a deleteAccount it carried out', async () => {
    const s = await createTestServer({ REDIS_URL: redis.url });
    const [ada, bob] = [await signup(s.url), await signup(s.url)];
    await redis.stop();
    try {
      // The store can't mirror the choice: refused, and the database still holds VISIBLE.
      const before = await snapshot(s.env.DATABASE_URL!);
      expect(codeOf(await gql(s.url, SET_VISIBILITY, { v: 'HIDDEN' }, ada.token))).toBe('SERVICE_UNAVAILABLE');
      expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
      // The deletion commits without Redis: it is answered as done, not as "try again" (a retry finds the token gone).
      expect((await ok(gql(s.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: bob.password }, bob.token))).deleteAccount).toBe(true);
      expect(codeOf(await gql(s.url, '{ me { id } }', {}, bob.token))).toBe('UNAUTHENTICATED');
    } finally {
      await redis.start();
    }
    await eventually(async () => !(await gql(s.url, SET_VISIBILITY, { v: 'HIDDEN' }, ada.token)).errors, 5000);
  }, 30_000);

  it("should keep a HIDDEN user's lastSeenAt from everyone, and answer a heartbeat ONLINE, while the store can't be read", async () => {
    const s = await createTestServer({ REDIS_URL: redis.url });
    const [hidden, watcher] = [await signup(s.url), await signup(s.url)];
    // A lastSeenAt in the database (a logout writes it), then hidden.
    await ok(gql(s.url, 'mutation { logout }', {}, hidden.token));
    const token = await login(s.url, hidden);
    await ok(gql(s.url, SET_VISIBILITY, { v: 'HIDDEN' }, token));
    await redis.stop();
    try {
      expect(await statusOf(s, watcher, hidden.id)).toEqual({ status: 'OFFLINE', lastSeenAt: null });
      // The viewer is active, as their heartbeat shows: not told they are OFFLINE because the store is away.
      expect((await ok(gql(s.url, 'mutation { heartbeat { status } }', {}, watcher.token))).heartbeat.status).toBe('ONLINE');
    } finally {
      await redis.start();
    }
  }, 30_000);

  it("should settle, once Redis is back, the OFFLINE of a user whose last socket closed while it was away", async () => {
    const s = await createTestServer({ REDIS_URL: redis.url, PRESENCE_GRACE: '200ms' });
    const [ada, watcher] = [await signup(s.url), await signup(s.url)];
    const socket = wsClient(s.wsUrl, ada.token);
    await socket.connected;
    const seen = await listen(s, watcher, 'subscription($ids: [ID!]) { presenceChanged(userIds: $ids) { status } }', { ids: [ada.id] });
    await redis.stop({ save: true });
    try {
      await socket.dispose();
      // The grace passes while the store is away: nothing can be settled.
      await sleep(600);
    } finally {
      await redis.start();
    }
    // Back with its data: Ada is OFFLINE now, told once, not at the sweep (PRESENCE_TIMEOUT) as before.
    await eventually(async () => (await statusOf(s, watcher, ada.id)).status === 'OFFLINE', 5000);
    await seen.nth(1);
    expect(seen.values.map((v) => v.presenceChanged.status)).toEqual(['OFFLINE']);
  }, 30_000);

  it("should close another instance's socket of a token logged out while Redis was away, and refuse the token there, once Redis is back", async () => {
    const a = await createTestServer({ REDIS_URL: redis.url });
    const b = await createTestServer({ REDIS_URL: redis.url }, { clean: false });
    const ada = await signup(a.url);
    const live = await listen(a, ada, 'subscription { presenceChanged { userId } }');
    await ok(gql(a.url, '{ me { id } }', {}, ada.token));
    await redis.stop();
    try {
      // The revocation's publish can't reach A.
      expect((await ok(gql(b.url, 'mutation { logout }', {}, ada.token))).logout).toBe(true);
    } finally {
      await redis.start();
    }
    expect((await live.ws.closed).code).toBe(4403);
    await eventually(async () => codeOf(await gql(a.url, '{ me { id } }', {}, ada.token)) === 'UNAUTHENTICATED', 5000);
  }, 30_000);
});
