import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSchema, getNamedType, isInterfaceType, isObjectType, isUnionType } from 'graphql';
import { Redis } from 'ioredis';
import { eventually, gql, listen, ok, running, sleep, subscribe, wsClient } from './helpers/graphql';
import { createTestServer, describeRedis, redisName } from './helpers/server';
import { buildGroup, buildProject, signup, lobbyOf, attempt, sendMessage, groupWith, request } from './helpers/factories';
import { DesignateCoachDocument, RenameGroupDocument, RenameProjectDocument, SendMessageDocument } from '../generated/client/graphql';
import { initialized, type RawSocket } from './helpers/raw-socket';
import { cutSlowReader } from './helpers/slow-reader';
import { eventsOf } from '../src/shared/pubsub/pubsub';

const SLOW_QUERY = 'subscription { messageAdded { content sender { username } } }';
import { VIEWER_INDEPENDENT, VIEWER_SPECIFIC_FIELDS } from '../src/graphql/fanout';
import { groupRepository } from '../src/modules/group/group.repository';
import { GroupSnapshots } from '../src/modules/group/group.snapshots';
import { projectRepository } from '../src/modules/project/project.repository';
import type { EntityManager } from '@mikro-orm/postgresql';


describe('subscription fan-out', () => {
  it('should execute each event once per distinct document and variables, and give each its exact result', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const lobby = await lobbyOf(s.url, a.token);
    const other = (await buildGroup(s.url, a)).id;
    const wide = 'subscription { messageAdded { id content sender { id username } } }';
    const narrow = 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { content } }';
    const subs = [];
    for (let i = 0; i < 5; i++) {
      const w = wsClient(s.wsUrl, i % 2 ? a.token : b.token);
      await w.connected;
      subs.push(subscribe<any>(w, wide));
    }
    const wa = wsClient(s.wsUrl, a.token);
    await wa.connected;
    const onLobby = subscribe<any>(wa, narrow, { c: { groupId: lobby } });
    const onOther = subscribe<any>(wa, narrow, { c: { groupId: other } });
    await running(s, 'messageAdded', 7);
    const before = s.fanout.executions;
    const sent = await sendMessage(s.url, a.token, { groupId: lobby, content: 'hello all' });
    for (const sub of subs) expect((await sub.nth(1)).messageAdded).toEqual({ id: sent.id, content: 'hello all', sender: { id: a.id, username: a.username } });
    expect(await onLobby.nth(1)).toEqual({ messageAdded: { content: 'hello all' } });
    // Seven subscribers, two shapes that received the event: two executions.
    expect(s.fanout.executions - before).toBe(2);
    // A later message to the other group comes first there: the lobby's never did.
    await sendMessage(s.url, a.token, { groupId: other, content: 'to other' });
    expect(await onOther.nth(1)).toEqual({ messageAdded: { content: 'to other' } });
  });

  it("should execute per viewer a message document that selects viewer-specific fields (the project's viewerRole)", async () => {
    const s = await createTestServer();
    const [owner, member] = [await signup(s.url), await signup(s.url)];
    const project = (await buildProject(s.url, owner, { participants: [member] })).id;
    const roles = 'subscription { messageAdded { content project { id viewerRole } } }';
    const [wo, wm] = [wsClient(s.wsUrl, owner.token), wsClient(s.wsUrl, member.token)];
    await Promise.all([wo.connected, wm.connected]);
    const [so, sm] = [subscribe<any>(wo, roles), subscribe<any>(wm, roles)];
    await running(s, 'messageAdded', 2);
    const before = s.fanout.executions;
    await ok(gql(s.url, 'mutation($p: ID!) { sendMessage(input: { projectId: $p, content: "to both" }) { id } }', { p: project }, owner.token));
    expect(await so.nth(1)).toEqual({ messageAdded: { content: 'to both', project: { id: project, viewerRole: 'OWNER' } } });
    expect(await sm.nth(1)).toEqual({ messageAdded: { content: 'to both', project: { id: project, viewerRole: 'PARTICIPANT' } } });
    expect(s.fanout.executions - before).toBe(2);
  });

  it("should execute per viewer a document that selects a user's presence: a HIDDEN sender reads OFFLINE to others, ONLINE to themselves", async () => {
    const s = await createTestServer();
    const [hidden, other] = [await signup(s.url), await signup(s.url)];
    const group = await groupWith(s.url, hidden, 'presence dots', [other]);
    await ok(gql(s.url, 'mutation { setPresenceVisibility(visibility: HIDDEN) { id } }', {}, hidden.token));
    const dots = 'subscription { messageAdded { content sender { id status lastSeenAt } } }';
    // The sender subscribes first, so a run shared by both would be theirs (ONLINE: their own view).
    const wh = wsClient(s.wsUrl, hidden.token);
    await wh.connected;
    const sh = subscribe<any>(wh, dots);
    await running(s, 'messageAdded', 1);
    const wo = wsClient(s.wsUrl, other.token);
    await wo.connected;
    const so = subscribe<any>(wo, dots);
    await running(s, 'messageAdded', 2);
    await sendMessage(s.url, hidden.token, { groupId: group, content: 'from the shadows' });
    expect((await sh.nth(1)).messageAdded.sender).toMatchObject({ id: hidden.id, status: 'ONLINE' });
    expect((await so.nth(1)).messageAdded.sender).toEqual({ id: hidden.id, status: 'OFFLINE', lastSeenAt: null });
  });

  it("should read a sender's presence once an event, however many viewers' runs ask for it", async () => {
    const s = await createTestServer();
    const [sender, ...members] = await Promise.all(Array.from({ length: 6 }, () => signup(s.url)));
    const group = await groupWith(s.url, sender, 'presence dots', members);
    const dots = 'subscription { messageAdded { content sender { id status } } }';
    for (const m of members) {
      const w = wsClient(s.wsUrl, m.token);
      await w.connected;
      subscribe<any>(w, dots);
    }
    await running(s, 'messageAdded', members.length);
    const store = (s.services.presence as unknown as { store: { read: (ids: string[]) => Promise<unknown> } }).store;
    const reads = jest.spyOn(store, 'read');
    const before = s.fanout.executions;
    await sendMessage(s.url, sender.token, { groupId: group, content: 'dot' });
    await eventually(() => s.fanout.executions - before === members.length);
    await sleep(100);
    // Five runs (one per viewer), one read of the sender's presence.
    expect(reads.mock.calls.filter(([ids]) => ids.includes(sender.id))).toHaveLength(1);
  });

  it("should read a message's group once for every member's run here, and for the events of the next moments", async () => {
    const s = await createTestServer();
    const [sender, ...members] = await Promise.all(Array.from({ length: 6 }, () => signup(s.url)));
    const group = await groupWith(s.url, sender, 'one read', members);
    const withGroup = 'subscription { messageAdded { content group { id name memberCount } } }';
    const subs: ReturnType<typeof subscribe<any>>[] = [];
    for (const m of members) {
      const w = wsClient(s.wsUrl, m.token);
      await w.connected;
      subs.push(subscribe<any>(w, withGroup));
    }
    await running(s, 'messageAdded', members.length);
    const reads = jest.spyOn(groupRepository, 'byIds');
    const visible = jest.spyOn(groupRepository, 'visibleByIds');
    for (const content of ['one', 'two', 'three']) await sendMessage(s.url, sender.token, { groupId: group, content });
    await eventually(() => subs.every((sub) => sub.values.length === 3));
    // Five members, three messages: one read of the group (each run read it apart: fifteen, and on a
    // starved pool they failed, the members getting `group: null`).
    expect(reads.mock.calls.filter(([, ids]) => ids.includes(group))).toHaveLength(1);
    // Nor any member's own visibility read (the sender's answer, over HTTP, reads theirs).
    expect(visible.mock.calls.filter(([, , viewer]) => members.some((m) => m.id === viewer))).toEqual([]);
    for (const sub of subs) {
      expect(sub.errors).toEqual([]);
      expect(sub.values.map((v) => [v.messageAdded.content, v.messageAdded.group])).toEqual(['one', 'two', 'three'].map((c) => [c, { id: group, name: 'one read', memberCount: 6 }]));
    }
    // A rename told here forgets the copy: the next message shows the new name at once.
    await request(s.url, RenameGroupDocument, { groupId: group, name: 'renamed' }, sender.token);
    await sendMessage(s.url, sender.token, { groupId: group, content: 'four' });
    await eventually(() => subs.every((sub) => sub.values.length === 4));
    for (const sub of subs) expect(sub.values[3].messageAdded.group.name).toBe('renamed');
    reads.mockRestore();
    visible.mockRestore();
  });

  it("should read a message's project once for every member's run here, and show a change at once", async () => {
    const s = await createTestServer();
    const [owner, ...participants] = await Promise.all(Array.from({ length: 5 }, () => signup(s.url)));
    const project = (await buildProject(s.url, owner, { title: 'one read', participants })).id;
    const withProject = 'subscription { messageAdded { content project { id title viewerRole } } }';
    const subs: ReturnType<typeof subscribe<any>>[] = [];
    for (const m of [owner, ...participants]) {
      const w = wsClient(s.wsUrl, m.token);
      await w.connected;
      subs.push(subscribe<any>(w, withProject));
    }
    await running(s, 'messageAdded', 5);
    const reads = jest.spyOn(projectRepository, 'byId');
    const perViewer = jest.spyOn(projectRepository, 'ofUser');
    for (const content of ['one', 'two', 'three']) await sendMessage(s.url, owner.token, { projectId: project, content });
    await eventually(() => subs.every((sub) => sub.values.length === 3));
    // Five members, three messages: one read of the project (each run read it and its members apart:
    // thirty queries, and on a starved pool they failed, the members getting `project: null`).
    expect(reads.mock.calls.filter(([, id]) => id === project)).toHaveLength(1);
    // Nor any participant's own read (the sender's answers, over HTTP, read theirs).
    expect(perViewer.mock.calls.filter(([, viewer]) => participants.some((p) => p.id === viewer))).toEqual([]);
    const roles = ['OWNER', 'PARTICIPANT', 'PARTICIPANT', 'PARTICIPANT', 'PARTICIPANT'];
    subs.forEach((sub, i) => {
      expect(sub.errors).toEqual([]);
      expect(sub.values.map((v) => [v.messageAdded.content, v.messageAdded.project])).toEqual(['one', 'two', 'three'].map((c) => [c, { id: project, title: 'one read', viewerRole: roles[i] }]));
    });
    // A rename and a coach designated, told here, forget the copy: the next message shows both at once.
    await request(s.url, RenameProjectDocument, { projectId: project, title: 'renamed' }, owner.token);
    await request(s.url, DesignateCoachDocument, { projectId: project, userId: participants[0].id }, owner.token);
    await sendMessage(s.url, owner.token, { projectId: project, content: 'four' });
    await eventually(() => subs.every((sub) => sub.values.length === 4));
    expect(subs.map((sub) => sub.values[3].messageAdded.project)).toEqual(['OWNER', 'COACH', 'PARTICIPANT', 'PARTICIPANT', 'PARTICIPANT'].map((viewerRole) => ({ id: project, title: 'renamed', viewerRole })));
    reads.mockRestore();
    perViewer.mockRestore();
  });

  it('should know, of every field a shared subscription reaches, whether it is the same for every viewer', async () => {
    const schema = buildSchema(readFileSync(join(__dirname, '..', 'schema.graphql'), 'utf8'));
    // Checked, one by one, to resolve the same for any viewer the event reaches (the event's filter
    // decides who may see it). A field added to a type below fails here until it is put on one list.
    const SAME_FOR_EVERY_VIEWER = new Set([
      ...['attachment', 'clientMessageId', 'content', 'conversationId', 'createdAt', 'cursor', 'deletedAt', 'editedAt', 'id', 'lastReplyAt', 'mentions', 'parentId', 'pinnedAt', 'pinnedBy', 'reactions', 'recipient', 'replyCount', 'sender', 'threadParticipants'].map((f) => `Message.${f}`),
      ...['lastSeenAt', 'status', 'user'].map((f) => `Presence.${f}`),
      ...['conversationId', 'kind', 'message'].map((f) => `MessageEvent.${f}`),
      ...['conversationId', 'privateThread', 'typing', 'user'].map((f) => `TypingEvent.${f}`),
      ...['conversationId', 'lastReadMessageId', 'readAt', 'user'].map((f) => `ReadReceipt.${f}`),
      // url: the shared run is per origin (the key of a shape), and the link is the same for anyone.
      ...['base64', 'fileName', 'id', 'mimeType', 'size', 'url'].map((f) => `Attachment.${f}`),
      ...['createdAt', 'displayName', 'id', 'username'].map((f) => `User.${f}`),
      ...['count', 'emoji'].map((f) => `ReactionCount.${f}`),
    ]);
    const unclassified: string[] = [];
    const seen = new Set<string>();
    const subscription = schema.getSubscriptionType()!.getFields();
    const queue = [...VIEWER_INDEPENDENT].map((root) => getNamedType(subscription[root].type));
    for (let type = queue.shift(); type; type = queue.shift()) {
      if (seen.has(type.name)) continue;
      seen.add(type.name);
      if (isUnionType(type) || isInterfaceType(type)) queue.push(...schema.getPossibleTypes(type));
      if (!isObjectType(type) && !isInterfaceType(type)) continue;
      for (const field of Object.values(type.getFields())) {
        const name = `${type.name}.${field.name}`;
        // A viewer-specific field's subtree runs per viewer anyway.
        if (VIEWER_SPECIFIC_FIELDS.has(name)) continue;
        if (!SAME_FOR_EVERY_VIEWER.has(name)) unclassified.push(name);
        queue.push(getNamedType(field.type));
      }
    }
    expect(unclassified).toEqual([]);
    expect(seen.size).toBeGreaterThan(8);
  });

  it('should give every subscriber of a large fan-out each event exactly once and in order', async () => {
    const s = await createTestServer({ RATE_LIMIT_SEND_MESSAGE: '1000/1s' });
    const a = await signup(s.url);
    const lobby = await lobbyOf(s.url, a.token);
    // 10 sockets x 30 operations of one shape: more subscribers than one write slice.
    const clients: RawSocket[] = [];
    for (let i = 0; i < 10; i++) {
      const c = await initialized(s.wsUrl, a.token);
      for (let k = 0; k < 30; k++) c.send({ id: `op${k}`, type: 'subscribe', payload: { query: 'subscription { messageAdded { content } }' } });
      clients.push(c);
    }
    await running(s, 'messageAdded', 300);
    const before = s.fanout.executions;
    await Promise.all([...Array(5).keys()].map((n) => attempt(s.url, SendMessageDocument, { input: { groupId: lobby, content: `m${n}` } }, a.token)));
    await eventually(async () => clients.every((c) => c.messages.filter((f) => f.type === 'next').length === 150), 10_000);
    // Concurrent sends commit in any order; every subscriber sees the one order they were published in.
    const order = clients[0].messages.filter((f) => f.id === 'op0' && f.type === 'next').map((f) => f.payload.data.messageAdded.content);
    expect([...order].sort()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    for (const c of clients) {
      for (let k = 0; k < 30; k++) {
        expect(c.messages.filter((f) => f.id === `op${k}` && f.type === 'next').map((f) => f.payload.data.messageAdded.content)).toEqual(order);
      }
    }
    // One execution per event for all 300.
    expect(s.fanout.executions - before).toBe(5);
  }, 30_000);

  it('should keep graphql-ws protocol rules: complete, duplicate ids, invalid documents', async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const lobby = await lobbyOf(s.url, a.token);
    const c = await initialized(s.wsUrl, a.token);
    c.send({ id: 's1', type: 'subscribe', payload: { query: 'subscription { messageAdded { content } }' } });
    c.send({ id: 'bad', type: 'subscribe', payload: { query: 'subscription { messageAdded { nope } }' } });
    await running(s, 'messageAdded', 1);
    await sendMessage(s.url, a.token, { groupId: lobby, content: 'one' });
    await eventually(() => c.messages.some((f) => f.id === 's1'));
    expect(c.messages.filter((f) => f.id === 's1')).toEqual([{ id: 's1', type: 'next', payload: { data: { messageAdded: { content: 'one' } } } }]);
    expect(c.messages.find((f) => f.id === 'bad')?.type).toBe('error');
    c.send({ id: 's1', type: 'complete' });
    await running(s, 'messageAdded', 0);
    // Another subscription as a barrier: once it has 'two', a still running s1 would have it too.
    c.send({ id: 's3', type: 'subscribe', payload: { query: 'subscription { messageAdded { content } }' } });
    await running(s, 'messageAdded', 1);
    await sendMessage(s.url, a.token, { groupId: lobby, content: 'two' });
    await eventually(() => c.messages.some((f) => f.id === 's3' && f.type === 'next'));
    expect(c.messages.filter((f) => f.id === 's1')).toHaveLength(1);
    c.send({ id: 's2', type: 'subscribe', payload: { query: 'subscription { messageAdded { content } }' } });
    c.send({ id: 's2', type: 'subscribe', payload: { query: 'subscription { messageAdded { content } }' } });
    expect((await c.closed).code).toBe(4409);
  });

  it('should close a consumer that stops reading with 1013 instead of buffering without bound', async () => {
    // No keep-alive: a paused client can't answer pings, and being cut for that is not what this tests.
    const s = await createTestServer({ WS_MAX_BUFFERED_BYTES: '65536', WS_KEEPALIVE: '0' }, { captureLogs: true });
    const a = await signup(s.url);
    // Stop reading: the kernel buffers fill, then the server's.
    const c = await cutSlowReader(s, a.token, await lobbyOf(s.url, a.token), SLOW_QUERY);
    (c.socket as any)._socket.resume();
    expect((await c.closed).code).toBe(1013);
    // Counted where an operator looks (it was cut without a trace: an outside probe).
    const metrics = await (await fetch(s.url.replace('/graphql', '/metrics'))).text();
    expect(metrics).toMatch(/^parley_slow_consumers_closed_total 1$/m);
    // And logged once the second's cuts are in, with no request's id (it carried a send's).
    const said = () => s.logs.filter((l) => String(l.json.msg).startsWith('subscribers closed for not reading'));
    await eventually(() => said().length > 0, 5000);
    expect(said().map((l) => [l.json.level, l.json.closed, 'requestId' in l.json])).toEqual([['warn', 1, false]]);
  }, 60_000);

  it('should reset the connection of a consumer that stopped reading and never answers the 1013, not leave its unsent megabytes to the kernel', async () => {
    const s = await createTestServer({ WS_MAX_BUFFERED_BYTES: '65536', WS_KEEPALIVE: '0' });
    const a = await signup(s.url);
    const c = await cutSlowReader(s, a.token, await lobbyOf(s.url, a.token), SLOW_QUERY);
    // Past the close handshake's 2 s: closed, the connection would sit in FIN-WAIT-1 with what was
    // queued for it (till the client read it or TCP gave up); reset, the server's side is gone.
    const port = new URL(s.wsUrl).port;
    const waiting = () => execFileSync('ss', ['-tnH', 'state', 'fin-wait-1', `( sport = :${port} )`], { encoding: 'utf8' }).trim();
    await new Promise((r) => setTimeout(r, 2500));
    expect(waiting()).toBe('');
    // And the client, reading again, hears the connection gone (no clean close of its own to answer).
    (c.socket as any)._socket.resume();
    expect((await c.closed).code).toBe(1006);
  }, 60_000);
});

describe('GroupSnapshots', () => {
  it('should not keep a read that was on its way when the group changed', async () => {
    const snapshots = new GroupSnapshots();
    const rows: ((v: unknown[]) => void)[] = [];
    const reads = jest.spyOn(groupRepository, 'byIds').mockImplementation(() => new Promise((resolve) => rows.push(resolve as (v: unknown[]) => void)));
    const row = (name: string) => ({ id: 'g', name, isPrivate: true, isLobby: false, memberCount: 2, createdAt: new Date(0), slowModeSeconds: 0, owner: null });
    const em = {} as EntityManager;
    // One read for two askers at once.
    const [a, b] = [snapshots.get(em, 'g'), snapshots.get(em, 'g')];
    expect(reads).toHaveBeenCalledTimes(1);
    // A rename told meanwhile: that read answers its askers, and is not kept.
    snapshots.forget('g');
    rows[0]([row('old')]);
    expect([(await a)?.name, (await b)?.name]).toEqual(['old', 'old']);
    const c = snapshots.get(em, 'g');
    expect(reads).toHaveBeenCalledTimes(2);
    rows[1]([row('new')]);
    expect((await c)?.name).toBe('new');
    // Kept now: the next asker reads no more.
    expect((await snapshots.get(em, 'g'))?.name).toBe('new');
    expect(reads).toHaveBeenCalledTimes(2);
    // Past its 2 s, a read that fails (a starved pool) answers with the copy at hand.
    const later = jest.spyOn(Date, 'now').mockReturnValue(Date.now() + 2500);
    reads.mockImplementation(() => Promise.reject(new Error('Knex: Timeout acquiring a connection')));
    expect((await snapshots.get(em, 'g'))?.name).toBe('new');
    expect(reads).toHaveBeenCalledTimes(3);
    later.mockRestore();
    reads.mockRestore();
    snapshots.dispose();
  });
});

describeRedis('subscription fan-out, events from Redis', () => {
  it("should keep a subscriber's events in order when the first waits for a read and the next is answered at once", async () => {
    const a = await createTestServer();
    const [ann, bob] = [await signup(a.url), await signup(a.url)];
    const g = await groupWith(a.url, ann, 'In order', [bob]);
    // The group's events as instance A publishes them, recorded from Redis (bob is connected nowhere).
    const channel = redisName(`parley.conv:g:${g}`);
    const tap = new Redis(process.env.REDIS_URL!);
    const recorded: string[] = [];
    tap.on('message', (_c: string, m: string) => void (eventsOf(JSON.parse(m)).some((e) => e.topic === 'parley.conversation.updated') && recorded.push(m)));
    await tap.subscribe(channel);
    try {
      await sendMessage(a.url, ann.token, { groupId: g, content: 'first' });
      await sendMessage(a.url, bob.token, { groupId: g, content: 'second' });
      await eventually(() => recorded.length === 2);
      // On B, bob's row for ann's message needs his read state from the database; his own message
      // carries it, so its row is ready at once. Replayed in one write, the second arrives while
      // the first still waits: it must not overtake it.
      const b = await createTestServer({}, { clean: false });
      const sidebar = await listen(b, bob, 'subscription { conversationUpdated { lastMessage { content } } }');
      const pub = new Redis(process.env.REDIS_URL!);
      await pub.pipeline(recorded.map((m) => ['publish', channel, m])).exec();
      pub.disconnect();
      await sidebar.nth(2);
      expect(sidebar.values.map((v) => v.conversationUpdated.lastMessage.content)).toEqual(['first', 'second']);
    } finally {
      tap.disconnect();
    }
  });
});
