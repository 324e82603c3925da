import { codeOf, gql, ok } from './helpers/graphql';
import { createTestServer, hasRedis, type TestServer } from './helpers/server';
import { groupWith, lobbyOf, sendMessage, signup, type TestUser } from './helpers/factories';
import { snapshot } from './helpers/db';

const SLOW = 'mutation($g: ID!, $s: Int!) { setSlowMode(groupId: $g, seconds: $s) { id } }';
const SEND = 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { id parentId } }';

/**
 * Slow mode lives in the gate of the statement that writes a group message. Every kind of group
 * send must pass it: a plain one, a reply kept in its thread, a reply also in the conversation, and
 * one whose @here or @all needs the group's members first (these last ones are checked before
 * their statement runs, and once skipped the gate).
 */
describe('slow mode', () => {
  let s: TestServer;
  let owner: TestUser;
  let member: TestUser;
  let group: string;
  let root: string;

  // One server and one interval for the whole suite: no refused send spends the member's slot.
  beforeAll(async () => {
    s = await createTestServer({}, { suite: true });
    [owner, member] = await Promise.all([signup(s.url), signup(s.url)]);
    group = await groupWith(s.url, owner, 'Slow lane', [member]);
    root = (await sendMessage(s.url, owner.token, { groupId: group, content: 'the root' })).id;
    await ok(gql(s.url, SLOW, { g: group, s: 60 }, owner.token));
    // The member's one message of this interval.
    await ok(gql(s.url, SEND, { input: { groupId: group, content: 'first' } }, member.token));
  });
  afterAll(() => s?.dispose());

  const kinds: [string, () => Record<string, unknown>][] = [
    ['a plain message', () => ({ groupId: group, content: 'plain' })],
    ['a reply kept in its thread', () => ({ groupId: group, content: 'reply', parentId: root })],
    ['a reply also in the conversation', () => ({ groupId: group, content: 'also', parentId: root, alsoInConversation: true })],
    ['a message to @here', () => ({ groupId: group, content: 'hello @here' })],
    ['a message naming a member', () => ({ groupId: group, content: `hi @${owner.username}` })],
  ];

  it.each(kinds)('should refuse %s from a member who sent this interval, writing nothing', async (_name, input) => {
    const before = await snapshot(s.env.DATABASE_URL!);
    const r = await gql(s.url, SEND, { input: input() }, member.token);
    expect(codeOf(r)).toBe('RATE_LIMITED');
    expect(r.errors![0].message).toMatch(/^Slow mode: one message every 60 s here/);
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
  });

  it('should keep the owner exempt for every kind of send', async () => {
    for (const [, input] of kinds) await ok(gql(s.url, SEND, { input: input() }, owner.token));
  });
});

describe('slow mode and refused replies', () => {
  it("should not start a member's interval with a reply refused for its parent (another group's, deleted)", async () => {
    const s = await createTestServer();
    const [owner, member, other] = await Promise.all([signup(s.url), signup(s.url), signup(s.url)]);
    const group = await groupWith(s.url, owner, 'Slow lane', [member, other]);
    const elsewhere = (await sendMessage(s.url, owner.token, { groupId: await groupWith(s.url, owner, 'Other', [member]), content: 'elsewhere' })).id;
    const gone = (await sendMessage(s.url, owner.token, { groupId: group, content: 'gone' })).id;
    await ok(gql(s.url, 'mutation($id: ID!) { deleteMessage(messageId: $id) }', { id: gone }, owner.token));
    await ok(gql(s.url, SLOW, { g: group, s: 60 }, owner.token));
    // Another member's send first: this instance then knows the group is in slow mode, and gates the reply's statement with its stamp.
    await ok(gql(s.url, SEND, { input: { groupId: group, content: 'hi' } }, other.token));
    for (const parentId of [elsewhere, gone]) {
      const before = await snapshot(s.env.DATABASE_URL!);
      expect(codeOf(await gql(s.url, SEND, { input: { groupId: group, content: 'reply', parentId } }, member.token))).toBe('BAD_USER_INPUT');
      expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    }
    // The interval starts with the member's first accepted message.
    await ok(gql(s.url, SEND, { input: { groupId: group, content: 'plain' } }, member.token));
    expect(codeOf(await gql(s.url, SEND, { input: { groupId: group, content: 'again' } }, member.token))).toBe('RATE_LIMITED');
  });
});

describe('slow mode and a lost exemption', () => {
  it("should count an admin made MEMBER's interval from their last message, sent while they were exempt; slow mode begins with none counted", async () => {
    const s = await createTestServer();
    const [owner, member, admin] = await Promise.all([signup(s.url), signup(s.url), signup(s.url)]);
    const group = await groupWith(s.url, owner, 'Slowing down', [member, admin]);
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { setGroupRole(groupId: $g, userId: $u, role: ADMIN) { id } }', { g: group, u: admin.id }, owner.token));
    const send = (u: TestUser, content: string) => gql(s.url, SEND, { input: { groupId: group, content } }, u.token);
    await ok(send(member, 'just before'));
    await ok(gql(s.url, SLOW, { g: group, s: 60 }, owner.token));
    // Slow mode begins afresh: one message, then the interval.
    await ok(send(member, 'first under slow mode'));
    expect(codeOf(await send(member, 'second'))).toBe('RATE_LIMITED');
    // An admin is exempt; made a plain member, their interval runs from their last message.
    await ok(send(admin, 'as admin'));
    await ok(send(admin, 'as admin again'));
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { setGroupRole(groupId: $g, userId: $u, role: MEMBER) { id } }', { g: group, u: admin.id }, owner.token));
    expect(codeOf(await send(admin, 'as member'))).toBe('RATE_LIMITED');
    // Off, then on again: it begins afresh for everyone.
    await ok(gql(s.url, SLOW, { g: group, s: 0 }, owner.token));
    await ok(gql(s.url, SLOW, { g: group, s: 60 }, owner.token));
    await ok(send(member, 'a new spell'));
    await ok(send(admin, 'a new spell'));
    expect(codeOf(await send(member, 'too soon'))).toBe('RATE_LIMITED');
  });
});

describe('slow mode and messages from before it', () => {
  it('should not hold a member who came back, was added back or demoted to a message sent before slow mode began; a lobby admin who renamed away to one sent under it', async () => {
    const s = await createTestServer({ LOBBY_ADMINS: `boss_${process.pid}` });
    const [owner, leaver, readded, admin] = await Promise.all([signup(s.url), signup(s.url), signup(s.url), signup(s.url)]);
    const group = await groupWith(s.url, owner, 'Before the spell', [leaver, readded, admin]);
    const member = (u: TestUser, role: string) => gql(s.url, 'mutation($g: ID!, $u: ID!, $r: GroupRole!) { setGroupRole(groupId: $g, userId: $u, role: $r) { id } }', { g: group, u: u.id, r: role }, owner.token);
    await ok(member(admin, 'ADMIN'));
    const send = (u: TestUser, content: string, groupId = group) => gql(s.url, SEND, { input: { groupId, content } }, u.token);
    for (const u of [leaver, readded, admin]) await ok(send(u, 'before slow mode'));
    await ok(gql(s.url, SLOW, { g: group, s: 60 }, owner.token));
    // Each one's membership made again, or their role changed, after slow mode began (an outside probe: all three refused).
    await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g: group }, leaver.token));
    await ok(gql(s.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g: group }, leaver.token));
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { removeGroupMember(groupId: $g, userId: $u) { id } }', { g: group, u: readded.id }, owner.token));
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }', { g: group, u: readded.id }, owner.token));
    await ok(member(admin, 'MEMBER'));
    for (const u of [leaver, readded, admin]) {
      await ok(send(u, 'first under slow mode'));
      expect(codeOf(await send(u, 'second'))).toBe('RATE_LIMITED');
    }
    // A message under it still counts after leaving and coming back.
    await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g: group }, leaver.token));
    await ok(gql(s.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g: group }, leaver.token));
    expect(codeOf(await send(leaver, 'again'))).toBe('RATE_LIMITED');
    // A lobby admin by LOBBY_ADMINS who renames away is a plain member at once, under their last message.
    const boss = await signup(s.url, { username: `boss_${process.pid}` });
    const lobby = await lobbyOf(s.url, boss.token);
    await ok(gql(s.url, SLOW, { g: lobby, s: 120 }, boss.token));
    await ok(send(boss, 'as the lobby admin', lobby));
    await ok(gql(s.url, 'mutation($u: String!) { updateProfile(username: $u) { id } }', { u: `exboss_${process.pid}` }, boss.token));
    expect(codeOf(await send(boss, 'as a member', lobby))).toBe('RATE_LIMITED');
    await s.dispose();
  });
});

describe('slow mode and copies of one send', () => {
  it('should answer every copy of a send (one clientMessageId) sent at once with the one message stored, on any instance', async () => {
    const a = await createTestServer();
    // A second instance over the same Redis when there is one: the copies race in two processes' statements too.
    const b = hasRedis ? await createTestServer({}, { clean: false }) : a;
    const [owner, member] = await Promise.all([signup(a.url), signup(a.url)]);
    for (let round = 0; round < 5; round++) {
      const group = await groupWith(a.url, owner, `Slow copies ${round}`, [member]);
      await ok(gql(a.url, SLOW, { g: group, s: 60 }, owner.token));
      const input = { groupId: group, content: 'the one', clientMessageId: `copy-${round}` };
      const answers = await Promise.all([a, b, a, b].map((s) => gql(s.url, SEND, { input }, member.token)));
      // The first send of the member's interval, sent four times: the copies after the first are
      // its retries, each answered with the message stored, not refused as a second message.
      const ids = answers.map((r) => r.data?.sendMessage?.id ?? codeOf(r));
      expect(new Set(ids).size).toBe(1);
      expect(ids[0]).toMatch(/^[0-9a-f-]{36}$/);
      const history = await ok(gql(a.url, 'query($g: ID!) { history(conversation: { groupId: $g }, last: 10) { edges { node { id } } } }', { g: group }, owner.token));
      expect(history.history.edges.map((e: any) => e.node.id)).toEqual([ids[0]]);
      // A new message within the interval is still refused.
      expect(codeOf(await gql(b.url, SEND, { input: { groupId: group, content: 'a second one', clientMessageId: `next-${round}` } }, member.token))).toBe('RATE_LIMITED');
    }
  });
});
