import { codeOf, eventually, gql, ok, subscribe, wsClient } from './helpers/graphql';
import { lobbyOf, signup, attempt, buildGroup } from './helpers/factories';
import { LoginDocument } from '../generated/client/graphql';
import { createTestServer } from './helpers/server';


describe('client address behind a proxy', () => {
  it('should key limits on the address the proxy appended, not on one the client wrote into X-Forwarded-For', async () => {
    const s = await createTestServer({ TRUST_PROXY: 'true', LOGIN_MAX_FAILURES_PER_USER_IP: '3' });
    const u = await signup(s.url);
    // A proxy appends the address it saw: the client controls every entry before it.
    const codes: (string | undefined)[] = [];
    for (let i = 0; i < 5; i++) {
      const headers = { 'x-forwarded-for': `10.0.0.${i}, 203.0.113.9` };
      codes.push(codeOf(await attempt(s.url, LoginDocument, { username: u.username, password: `guess-number-${i}` }, undefined, headers)));
    }
    expect(codes).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'RATE_LIMITED', 'RATE_LIMITED']);
    // The owner, seen by the proxy at another address, still gets in whatever the header claims before it.
    const owner = await attempt(s.url, LoginDocument, { username: u.username, password: u.password }, undefined, { 'x-forwarded-for': '203.0.113.9, 198.51.100.7' });
    expect(owner.errors).toBeUndefined();
  });
});

describe('an account limited from everywhere', () => {
  it('should still let the owner in from an address they signed in from before, and hold back new addresses', async () => {
    const s = await createTestServer({ TRUST_PROXY: 'true', LOGIN_MAX_FAILURES_PER_USER: '3' });
    const u = await signup(s.url);
    const login = (address: string, password: string) => attempt(s.url, LoginDocument, { username: u.username, password }, undefined, { 'x-forwarded-for': address });
    expect((await login('198.51.100.7', u.password)).errors).toBeUndefined();
    // Strangers at four addresses use up the account-wide allowance of three.
    const codes = [];
    for (let i = 1; i <= 4; i++) codes.push(codeOf(await login(`203.0.113.${i}`, `guess-number-${i}`)));
    expect(codes).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'RATE_LIMITED']);
    // The owner's own address still gets in (a typo there counts, and is told as wrong, not limited).
    expect(codeOf(await login('198.51.100.7', 'my-own-typo'))).toBe('UNAUTHENTICATED');
    expect((await login('198.51.100.7', u.password)).errors).toBeUndefined();
    // A new address, the owner's or not, waits for the window.
    expect(codeOf(await login('198.51.100.8', u.password))).toBe('RATE_LIMITED');
  });
});

describe('client addresses as limits count them', () => {
  it("should count an IPv6 client by its /64 (one host's prefix), an IPv4-mapped one by its IPv4 address", async () => {
    const s = await createTestServer({ TRUST_PROXY: 'true', LOGIN_MAX_FAILURES_PER_USER_IP: '3' });
    const u = await signup(s.url);
    const from = async (address: string, i: number) =>
      codeOf(await attempt(s.url, LoginDocument, { username: u.username, password: `guess-number-${i}` }, undefined, { 'x-forwarded-for': address }));
    // Five addresses of one /64, written in every form: one allowance of three between them.
    const same = ['2001:db8:5:6::1', '2001:db8:5:6:ffff::2', '2001:0db8:0005:0006:0:0:0:3', '[2001:db8:5:6::4]', '2001:db8:5:6:1:2:3:4'];
    const codes = [];
    for (const [i, a] of same.entries()) codes.push(await from(a, i));
    expect(codes).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'RATE_LIMITED', 'RATE_LIMITED']);
    // The next /64 is another client.
    expect(await from('2001:db8:5:7::1', 9)).toBe('UNAUTHENTICATED');
    // An IPv4 client is the same whether or not the proxy wrote it IPv4-mapped.
    const v4 = [];
    for (const [i, a] of ['203.0.113.5', '::ffff:203.0.113.5', '203.0.113.5', '::FFFF:203.0.113.5'].entries()) v4.push(await from(a, 20 + i));
    expect(v4).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'RATE_LIMITED']);
  });
});

describe('attachment bytes in subscriptions', () => {
  it("should carry a small file's base64 to a subscription, refuse a large one's and cap a viewer's many shapes, the message's other fields arriving", async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const lobby = await lobbyOf(s.url, a.token);
    const w = wsClient(s.wsUrl, a.token);
    // Six distinct documents asking for the bytes: one user's shapes, each executed per event.
    const shapes = Array.from({ length: 6 }, (_, i) =>
      subscribe<any>(w, `subscription Shape${i}($c: ConversationInput) { messageAdded(conversation: $c) { id content attachment { id fileName url base64 } } }`, { c: { groupId: lobby } }),
    );
    const send = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }';
    // The subscriptions are live once a plain message reaches them.
    await eventually(async () => {
      await ok(gql(s.url, send, { i: { groupId: lobby, content: 'ready?' } }, a.token));
      return shapes.every((sub) => sub.values.length > 0);
    });
    const small = (await ok(gql(s.url, send, { i: { groupId: lobby, content: 'file', attachment: { fileName: 'plan.txt', base64: Buffer.from('the plan').toString('base64') } } }, a.token))).sendMessage;
    const got = (await eventually(() => {
      const each = shapes.map((sub) => sub.values.find((v) => v.messageAdded.id === small.id));
      return each.every(Boolean) ? each : undefined;
    })) as any[];
    const carried = got.filter((v) => v.messageAdded.attachment !== null);
    expect(carried).toHaveLength(4);
    for (const v of carried) expect(Buffer.from(v.messageAdded.attachment.base64, 'base64').toString()).toBe('the plan');
    expect(got.filter((v) => v.messageAdded.attachment === null).map((v) => v.messageAdded.content)).toEqual(['file', 'file']);
    expect(shapes.flatMap((sub) => sub.errors.map((e: any) => e.extensions?.code))).toEqual(['PAYLOAD_TOO_LARGE', 'PAYLOAD_TOO_LARGE']);

    // Past 256 KiB the bytes stay one query away: no subscription carries them.
    const big = Buffer.alloc(256 * 1024 + 1, 'x');
    const large = (await ok(gql(s.url, send, { i: { groupId: lobby, content: 'big', attachment: { fileName: 'big.txt', base64: big.toString('base64') } } }, a.token))).sendMessage;
    const bigGot = await eventually(() => shapes[0].values.find((v) => v.messageAdded.id === large.id));
    expect(bigGot.messageAdded).toMatchObject({ content: 'big', attachment: null });
    expect((shapes[0].errors.at(-1) as any)?.extensions?.code).toBe('PAYLOAD_TOO_LARGE');
    const h = await ok(gql(s.url, 'query($c: ConversationInput!) { history(conversation: $c, last: 2) { edges { node { attachment { base64 } } } } }', { c: { groupId: lobby } }, a.token));
    expect(h.history.edges.map((e: any) => Buffer.from(e.node.attachment.base64, 'base64').length)).toEqual([8, big.length]);
  });
});

describe('ill-formed text', () => {
  it('should refuse a lone surrogate in names and messages, which PostgreSQL would store as U+FFFD while the answer and the event carried it', async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const lobby = await lobbyOf(s.url, a.token);
    const lone = 'ab\uD800cd';
    const send = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }';
    const attempts = [
      gql(s.url, 'mutation($d: String) { updateProfile(displayName: $d) { displayName } }', { d: lone }, a.token),
      gql(s.url, 'mutation($n: String!) { createGroup(name: $n) { id } }', { n: lone }, a.token),
      gql(s.url, 'mutation($t: String!) { createProject(title: $t) { id } }', { t: lone }, a.token),
      gql(s.url, send, { i: { groupId: lobby, content: lone } }, a.token),
      gql(s.url, send, { i: { groupId: lobby, content: 'ok', clientMessageId: lone } }, a.token),
      gql(s.url, send, { i: { groupId: lobby, attachment: { fileName: 'a\uDC00b.txt', base64: Buffer.from('x').toString('base64') } } }, a.token),
    ];
    expect((await Promise.all(attempts)).map(codeOf)).toEqual(Array(6).fill('BAD_USER_INPUT'));
    // Nothing changed; a well-formed pair (an emoji) is still text.
    expect((await ok(gql(s.url, '{ me { displayName } }', {}, a.token))).me.displayName).toBeNull();
    const h = await ok(gql(s.url, 'query($c: ConversationInput!) { history(conversation: $c) { totalCount } }', { c: { groupId: lobby } }, a.token));
    expect(h.history.totalCount).toBe(0);
    await ok(gql(s.url, 'mutation($n: String!) { createGroup(name: $n) { id } }', { n: 'ab\uD83D\uDE00cd' }, a.token));
  });
});

describe('group membership churn', () => {
  it('should rate-limit joinGroup and leaveGroup per user: each announces to every member of the group', async () => {
    const s = await createTestServer({ RATE_LIMIT_GROUP_MEMBERSHIP: '4/1h' });
    const owner = await signup(s.url);
    const churner = await signup(s.url);
    const g = (await buildGroup(s.url, owner, { name: 'quiet room' })).id;
    const join = () => gql(s.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g }, churner.token);
    const leave = () => gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g }, churner.token);
    const codes = [];
    for (const op of [join, leave, join, leave, join]) codes.push(codeOf(await op()));
    expect(codes).toEqual([undefined, undefined, undefined, undefined, 'RATE_LIMITED']);
    // The refused join changed nothing: the owner is still the only member.
    const members = await ok(gql(s.url, 'query($g: ID!) { group(id: $g) { memberCount } }', { g }, owner.token));
    expect(members.group.memberCount).toBe(1);
  });
});
