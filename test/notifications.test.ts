import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { codeOf, eventually, gql, ok, sleep, wsClient } from './helpers/graphql';
import { createTestServer, describeRedis, type TestServer } from './helpers/server';
import { befriend, buildGroup, buildProject, sendMessage, signup, type TestUser } from './helpers/factories';
import { snapshot, sql } from './helpers/db';
import { LARGE_GROUP, retryDelay } from '../src/modules/notification/notification.service';
import { loadEnv } from '../src/config/env';
import { documentedVerifier, documentedReceiverSource, startReceiver, type Receiver } from './helpers/webhook-receiver';
import { sparePorts } from './helpers/ports';

const SECRET = 'whsec_test_0123456789abcdef';
const ME = '{ me { id notificationLevel } }';
const SET_LEVEL = 'mutation($level: NotificationLevel!) { setNotificationLevel(level: $level) { id notificationLevel } }';
const FRIEND_REQUEST = 'mutation($id: ID!) { sendFriendRequest(userId: $id) { id } }';

/** A server whose webhooks go to `receiver`: grace short and no coalescing unless `overrides` say otherwise. */
function serverFor(receiver: Receiver, overrides: Record<string, string> = {}, clean = true): Promise<TestServer> {
  return createTestServer({ WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: SECRET, WEBHOOK_COALESCE: '0', PRESENCE_GRACE: '0.2', ...overrides }, { jobs: true, clean });
}

/** The value of one counter in the server's /metrics. */
async function metric(s: TestServer, name: string): Promise<number> {
  const text = await (await fetch(new URL('/metrics', s.url))).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

let receiver: Receiver;
beforeEach(async () => {
  receiver = await startReceiver();
});
afterEach(async () => {
  await receiver.close();
});

/** Enough time for a message to pass the tail (grace + 1 s) and a few delivery rounds. */
const QUIET_MS = 2500;

describe('notifications', () => {
  it('should notify an offline member once, signed, and neither the online member nor the sender', async () => {
    const s = await serverFor(receiver);
    const [a, away, here] = [await signup(s.url, { displayName: 'Ada' }), await signup(s.url), await signup(s.url)];
    const group = await buildGroup(s.url, a, { members: [away, here] });
    const socket = wsClient(s.wsUrl, here.token);
    await socket.connected;
    const sent = await sendMessage(s.url, a.token, { groupId: group.id, content: 'are you coming tonight?' });

    const event = await eventually(() => receiver.of(away.id)[0], 8000);
    await sleep(QUIET_MS);
    expect(receiver.of(away.id)).toHaveLength(1);
    expect(receiver.of(here.id)).toEqual([]);
    expect(receiver.of(a.id)).toEqual([]);
    expect(event.body).toEqual({
      id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      kind: 'MESSAGE',
      recipientId: away.id,
      conversationId: `g:${group.id}`,
      sender: { id: a.id, username: a.username, displayName: 'Ada' },
      preview: 'are you coming tonight?',
      count: 1,
      unreadTotal: 1,
      createdAt: sent.createdAt,
    });
    const verify = documentedVerifier();
    expect(verify(SECRET, event.signature, event.raw)).toBe(true);
    expect(await metric(s, 'parley_webhook_events_queued_total')).toBe(1);
    expect(await metric(s, 'parley_webhook_events_delivered_total')).toBe(1);
    expect(await metric(s, 'parley_webhook_delivery_latency_seconds_count')).toBe(1);
    await socket.dispose();
  });

  it('should not tell a member added just after a message of it: it never reached them', async () => {
    const s = await serverFor(receiver);
    const [a, y, z] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const project = await buildProject(s.url, a);
    const group = await buildGroup(s.url, a);
    // Sent, then the members added at once: the tail reads the messages after both.
    await sendMessage(s.url, a.token, { projectId: project.id, content: 'before y' });
    await sendMessage(s.url, a.token, { groupId: group.id, content: 'before z' });
    await ok(gql(s.url, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p: project.id, u: y.id }, a.token));
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }', { g: group.id, u: z.id }, a.token));
    await sendMessage(s.url, a.token, { projectId: project.id, content: 'after y' });
    await sendMessage(s.url, a.token, { groupId: group.id, content: 'after z' });
    await eventually(() => receiver.of(y.id).length >= 2 && receiver.of(z.id).length >= 1, 8000);
    await sleep(QUIET_MS);
    expect(receiver.of(y.id).map((e) => e.body.kind).sort()).toEqual(['MESSAGE', 'PROJECT_ACTION']);
    expect(receiver.of(y.id).find((e) => e.body.kind === 'MESSAGE')!.body.preview).toBe('after y');
    expect(receiver.of(z.id).map((e) => [e.body.kind, e.body.preview])).toEqual([['MESSAGE', 'after z']]);
  });

  it("should cut a project action's preview at 140 characters, never inside an emoji, and let the action through", async () => {
    const s = await serverFor(receiver);
    const [a, y] = [await signup(s.url), await signup(s.url)];
    // Two titles of 100 characters, one ASCII letter apart: whatever the names' lengths, one of them
    // put half an emoji at the 140th UTF-16 unit, and PostgreSQL refused the event's JSON: the add
    // failed INTERNAL_SERVER_ERROR, a deletion too (an outside probe).
    const titles = [`x${'😀'.repeat(99)}`, `xx${'😀'.repeat(98)}`];
    const projects: string[] = [];
    for (const title of titles) {
      const p = (await ok(gql(s.url, 'mutation($t: String!) { createProject(title: $t) { id } }', { t: title }, a.token))).createProject.id;
      await ok(gql(s.url, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p, u: y.id }, a.token));
      projects.push(p);
    }
    // A rename names both titles: past 140 characters, cut there.
    await ok(gql(s.url, 'mutation($p: ID!, $t: String!) { renameProject(projectId: $p, title: $t) { id } }', { p: projects[0], t: `z${'😀'.repeat(99)}` }, a.token));
    await eventually(() => receiver.of(y.id).length >= 3, 8000);
    const inbox = (await ok(gql(s.url, '{ projectActions(first: 5) { edges { node { message } } } }', {}, y.token))).projectActions.edges.map((e: any) => e.node.message);
    expect(inbox.map((m: string) => [...m].length > 140)).toEqual([false, false, true]);
    expect(receiver.of(y.id).map((e) => e.body.preview)).toEqual(inbox.map((m: string) => [...m].slice(0, 140).join('')));
  });

  it("should end a message's preview between two graphemes: never inside a family emoji or a letter's accents", async () => {
    const s = await serverFor(receiver, { WEBHOOK_COALESCE: '0' });
    const [a, b, c] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const x = 'x'.repeat(139);
    // The family is five code points from the 140th on, the é two (e and its accent): cut by code
    // points, the preview ended on the father alone, and on a bare e (an outside probe).
    const texts = { [b.id]: `${x}👨‍👩‍👧 and more`, [c.id]: `${x}e\u0301 and more` };
    await befriend(s.url, a, b);
    await befriend(s.url, a, c);
    for (const u of [b, c]) await sendMessage(s.url, a.token, { toUserId: u.id, content: texts[u.id] });
    await eventually(() => receiver.of(b.id).length >= 1 && receiver.of(c.id).length >= 1, 8000);
    expect([receiver.of(b.id)[0].body.preview, receiver.of(c.id)[0].body.preview]).toEqual([x, x]);
  });

  it('should coalesce messages to one offline user in one conversation within WEBHOOK_COALESCE into one event with a count', async () => {
    const s = await serverFor(receiver, { WEBHOOK_COALESCE: '3' });
    const [a, b, c] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    await befriend(s.url, a, b);
    const group = await buildGroup(s.url, c, { members: [b] });
    for (const text of ['one', 'two', 'three']) await sendMessage(s.url, a.token, { toUserId: b.id, content: text });
    await sendMessage(s.url, c.token, { groupId: group.id, content: 'elsewhere' });

    const messages = () => receiver.of(b.id).filter((e) => e.body.kind === 'MESSAGE');
    await eventually(() => messages().length >= 2, 10_000);
    await sleep(QUIET_MS);
    const events = messages().map((e) => e.body);
    expect(events).toHaveLength(2);
    const direct = events.find((e) => e.conversationId!.startsWith('d:'))!;
    expect(direct).toMatchObject({ kind: 'MESSAGE', count: 3, preview: 'three', sender: { id: a.id }, unreadTotal: 4 });
    expect(events.find((e) => e.conversationId === `g:${group.id}`)).toMatchObject({ count: 1, preview: 'elsewhere' });

    // After the window, a new event.
    await sendMessage(s.url, a.token, { toUserId: b.id, content: 'four' });
    await eventually(() => messages().length === 3, 10_000);
    expect(messages()[2].body).toMatchObject({ count: 1, preview: 'four' });
  });

  it('should count in a coalesced event only the messages its recipient has not read since', async () => {
    const s = await serverFor(receiver, { WEBHOOK_COALESCE: '3' });
    const [a, b, c] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    await befriend(s.url, a, b);
    const group = await buildGroup(s.url, a, { members: [b, c] });
    const read = (u: typeof b) => ok(gql(s.url, 'mutation($c: ConversationInput!) { markRead(conversation: $c) { unreadCount } }', { c: { groupId: group.id } }, u.token));
    // b reads the first message over HTTP alone (no socket: still away), between two of one event.
    const first = await sendMessage(s.url, a.token, { groupId: group.id, content: 'first' });
    expect((await read(b)).markRead.unreadCount).toBe(0);
    const second = await sendMessage(s.url, a.token, { groupId: group.id, content: 'second' });
    await sendMessage(s.url, a.token, { toUserId: b.id, content: 'direct' });
    const messages = (u: typeof b) => receiver.of(u.id).filter((e) => e.body.kind === 'MESSAGE' && e.body.conversationId === `g:${group.id}`);
    await eventually(() => messages(b).length >= 1 && messages(c).length >= 1, 10_000);
    await sleep(QUIET_MS);
    // Its time is the first counted message's, not the one read (an outside probe: it was).
    expect(messages(b).map((e) => e.body)).toEqual([expect.objectContaining({ count: 1, preview: 'second', unreadTotal: 2, createdAt: second.createdAt })]);
    // c read neither: both counted, as before.
    expect(messages(c).map((e) => e.body)).toEqual([expect.objectContaining({ count: 2, preview: 'second', unreadTotal: 2, createdAt: first.createdAt })]);
  });

  it('should sign as documented, and the documented snippet should refuse a tampered body, another secret and an old time', async () => {
    const s = await serverFor(receiver);
    const [a, b] = [await signup(s.url), await signup(s.url)];
    await befriend(s.url, a, b);
    await sendMessage(s.url, a.token, { toUserId: b.id, content: 'pay me 10 euros' });
    const event = (await eventually(() => receiver.of(b.id).find((e) => e.body.kind === 'MESSAGE'), 8000))!;
    expect(event.raw).toContain('10 euros');
    const verify = documentedVerifier();

    const [, t, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(event.signature)!;
    expect(Math.abs(Number(t) - Date.now() / 1000)).toBeLessThan(30);
    expect(v1).toBe(createHmac('sha256', SECRET).update(`${t}.${event.raw}`).digest('hex'));
    expect(verify(SECRET, event.signature, event.raw)).toBe(true);
    expect(verify(SECRET, event.signature, event.raw.replace('10 euros', '99 euros'))).toBe(false);
    expect(verify('another-secret-of-16+', event.signature, event.raw)).toBe(false);
    expect(verify(SECRET, event.signature, event.raw, 300, Number(t) + 301)).toBe(false);
    expect(verify(SECRET, 'garbage', event.raw)).toBe(false);
    expect(verify(SECRET, `t=${t},v1=${'0'.repeat(64)}`, event.raw)).toBe(false);
  });

  it('should deliver every event, in order per recipient, once a receiver that was down is up again', async () => {
    receiver.answer(503);
    const s = await serverFor(receiver);
    const [a, b, c] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const group = await buildGroup(s.url, a, { members: [b, c] });
    const texts = ['m1', 'm2', 'm3', 'm4'];
    for (const text of texts) await sendMessage(s.url, a.token, { groupId: group.id, content: text });

    await eventually(() => receiver.refused >= 4, 10_000);
    await sleep(1500);
    receiver.answer(200);
    await eventually(() => receiver.of(b.id).length >= 4 && receiver.of(c.id).length >= 4, 20_000);
    for (const u of [b, c]) {
      const events = receiver.of(u.id).map((e) => e.body);
      // Each event once (its id), and in the order of its messages.
      expect(new Set(events.map((e) => e.id)).size).toBe(events.length);
      expect(events.map((e) => e.preview)).toEqual(texts);
    }
    expect(await metric(s, 'parley_webhook_events_retried_total')).toBeGreaterThanOrEqual(4);
    // Counted once the delivery is recorded, a moment after the receiver answered.
    await eventually(async () => (await metric(s, 'parley_webhook_events_delivered_total')) === 8, 3000);
    expect(await metric(s, 'parley_webhook_events_dropped_total')).toBe(0);
  });

  it('should not announce, once webhooks are on again, what was sent while an instance ran without them', async () => {
    const on = await serverFor(receiver);
    const [a, b] = [await signup(on.url), await signup(on.url)];
    const group = await buildGroup(on.url, a, { members: [b] });
    await on.dispose();
    // Off: a release without WEBHOOK_URL serves for a while, on the same database.
    const off = await createTestServer({}, { clean: false });
    await sendMessage(off.url, a.token, { groupId: group.id, content: 'while off' });
    await off.dispose();
    const again = await serverFor(receiver, {}, false);
    await sendMessage(again.url, a.token, { groupId: group.id, content: 'on again' });
    await eventually(() => receiver.of(b.id).length > 0, 8000);
    await sleep(QUIET_MS);
    expect(receiver.of(b.id).map((e) => [e.body.preview, e.body.count])).toEqual([['on again', 1]]);
  });

  it('should announce what a restart left unread when a process without webhooks merely started while the tail ran', async () => {
    const on = await serverFor(receiver);
    const [a, b] = [await signup(on.url), await signup(on.url)];
    const group = await buildGroup(on.url, a, { members: [b] });
    // A one-off process without WEBHOOK_URL on the same database, while the tail runs on.
    await (await createTestServer({}, { clean: false })).dispose();
    await sendMessage(on.url, a.token, { groupId: group.id, content: 'the tail passed the mark' });
    await eventually(() => receiver.of(b.id).length === 1, 8000);
    // Sent just before a restart: the tail had not read it yet.
    await sendMessage(on.url, a.token, { groupId: group.id, content: 'just before the restart' });
    await on.dispose();
    const again = await serverFor(receiver, {}, false);
    await eventually(() => receiver.of(b.id).length === 2, 8000);
    expect(receiver.of(b.id).map((e) => e.body.preview)).toEqual(['the tail passed the mark', 'just before the restart']);
    await again.dispose();
  });

  it("should send a WEBHOOK_URL's user and password as Basic authorization, and log why deliveries fail", async () => {
    receiver.answer(503);
    const url = new URL(receiver.url);
    [url.username, url.password] = ['parley', 'p@ss:word'];
    const s = await createTestServer({ WEBHOOK_URL: url.toString(), WEBHOOK_SECRET: SECRET, WEBHOOK_COALESCE: '0', PRESENCE_GRACE: '0.2' }, { jobs: true, captureLogs: true });
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const group = await buildGroup(s.url, a, { members: [b] });
    await sendMessage(s.url, a.token, { groupId: group.id, content: 'knock knock' });
    const failed = await eventually(() => s.logs.find((l) => l.json.msg === 'webhook: deliveries failed; retried later')?.json, 10_000);
    expect(failed).toMatchObject({ level: 'warn', reason: 'HTTP 503', failed: 1 });
    receiver.answer(200);
    const event = await eventually(() => receiver.of(b.id)[0], 10_000);
    expect(event.authorization).toBe(`Basic ${Buffer.from('parley:p@ss:word').toString('base64')}`);
    expect(event.body.preview).toBe('knock knock');
  });

  it('should drop and count an event the receiver has not taken by WEBHOOK_MAX_AGE', async () => {
    receiver.answer(500);
    const s = await serverFor(receiver, { WEBHOOK_MAX_AGE: '3' });
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const group = await buildGroup(s.url, a, { members: [b] });
    await sendMessage(s.url, a.token, { groupId: group.id, content: 'lost' });
    await eventually(async () => (await metric(s, 'parley_webhook_events_dropped_total')) === 1, 15_000, 200);
    receiver.answer(200);
    await sleep(QUIET_MS);
    expect(receiver.got).toEqual([]);
  });

  it("should send a recipient's events in the order they happened, a message just before a project's rename first", async () => {
    const s = await serverFor(receiver);
    const [al, bo] = [await signup(s.url), await signup(s.url)];
    const p = await buildProject(s.url, al, { participants: [bo] });
    await eventually(() => receiver.of(bo.id).length === 1, 10_000);
    for (let round = 0; round < 3; round++) {
      await sendMessage(s.url, al.token, { projectId: p.id, content: `before rename ${round}` });
      await ok(gql(s.url, 'mutation($p: ID!, $t: String!) { renameProject(projectId: $p, title: $t) { id } }', { p: p.id, t: `Renamed ${round}` }, al.token));
    }
    await eventually(() => receiver.of(bo.id).length === 7, 15_000);
    expect(receiver.of(bo.id).slice(1).map((e) => e.body.kind)).toEqual(['MESSAGE', 'PROJECT_ACTION', 'MESSAGE', 'PROJECT_ACTION', 'MESSAGE', 'PROJECT_ACTION']);
  });

  it('should not send an event its recipient muted, turned notifications off for, blocked the sender of, left the conversation of or read, after it was written, nor one of an invitation declined or a friend request withdrawn', async () => {
    // Coalescing keeps a written event pending for a while: the recipient changes their mind meanwhile.
    const s = await serverFor(receiver, { WEBHOOK_COALESCE: '3' });
    const [al, muting, quiet, barrier, blocking, leaving, declining, again, reading, withdrawn] = await Promise.all(Array.from({ length: 10 }, () => signup(s.url)));
    const group = await buildGroup(s.url, al, { members: [muting, quiet, barrier, leaving, reading] });
    await sendMessage(s.url, al.token, { groupId: group.id, content: 'soon muted' });
    // Written by the tail (PRESENCE_GRACE and a second after the message), not yet due.
    await eventually(async () => (await sql(s.env.DATABASE_URL!, "select count(*)::int as n from notification_outbox where state = 'PENDING'"))[0].n === 5, 5000);
    // Read over HTTP, with no socket: nothing is new to them any more.
    await ok(gql(s.url, 'mutation($c: ConversationInput!) { markRead(conversation: $c) { unreadCount } }', { c: { groupId: group.id } }, reading.token));
    await ok(gql(s.url, 'mutation($c: ConversationInput!) { muteConversation(conversation: $c) { id } }', { c: { groupId: group.id } }, muting.token));
    await ok(gql(s.url, SET_LEVEL, { level: 'NONE' }, quiet.token));
    // Who left is told nothing more.
    await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g: group.id }, leaving.token));
    // A friend request's event, written at once, and its sender blocked before it is due.
    await ok(gql(s.url, FRIEND_REQUEST, { id: blocking.id }, al.token));
    await ok(gql(s.url, 'mutation($u: ID!) { blockUser(userId: $u) }', { u: al.id }, blocking.token));
    // And one its sender withdraws before it is due.
    const asked = (await ok(gql(s.url, FRIEND_REQUEST, { id: withdrawn.id }, al.token))).sendFriendRequest.id;
    await ok(gql(s.url, 'mutation($r: ID!) { cancelFriendRequest(requestId: $r) }', { r: asked }, al.token));
    // An invitation's, declined before it is due.
    const secret = await buildGroup(s.url, al, { isPrivate: true });
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { inviteToGroup(groupId: $g, userId: $u) }', { g: secret.id, u: declining.id }, al.token));
    await ok(gql(s.url, 'mutation($g: ID!) { declineGroupInvite(groupId: $g) }', { g: secret.id }, declining.token));
    // Declined and invited again before the first is due: one event, the pending invitation's (not two).
    const INVITE = 'mutation($g: ID!, $u: ID!) { inviteToGroup(groupId: $g, userId: $u) }';
    await ok(gql(s.url, INVITE, { g: secret.id, u: again.id }, al.token));
    await ok(gql(s.url, 'mutation($g: ID!) { declineGroupInvite(groupId: $g) }', { g: secret.id }, again.token));
    await ok(gql(s.url, INVITE, { g: secret.id, u: again.id }, al.token));
    await eventually(() => receiver.of(barrier.id).length === 1, 10_000);
    await sleep(QUIET_MS);
    expect([muting, quiet, blocking, leaving, declining, reading, withdrawn].map((u) => receiver.of(u.id))).toEqual([[], [], [], [], [], [], []]);
    expect(receiver.of(again.id).map((e) => e.body.kind)).toEqual(['GROUP_INVITE']);
  });

  it('should not tell of a message sent while its conversation was muted, though the mute ended before the message was read for notifications', async () => {
    // Messages are read once their recipients' grace has passed: 2 s here, longer than the mute lasts.
    const s = await serverFor(receiver, { PRESENCE_GRACE: '2' });
    const [al, muting, barrier] = await Promise.all(Array.from({ length: 3 }, () => signup(s.url)));
    const group = await buildGroup(s.url, al, { members: [muting, barrier] });
    const MUTE = 'mutation($c: ConversationInput!, $u: DateTime) { muteConversation(conversation: $c, until: $u) { id } }';
    await ok(gql(s.url, MUTE, { c: { groupId: group.id }, u: new Date(Date.now() + 1000).toISOString() }, muting.token));
    await sendMessage(s.url, al.token, { groupId: group.id, content: 'while muted' });
    await eventually(() => receiver.of(barrier.id).length === 1, 10_000);
    // After the mute: told as ever.
    await sendMessage(s.url, al.token, { groupId: group.id, content: 'after the mute' });
    await eventually(() => receiver.of(barrier.id).length === 2, 10_000);
    await eventually(() => receiver.of(muting.id).length === 1, 10_000);
    await sleep(QUIET_MS);
    expect(receiver.of(muting.id).map((e) => e.body.preview)).toEqual(['after the mute']);
  });

  it("should leave a sender blocked after the event was written out of its count and preview, and still tell of the others' messages", async () => {
    const s = await serverFor(receiver, { WEBHOOK_COALESCE: '3' });
    const [a, b, x, y, z] = await Promise.all(Array.from({ length: 5 }, () => signup(s.url)));
    const group = await buildGroup(s.url, a, { members: [b, x, y, z] });
    await sendMessage(s.url, a.token, { groupId: group.id, content: 'from a' });
    await sendMessage(s.url, b.token, { groupId: group.id, content: 'from b' });
    // Both in one event for each of x, y and z (written, not yet due), then x blocks b (the newest's sender) and y blocks a.
    await eventually(async () => (await sql(s.env.DATABASE_URL!, "select count(*)::int as n from notification_outbox where state = 'PENDING' and count = 2"))[0].n === 3, 8000);
    await ok(gql(s.url, 'mutation($u: ID!) { blockUser(userId: $u) }', { u: b.id }, x.token));
    await ok(gql(s.url, 'mutation($u: ID!) { blockUser(userId: $u) }', { u: a.id }, y.token));
    await eventually(() => [x, y, z].every((u) => receiver.of(u.id).length === 1), 10_000);
    const [ofX, ofY, ofZ] = [x, y, z].map((u) => receiver.of(u.id)[0].body);
    expect(ofX).toMatchObject({ kind: 'MESSAGE', count: 1, preview: 'from a', sender: { id: a.id }, unreadTotal: 1 });
    expect(ofY).toMatchObject({ kind: 'MESSAGE', count: 1, preview: 'from b', sender: { id: b.id }, unreadTotal: 1 });
    expect(ofZ).toMatchObject({ kind: 'MESSAGE', count: 2, preview: 'from b', sender: { id: b.id }, unreadTotal: 2 });
  });

  it('should not retry an event to a recipient connected again since its first try failed', async () => {
    receiver.answer(500);
    const s = await serverFor(receiver);
    const [a, b, c] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const group = await buildGroup(s.url, a, { members: [b, c] });
    await sendMessage(s.url, a.token, { groupId: group.id, content: 'while the receiver fails' });
    await eventually(() => receiver.refused >= 2, 8000);
    const socket = wsClient(s.wsUrl, b.token);
    await socket.connected;
    receiver.answer(200);
    // c, still away, gets the retry; b, back, gets nothing.
    await eventually(() => receiver.of(c.id).length === 1, 10_000);
    await sleep(QUIET_MS);
    expect(receiver.of(b.id)).toEqual([]);
    expect((await sql(s.env.DATABASE_URL!, "select state from notification_outbox where recipient_id = $1", [b.id])).map((r: { state: string }) => r.state)).toEqual(['SKIPPED']);
    await socket.dispose();
  });

  it('should not send a project action to a member connected once their grace passed, though they left before it was due', async () => {
    // A grace of 1 s: the tail asks 2 s after the rename (two presence beats) and within a round; the
    // event is due 4 s after it, when a socket closed before 3 s no longer counts (an outside probe).
    const s = await serverFor(receiver, { PRESENCE_GRACE: '1' });
    const [al, bo] = [await signup(s.url), await signup(s.url)];
    const p = await buildProject(s.url, al, { participants: [bo] });
    await eventually(() => receiver.of(bo.id).length === 1, 10_000);
    const socket = wsClient(s.wsUrl, bo.token);
    await socket.connected;
    await ok(gql(s.url, 'mutation($p: ID!, $t: String!) { renameProject(projectId: $p, title: $t) { id } }', { p: p.id, t: 'Seen live' }, al.token));
    // Connected until the tail has decided, or 2.9 s at most.
    const rename = "select state, extract(epoch from clock_timestamp() - created_at)::float8 as age from notification_outbox where recipient_id = $1 and kind = 'PROJECT_ACTION' order by created_at desc limit 1";
    await eventually(async () => {
      const [row] = await sql(s.env.DATABASE_URL!, rename, [bo.id]);
      return row.state !== 'PENDING' || row.age >= 2.9;
    }, 5000);
    await socket.dispose();
    await sleep(QUIET_MS + 1500);
    expect(receiver.of(bo.id)).toHaveLength(1);
    expect((await sql(s.env.DATABASE_URL!, rename, [bo.id]))[0].state).toBe('SKIPPED');
    // Away by then: the next one goes.
    await ok(gql(s.url, 'mutation($p: ID!, $t: String!) { renameProject(projectId: $p, title: $t) { id } }', { p: p.id, t: 'Told later' }, al.token));
    await eventually(() => receiver.of(bo.id).length === 2, 10_000);
    expect(receiver.of(bo.id)[1].body.preview).toContain('Told later');
  });

  it('should honour setNotificationLevel ALL, MENTIONS and NONE', async () => {
    const s = await serverFor(receiver);
    const [a, all, mentions, none] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    expect((await ok(gql(s.url, ME, {}, all.token))).me.notificationLevel).toBe('ALL');
    expect((await ok(gql(s.url, SET_LEVEL, { level: 'MENTIONS' }, mentions.token))).setNotificationLevel).toEqual({ id: mentions.id, notificationLevel: 'MENTIONS' });
    expect((await ok(gql(s.url, SET_LEVEL, { level: 'NONE' }, none.token))).setNotificationLevel.notificationLevel).toBe('NONE');
    expect((await ok(gql(s.url, ME, {}, mentions.token))).me.notificationLevel).toBe('MENTIONS');

    const group = await buildGroup(s.url, a, { members: [all, mentions, none] });
    await sendMessage(s.url, a.token, { groupId: group.id, content: 'hello all' });
    await sendMessage(s.url, a.token, { groupId: group.id, content: `hey @${mentions.username}, @${none.username}: look` });
    // Addressed to them alone: a friend request and a project action pass MENTIONS too.
    await ok(gql(s.url, FRIEND_REQUEST, { id: mentions.id }, a.token));
    await ok(gql(s.url, FRIEND_REQUEST, { id: none.id }, a.token));
    await buildProject(s.url, a, { participants: [mentions, none] });

    await eventually(() => receiver.of(all.id).length >= 2 && receiver.of(mentions.id).length >= 4, 10_000);
    await sleep(QUIET_MS);
    expect(receiver.of(all.id).map((e) => [e.body.kind, e.body.preview])).toEqual([
      ['MESSAGE', 'hello all'],
      ['MESSAGE', `hey @${mentions.username}, @${none.username}: look`],
    ]);
    const toMentions = receiver.of(mentions.id).map((e) => e.body);
    // Project actions: added to the project, then `none` added after them.
    expect(toMentions.map((e) => e.kind).sort()).toEqual(['FRIEND_REQUEST', 'MENTION', 'PROJECT_ACTION', 'PROJECT_ACTION']);
    expect(toMentions.find((e) => e.kind === 'FRIEND_REQUEST')).toMatchObject({ conversationId: null, sender: { id: a.id }, count: 1 });
    expect(toMentions.find((e) => e.kind === 'PROJECT_ACTION')!.conversationId).toMatch(/^p:/);
    expect(receiver.of(none.id)).toEqual([]);
    // Every event delivered was counted as written to the outbox, the friend requests' and project actions' too.
    await eventually(async () => (await metric(s, 'parley_webhook_events_queued_total')) >= (await metric(s, 'parley_webhook_events_delivered_total')), 3000);

    // Back to ALL: the group's plain messages reach them again.
    await ok(gql(s.url, SET_LEVEL, { level: 'ALL' }, none.token));
    await sendMessage(s.url, a.token, { groupId: group.id, content: 'again' });
    await eventually(() => receiver.of(none.id).length === 1, 8000);
    expect(receiver.of(none.id)[0].body).toMatchObject({ kind: 'MESSAGE', preview: 'again' });
  });

  it('should coalesce a whole WEBHOOK_COALESCE window, its last message read after the grace too', async () => {
    // Before: the first event was due at the window's end, while a message near that end reached the tail only PRESENCE_GRACE + 1 s later.
    const s = await serverFor(receiver, { WEBHOOK_COALESCE: '2.5' });
    const [a, b] = [await signup(s.url), await signup(s.url)];
    await befriend(s.url, a, b);
    await sendMessage(s.url, a.token, { toUserId: b.id, content: 'first' });
    await sleep(2000);
    await sendMessage(s.url, a.token, { toUserId: b.id, content: 'within the window' });
    await eventually(() => receiver.of(b.id).some((e) => e.body.kind === 'MESSAGE'), 12_000);
    await sleep(QUIET_MS);
    expect(receiver.of(b.id).filter((e) => e.body.kind === 'MESSAGE').map((e) => [e.body.count, e.body.preview])).toEqual([[2, 'within the window']]);
  });

  it('should not send a reply\'s THREAD_REPLY to a follower who read the thread since it was written', async () => {
    const s = await serverFor(receiver, { WEBHOOK_COALESCE: '3' });
    const [owner, reading, barrier] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const group = await buildGroup(s.url, owner, { members: [reading, barrier] });
    const root = await sendMessage(s.url, owner.token, { groupId: group.id, content: 'root' });
    for (const u of [reading, barrier]) await sendMessage(s.url, u.token, { groupId: group.id, content: 'following', parentId: root.id });
    // Told of each other's replies (Reading of Barrier's, the last written), then nothing left to send.
    await eventually(() => receiver.of(reading.id).some((e) => e.body.kind === 'THREAD_REPLY'), 15_000);
    await eventually(async () => (await sql(s.env.DATABASE_URL!, "select count(*)::int as n from notification_outbox where state = 'PENDING'"))[0].n === 0, 10_000);
    receiver.got.length = 0;
    await sendMessage(s.url, owner.token, { groupId: group.id, content: 'a reply', parentId: root.id });
    // Written for both followers, not yet due; one reads the thread over HTTP.
    await eventually(async () => (await sql(s.env.DATABASE_URL!, "select count(*)::int as n from notification_outbox where state = 'PENDING' and kind = 'THREAD_REPLY'"))[0].n === 2, 8000);
    await ok(gql(s.url, 'mutation($m: ID!) { markThreadRead(messageId: $m) { id } }', { m: root.id }, reading.token));
    await eventually(() => receiver.of(barrier.id).length === 1, 10_000);
    await sleep(QUIET_MS);
    expect(receiver.of(barrier.id)[0].body).toMatchObject({ kind: 'THREAD_REPLY', preview: 'a reply' });
    expect(receiver.of(reading.id)).toEqual([]);
  });

  it('should notify no one who left, was removed or banned of replies in threads they followed', async () => {
    const s = await serverFor(receiver);
    const [owner, stays, leaves, removed, banned] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const group = await buildGroup(s.url, owner, { members: [stays, leaves, removed, banned], isPrivate: true });
    // Everyone but the owner away; the owner's socket keeps them from their own events.
    const root = await sendMessage(s.url, owner.token, { groupId: group.id, content: 'root' });
    for (const u of [stays, leaves, removed, banned]) await sendMessage(s.url, u.token, { groupId: group.id, content: 'following', parentId: root.id });
    await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g: group.id }, leaves.token));
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { removeGroupMember(groupId: $g, userId: $u) { id } }', { g: group.id, u: removed.id }, owner.token));
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { banFromGroup(groupId: $g, userId: $u) { id } }', { g: group.id, u: banned.id }, owner.token));
    // The others' replies reached Stays first (under a loaded run one came after a fixed wait, and was taken for the next).
    await eventually(() => receiver.of(stays.id).filter((e) => e.body.preview === 'following').length === 3, 15_000);
    await sleep(QUIET_MS);
    receiver.got.length = 0;
    await sendMessage(s.url, owner.token, { groupId: group.id, content: 'after they went', parentId: root.id });
    await eventually(() => receiver.of(stays.id).length === 1, 8000);
    await sleep(QUIET_MS);
    expect(receiver.of(stays.id)[0].body).toMatchObject({ kind: 'THREAD_REPLY', preview: 'after they went' });
    for (const u of [leaves, removed, banned]) expect(receiver.of(u.id)).toEqual([]);
  });

  it("should send a message's text as it stands when the event goes: edited (a mention taken back told as what it now is), and nothing for a deleted one or a deleted account", async () => {
    const s = await serverFor(receiver, { WEBHOOK_COALESCE: '4' });
    // Past befriend's FRIEND_REQUEST events.
    const told = (u: TestUser) => receiver.of(u.id).filter((e) => e.body.kind !== 'FRIEND_REQUEST');
    const [a, b, c, gone, member] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    for (const u of [b, c, gone]) await befriend(s.url, a, u);
    const group = await buildGroup(s.url, a, { members: [member] });
    // Two members named in a group's message, one at ALL, one at MENTIONS, then no longer named.
    // And one named in a reply kept in its thread (which the mention makes them follow).
    const [named, namedMentionsOnly, namedInThread] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    await ok(gql(s.url, SET_LEVEL, { level: 'MENTIONS' }, namedMentionsOnly.token));
    const kept = await buildGroup(s.url, a, { members: [named, namedMentionsOnly, namedInThread] });
    const root = await sendMessage(s.url, a.token, { groupId: kept.id, content: 'a thread' });
    const unnamed = await sendMessage(s.url, a.token, { groupId: kept.id, content: `@${named.username} @${namedMentionsOnly.username} look` });
    const unnamedReply = await sendMessage(s.url, a.token, { groupId: kept.id, parentId: root.id, content: `@${namedInThread.username} in here` });
    const EDIT = 'mutation($id: ID!, $c: String!) { editMessage(messageId: $id, content: $c) { id } }';
    const DELETE = 'mutation($id: ID!) { deleteMessage(messageId: $id) }';
    const edited = await sendMessage(s.url, a.token, { toUserId: b.id, content: 'before the edit' });
    const deleted = await sendMessage(s.url, a.token, { toUserId: c.id, content: 'SECRET, deleted' });
    await sendMessage(s.url, a.token, { toUserId: gone.id, content: 'to an account about to go' });
    await sendMessage(s.url, a.token, { groupId: group.id, content: 'SECRET, in a group about to go' });
    // Read by the tail (grace + 1 s, and a round), written to the outbox, not yet due (the window, 4 s, on top).
    // Waited for rather than slept on: a loaded CI run had written none of them after a fixed 2.5 s.
    const outboxed = async (kind: string, users: TestUser[]) =>
      (await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from notification_outbox where recipient_id = any($1) and kind = $2', [users.map((u) => u.id), kind]))[0].n;
    await eventually(async () => (await outboxed('MESSAGE', [b, c, gone, member])) === 4 && (await outboxed('MENTION', [named, namedMentionsOnly, namedInThread])) === 3, 8000, 50);
    expect(await outboxed('MESSAGE', [b, c, gone, member])).toBe(4);
    expect(await outboxed('MENTION', [named, namedMentionsOnly, namedInThread])).toBe(3);
    await ok(gql(s.url, EDIT, { id: edited.id, c: 'after the edit' }, a.token));
    await ok(gql(s.url, EDIT, { id: unnamed.id, c: 'look, nobody named' }, a.token));
    await ok(gql(s.url, EDIT, { id: unnamedReply.id, c: 'in here, nobody named' }, a.token));
    await ok(gql(s.url, DELETE, { id: deleted.id }, a.token));
    await ok(gql(s.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: gone.password }, gone.token));
    await ok(gql(s.url, 'mutation($g: ID!) { deleteGroup(groupId: $g) }', { g: group.id }, a.token));
    await eventually(() => told(b).length === 1 && told(named).length === 2 && told(namedInThread).length === 2, 10_000);
    await sleep(QUIET_MS);
    expect(told(b)[0].body).toMatchObject({ kind: 'MESSAGE', preview: 'after the edit' });
    // No longer a mention: a message to the conversation (after the thread's root, its own event),
    // or a reply to a thread they follow, for the level that takes those.
    expect(told(named).map((e) => [e.body.kind, e.body.preview])).toEqual([
      ['MESSAGE', 'a thread'],
      ['MESSAGE', 'look, nobody named'],
    ]);
    expect(told(namedMentionsOnly)).toEqual([]);
    // (The root and the message after it, both plain to them, in one event.)
    expect(told(namedInThread).map((e) => [e.body.kind, e.body.preview, e.body.count])).toEqual([
      ['MESSAGE', 'look, nobody named', 2],
      ['THREAD_REPLY', 'in here, nobody named', 1],
    ]);
    expect(told(c)).toEqual([]);
    expect(told(gone)).toEqual([]);
    expect(told(member)).toEqual([]);
    expect(receiver.got.some((e) => e.raw.includes('SECRET'))).toBe(false);
  });

  it('should count and preview only the messages that still name the recipient when an edit takes back one mention of several', async () => {
    const s = await serverFor(receiver, { WEBHOOK_COALESCE: '4' });
    const [a, r] = [await signup(s.url), await signup(s.url)];
    const group = await buildGroup(s.url, a, { members: [r] });
    // Muted: only mentions are told, so the plain text an edit leaves must not reach r's push.
    await ok(gql(s.url, 'mutation($c: ConversationInput!) { muteConversation(conversation: $c) { id } }', { c: { groupId: group.id } }, r.token));
    await sendMessage(s.url, a.token, { groupId: group.id, content: `@${r.username} first` });
    const second = await sendMessage(s.url, a.token, { groupId: group.id, content: `@${r.username} second, SECRET` });
    // Both in one event in the outbox, not yet due, then the second's mention taken back.
    const covered = async () =>
      (await sql(s.env.DATABASE_URL!, `select coalesce(max(cardinality(covered)), 0)::int as n from notification_outbox where recipient_id = $1 and kind = 'MENTION'`, [r.id]))[0].n;
    await eventually(async () => (await covered()) === 2, 8000, 50);
    await ok(gql(s.url, 'mutation($id: ID!, $c: String!) { editMessage(messageId: $id, content: $c) { id } }', { id: second.id, c: 'edited: SECRET, no one named' }, a.token));
    await eventually(() => receiver.of(r.id).length === 1, 10_000);
    await sleep(QUIET_MS);
    expect(receiver.of(r.id).map((e) => [e.body.kind, e.body.count, e.body.preview])).toEqual([['MENTION', 1, `@${r.username} first`]]);
    expect(receiver.got.some((e) => e.raw.includes('SECRET'))).toBe(false);
  });

  it('should tell of a mention in a direct conversation as MENTION, muted or not, and leave blocked senders out of unreadTotal', async () => {
    const s = await serverFor(receiver);
    const told = (u: TestUser) => receiver.of(u.id).filter((e) => e.body.kind !== 'FRIEND_REQUEST');
    const [a, b, blocked] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    await befriend(s.url, a, b);
    const group = await buildGroup(s.url, b, { members: [a, blocked] });
    await ok(gql(s.url, 'mutation($u: ID!) { blockUser(userId: $u) }', { u: blocked.id }, b.token));
    for (let i = 0; i < 3; i++) await sendMessage(s.url, blocked.token, { groupId: group.id, content: `unseen ${i}` });
    await sendMessage(s.url, a.token, { toUserId: b.id, content: `hey @${b.username}` });
    await eventually(() => told(b).length === 1, 8000);
    // One unread as b's sidebar counts it: the direct message, not the blocked user's three.
    expect(told(b)[0].body).toMatchObject({ kind: 'MENTION', conversationId: expect.stringMatching(/^d:/), unreadTotal: 1 });
    await ok(gql(s.url, 'mutation($c: ConversationInput!) { muteConversation(conversation: $c) { id } }', { c: { userId: a.id } }, b.token));
    await sendMessage(s.url, a.token, { toUserId: b.id, content: 'muted: no event' });
    await sendMessage(s.url, a.token, { toUserId: b.id, content: `muted, but @${b.username}` });
    await eventually(() => told(b).length === 2, 8000);
    await sleep(QUIET_MS);
    expect(told(b).map((e) => [e.body.kind, e.body.preview])).toEqual([
      ['MENTION', `hey @${b.username}`],
      ['MENTION', `muted, but @${b.username}`],
    ]);
  });

  it('should notify only the mentioned members of a group larger than LARGE_GROUP', async () => {
    const s = await serverFor(receiver);
    const [a, b, c] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const group = await buildGroup(s.url, a, { members: [b, c] });
    // A crowd joins (written directly: a thousand signups through argon2 would take minutes).
    await sql(
      s.env.DATABASE_URL!,
      `with u as (insert into users (id, username, password_hash, created_at)
                  select gen_random_uuid(), 'crowd_' || i, 'x', now() from generate_series(1, $2::int) i returning id)
       insert into group_members (id, group_id, user_id, joined_at) select gen_random_uuid(), $1, u.id, now() from u`,
      [group.id, LARGE_GROUP],
    );
    await sendMessage(s.url, a.token, { groupId: group.id, content: 'plain news for everyone' });
    await sendMessage(s.url, a.token, { groupId: group.id, content: `@${b.username} and @crowd_7, a word` });

    await eventually(() => receiver.got.length >= 2, 8000);
    await sleep(QUIET_MS);
    expect(receiver.got.map((e) => e.body.kind)).toEqual(['MENTION', 'MENTION']);
    expect(receiver.of(b.id)).toHaveLength(1);
    expect(receiver.of(c.id)).toEqual([]);
  });

  it('should refuse a bad level, an anonymous caller and reading another user’s level, changing nothing', async () => {
    const s = await serverFor(receiver);
    const [a, b] = [await signup(s.url), await signup(s.url)];
    await ok(gql(s.url, SET_LEVEL, { level: 'MENTIONS' }, a.token));
    const before = await snapshot(s.env.DATABASE_URL!);

    expect(codeOf(await gql(s.url, SET_LEVEL, { level: 'LOUD' }, a.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, SET_LEVEL, { level: null }, a.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, SET_LEVEL, {}, a.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, 'mutation { setNotificationLevel(level: "ALL") { id } }', {}, a.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, SET_LEVEL, { level: 'NONE' }))).toBe('UNAUTHENTICATED');
    expect(codeOf(await gql(s.url, 'query($id: ID!) { user(id: $id) { id notificationLevel } }', { id: a.id }, b.token))).toBe('FORBIDDEN');

    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    expect((await ok(gql(s.url, ME, {}, a.token))).me.notificationLevel).toBe('MENTIONS');
  });
});

describe('notification settings', () => {
  it('should default to no webhooks, 10 s coalescing and a 24 h maximum age', () => {
    const env = loadEnv({});
    expect([env.WEBHOOK_URL, env.WEBHOOK_SECRET, env.WEBHOOK_COALESCE, env.WEBHOOK_MAX_AGE]).toEqual([undefined, undefined, 10, 86400]);
    expect(loadEnv({ WEBHOOK_URL: 'https://push.example.com/parley', WEBHOOK_SECRET: SECRET, WEBHOOK_COALESCE: '0', WEBHOOK_MAX_AGE: '2h' })).toMatchObject({ WEBHOOK_COALESCE: 0, WEBHOOK_MAX_AGE: 7200 });
  });

  it('should try a failing event once more just before WEBHOOK_MAX_AGE, not drop it a backoff early', () => {
    // The 30th failure backs off 450-900 s: an event 10 s old of 20 is tried at 19 s, not dropped at 10.
    expect(retryDelay(10, 30, 20)).toBe(9);
    expect(retryDelay(19.5, 1, 20)).toBeNull();
    const first = retryDelay(2, 1, 86400)!;
    expect(first).toBeGreaterThanOrEqual(0.5);
    expect(first).toBeLessThanOrEqual(1);
  });

  it('should refuse a URL without a secret, a short secret, another scheme and bad durations', () => {
    expect(() => loadEnv({ WEBHOOK_URL: 'https://push.example.com/parley' })).toThrow(/WEBHOOK_SECRET must be set/);
    expect(() => loadEnv({ WEBHOOK_URL: 'https://push.example.com/parley', WEBHOOK_SECRET: 'short' })).toThrow(/WEBHOOK_SECRET must be at least 16/);
    for (const blank of [' '.repeat(16), '😀'.repeat(8), ` ${'x'.repeat(14)} `]) expect(() => loadEnv({ WEBHOOK_URL: 'https://push.example.com/parley', WEBHOOK_SECRET: blank })).toThrow(/WEBHOOK_SECRET must be at least 16/);
    expect(loadEnv({ WEBHOOK_URL: 'https://push.example.com/parley', WEBHOOK_SECRET: '😀'.repeat(16) }).WEBHOOK_SECRET).toBe('😀'.repeat(16));
    expect(() => loadEnv({ WEBHOOK_URL: 'ftp://push.example.com', WEBHOOK_SECRET: SECRET })).toThrow(/WEBHOOK_URL must use http: or https:/);
    expect(() => loadEnv({ WEBHOOK_URL: 'https://us%zzer:pw@push.example.com/parley', WEBHOOK_SECRET: SECRET })).toThrow(/WEBHOOK_URL has a user or password with a malformed %-escape/);
    expect(() => loadEnv({ WEBHOOK_COALESCE: 'soon' })).toThrow(/WEBHOOK_COALESCE/);
    expect(() => loadEnv({ WEBHOOK_MAX_AGE: '0' })).toThrow(/WEBHOOK_MAX_AGE/);
  });
});

describeRedis('notifications across instances', () => {
  it('should never send one event twice from two instances sharing the work', async () => {
    const first = await serverFor(receiver);
    const second = await serverFor(receiver, {}, false);
    const [a, b, c] = [await signup(first.url), await signup(first.url), await signup(second.url)];
    const group = await buildGroup(first.url, a, { members: [b, c] });
    const n = 30;
    for (let i = 0; i < n; i++) await sendMessage(i % 2 ? first.url : second.url, a.token, { groupId: group.id, content: `m${i}` });

    await eventually(() => receiver.got.length >= 2 * n, 20_000);
    await sleep(QUIET_MS);
    expect(receiver.got).toHaveLength(2 * n);
    expect(new Set(receiver.got.map((e) => e.body.id)).size).toBe(2 * n);
    for (const u of [b, c]) expect(receiver.of(u.id).map((e) => e.body.preview)).toEqual(Array.from({ length: n }, (_, i) => `m${i}`));
    const delivered = (await metric(first, 'parley_webhook_events_delivered_total')) + (await metric(second, 'parley_webhook_events_delivered_total'));
    expect(delivered).toBe(2 * n);
  });

  it("should give back, as it stops, an event whose receiver is still answering, for another instance at once", async () => {
    const first = await serverFor(receiver);
    const [a, b] = [await signup(first.url), await signup(first.url)];
    const group = await buildGroup(first.url, a, { members: [b] });
    // A receiver slower than the 3 s a stop waits for deliveries, within the 5 s a delivery has.
    receiver.delay(4500);
    await sendMessage(first.url, a.token, { groupId: group.id, content: 'during the deploy' });
    await eventually(() => receiver.inflight === 1, 10_000);
    await first.dispose();
    receiver.delay(0);
    const second = await serverFor(receiver, {}, false);
    // The first instance's try was cut short as it stopped (a process that exits takes its request
    // with it), and the event went again from the second, not after the first's 30 s lease.
    await eventually(() => receiver.of(b.id).length === 1, 8000);
    expect([receiver.abandoned, receiver.of(b.id)[0].body.preview]).toEqual([1, 'during the deploy']);
    await second.dispose();
  });

  it('should not notify a user whose only socket is on another instance', async () => {
    const first = await serverFor(receiver);
    const second = await serverFor(receiver, {}, false);
    const [a, b, c] = [await signup(first.url), await signup(first.url), await signup(first.url)];
    const group = await buildGroup(first.url, a, { members: [b, c] });
    const socket = wsClient(second.wsUrl, b.token);
    await socket.connected;
    await sendMessage(first.url, a.token, { groupId: group.id, content: 'hi' });
    await eventually(() => receiver.of(c.id).length === 1, 8000);
    await sleep(QUIET_MS);
    expect(receiver.of(b.id)).toEqual([]);
    await socket.dispose();
  });

  it("should not notify a member whose socket a stopping instance closed, within their grace, of a message they had seen live", async () => {
    // A grace longer than an instance's beat counts (4 s): the stop's list must count for all of it.
    const first = await serverFor(receiver, { PRESENCE_GRACE: '8' });
    const second = await serverFor(receiver, { PRESENCE_GRACE: '8' }, false);
    const [a, b, c] = [await signup(first.url), await signup(first.url), await signup(first.url)];
    const group = await buildGroup(first.url, a, { members: [b, c] });
    const socket = wsClient(second.wsUrl, b.token);
    await socket.connected;
    await sendMessage(first.url, a.token, { groupId: group.id, content: 'seen live' });
    // A deploy stops b's instance (1001) after the message, before the tail reads it (PRESENCE_GRACE
    // + 1 s after it): b's grace runs from the stop, as after any close, and covers that read.
    await sleep(3500);
    await second.dispose();
    await eventually(() => receiver.of(c.id).length === 1, 15_000);
    await sleep(QUIET_MS);
    // Before, the stop listed b's instance as holding no one at once, then for its last beat's 4 s: b was told of it.
    expect(receiver.of(b.id)).toEqual([]);
    await socket.dispose();
  });
});

describe('the documented receiver (docs/TOUR.md)', () => {
  it('should verify, forward each event once to the push service, and refuse a forged one', async () => {
    // The push service the example forwards to.
    const pushes: any[] = [];
    const push = createServer((req, res) => {
      let raw = '';
      req.on('data', (c) => (raw += c));
      req.on('end', () => {
        pushes.push(JSON.parse(raw));
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => push.listen(0, '127.0.0.1', () => r()));
    const dir = mkdtempSync(join(tmpdir(), 'parley-receiver-'));
    writeFileSync(join(dir, 'receiver.mjs'), documentedReceiverSource());
    const port = await sparePorts();
    const child = spawn(process.execPath, [join(dir, 'receiver.mjs')], {
      env: { ...process.env, WEBHOOK_SECRET: SECRET, PUSH_URL: `http://127.0.0.1:${(push.address() as AddressInfo).port}/push`, PORT: String(port) },
      stdio: 'ignore',
    });
    try {
      const url = `http://127.0.0.1:${port}/`;
      await eventually(() => fetch(url, { method: 'POST', body: '{}' }).then((r) => r.status === 401), 10_000, 100);
      const s = await createTestServer({ WEBHOOK_URL: url, WEBHOOK_SECRET: SECRET, WEBHOOK_COALESCE: '0', PRESENCE_GRACE: '0.2' }, { jobs: true });
      const [a, b] = [await signup(s.url, { displayName: 'Ada' }), await signup(s.url)];
      const group = await buildGroup(s.url, a, { members: [b] });
      await sendMessage(s.url, a.token, { groupId: group.id, content: 'see you at 8' });
      await eventually(() => pushes.length === 1, 8000);
      expect(pushes[0]).toEqual({ to: b.id, title: 'Ada', body: 'see you at 8', badge: 1, thread: `g:${group.id}` });

      // Forged: signed with another key, or a body changed after signing.
      const body = JSON.stringify({ id: 'x', kind: 'MESSAGE', recipientId: b.id, count: 1, preview: 'forged' });
      const t = Math.floor(Date.now() / 1000);
      const forged = `t=${t},v1=${createHmac('sha256', 'not-the-secret-at-all').update(`${t}.${body}`).digest('hex')}`;
      expect((await fetch(url, { method: 'POST', body, headers: { 'parley-signature': forged } })).status).toBe(401);
      const genuine = `t=${t},v1=${createHmac('sha256', SECRET).update(`${t}.${body}`).digest('hex')}`;
      expect((await fetch(url, { method: 'POST', body: body.replace('forged', 'tampered'), headers: { 'parley-signature': genuine } })).status).toBe(401);
      // The same event twice (an at-least-once repeat): forwarded once.
      expect((await fetch(url, { method: 'POST', body, headers: { 'parley-signature': genuine } })).status).toBe(204);
      expect((await fetch(url, { method: 'POST', body, headers: { 'parley-signature': genuine } })).status).toBe(204);
      expect(pushes.map((p) => p.body)).toEqual(['see you at 8', 'forged']);
      // A body that arrives in two pieces split inside a character (ü is two bytes) still verifies.
      const umlaut = Buffer.from(JSON.stringify({ id: 'y', kind: 'MESSAGE', recipientId: b.id, count: 1, preview: 'grüße' }));
      const signed = `t=${t},v1=${createHmac('sha256', SECRET).update(`${t}.`).update(umlaut).digest('hex')}`;
      const cut = umlaut.indexOf(Buffer.from('ü')) + 1;
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(url, { method: 'POST', headers: { 'parley-signature': signed, 'content-length': umlaut.length } }, (res) => resolve(res.statusCode!));
        req.on('error', reject);
        req.setNoDelay(true);
        req.write(umlaut.subarray(0, cut));
        setTimeout(() => req.end(umlaut.subarray(cut)), 100);
      });
      expect(status).toBe(204);
      expect(pushes.map((p) => p.body)).toEqual(['see you at 8', 'forged', 'grüße']);
    } finally {
      child.kill();
      await new Promise((r) => push.close(r));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
