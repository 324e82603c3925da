import { codeOf, eventually, gql, ok, subscribe, wsClient } from './helpers/graphql';
import { lobbyOf, signup, attempt, buildGroup, buildUser } from './helpers/factories';
import { LoginDocument, SignupDocument } from '../generated/client/graphql';
import { createTestServer } from './helpers/server';
import { limitAddress } from '../src/core/http';


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
  it.each([
    ['with Redis', {}],
    ['in memory (no Redis)', { REDIS_URL: '' }],
  ])('should still let the owner in from an address they signed in from before, and hold back new addresses (%s)', async (_mode, redis) => {
    const s = await createTestServer({ TRUST_PROXY: 'true', LOGIN_MAX_FAILURES_PER_USER: '3', ...redis });
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

describe('the address an account signed up from', () => {
  it("should count as the owner's: past the account-wide limit it still gets in", async () => {
    const s = await createTestServer({ TRUST_PROXY: 'true', LOGIN_MAX_FAILURES_PER_USER: '3' });
    const owner = buildUser();
    expect((await attempt(s.url, SignupDocument, owner, undefined, { 'x-forwarded-for': '198.51.100.20' })).errors).toBeUndefined();
    const login = (address: string, password: string) => attempt(s.url, LoginDocument, { username: owner.username, password }, undefined, { 'x-forwarded-for': address });
    const codes = [];
    for (let i = 1; i <= 4; i++) codes.push(codeOf(await login(`203.0.113.${40 + i}`, `guess-number-${i}`)));
    expect(codes).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'RATE_LIMITED']);
    expect((await login('198.51.100.20', owner.password)).errors).toBeUndefined();
  });
});

describe('client addresses as limits count them', () => {
  it('should read every spelling of an address as the client limits count', () => {
    const cases: [string, string][] = [
      ['203.0.113.5', '203.0.113.5'],
      ['203.0.113.5:4711', '203.0.113.5'],
      ['::ffff:203.0.113.5', '203.0.113.5'],
      ['0:0:0:0:0:FFFF:203.0.113.5', '203.0.113.5'],
      ['::ffff:cb00:7105', '203.0.113.5'],
      ['::ffff:0:203.0.113.5', '203.0.113.5'],
      ['64:ff9b::203.0.113.5', '203.0.113.5'],
      ['::203.0.113.5', '203.0.113.5'],
      ['::ffff:203.0.113.5%eth0', '203.0.113.5'],
      ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
      ['2001:DB8:0001:0002::', '2001:db8:1:2::/64'],
      ['2001:db8::5:6:7:1.2.3.4', '2001:db8:0:5::/64'],
      ['2001:db8:0:5:6:7:1.2.3.4', '2001:db8:0:5::/64'],
      ['[2001:db8:1:2::9]', '2001:db8:1:2::/64'],
      ['[2001:db8:1:2::9]:443', '2001:db8:1:2::/64'],
      ['fe80::1%eth0', 'fe80:0:0:0::/64'],
      ['::1', '0:0:0:0::/64'],
      ['unknown', 'unknown'],
    ];
    expect(cases.map(([a]) => [a, limitAddress(a)])).toEqual(cases);
  });

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
  it("should carry a small file's base64 to a subscription, refuse a large one's, and hold a user to four such subscriptions at once", async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const b = await signup(s.url);
    const lobby = await lobbyOf(s.url, a.token);
    const w = wsClient(s.wsUrl, a.token);
    const doc = (i: number) => `subscription Shape${i}($c: ConversationInput) { messageAdded(conversation: $c) { id content attachment { id fileName url base64 } } }`;
    // Six distinct documents asking for the bytes: each would be executed, and copy the file, per event.
    const shapes = Array.from({ length: 6 }, (_, i) => subscribe<any>(w, doc(i), { c: { groupId: lobby } }));
    await Promise.all([shapes[4].done, shapes[5].done]);
    const refused = [shapes[4], shapes[5]].flatMap((sub) => (sub.errors as any[]).flat().map((e) => [e.extensions?.code, e.extensions?.reason]));
    expect(refused).toEqual([
      ['RATE_LIMITED', 'TOO_MANY_FILE_SUBSCRIPTIONS'],
      ['RATE_LIMITED', 'TOO_MANY_FILE_SUBSCRIPTIONS'],
    ]);
    const live = shapes.slice(0, 4);
    // Another user's subscription to one of those documents is theirs: not held back by a's.
    const wb = wsClient(s.wsUrl, b.token);
    const other = subscribe<any>(wb, doc(0), { c: { groupId: lobby } });
    const send = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }';
    // The subscriptions are live once a plain message reaches them.
    await eventually(async () => {
      await ok(gql(s.url, send, { i: { groupId: lobby, content: 'ready?' } }, a.token));
      return [...live, other].every((sub) => sub.values.length > 0);
    });
    const loads = jest.spyOn(s.services.messages, 'attachmentData');
    const small = (await ok(gql(s.url, send, { i: { groupId: lobby, content: 'file', attachment: { fileName: 'plan.txt', base64: Buffer.from('the plan').toString('base64') } } }, a.token))).sendMessage;
    const got = (await eventually(() => {
      const each = [...live, other].map((sub) => sub.values.find((v) => v.messageAdded.id === small.id));
      return each.every(Boolean) ? each : undefined;
    })) as any[];
    expect(got.map((v) => Buffer.from(v.messageAdded.attachment.base64, 'base64').toString())).toEqual(Array(5).fill('the plan'));
    // The event's four executions (Bob's subscription shares Ada's first document) loaded the file once.
    expect(loads).toHaveBeenCalledTimes(1);
    loads.mockRestore();

    // One ended frees its place for another.
    live[3].stop();
    const again = subscribe<any>(w, doc(7), { c: { groupId: lobby } });
    await eventually(async () => {
      await ok(gql(s.url, send, { i: { groupId: lobby, content: 'again?' } }, a.token));
      return again.values.length > 0;
    });
    expect(again.errors).toEqual([]);

    // Past 256 KiB the bytes stay one query away: no subscription carries them.
    const big = Buffer.alloc(256 * 1024 + 1, 'x');
    const large = (await ok(gql(s.url, send, { i: { groupId: lobby, content: 'big', attachment: { fileName: 'big.txt', base64: big.toString('base64') } } }, a.token))).sendMessage;
    const bigGot = await eventually(() => live[0].values.find((v) => v.messageAdded.id === large.id));
    expect(bigGot.messageAdded).toMatchObject({ content: 'big', attachment: null });
    expect((live[0].errors.at(-1) as any)?.extensions?.code).toBe('PAYLOAD_TOO_LARGE');
    const h = await ok(gql(s.url, 'query($c: ConversationInput!) { history(conversation: $c, last: 50) { edges { node { attachment { base64 } } } } }', { c: { groupId: lobby } }, a.token));
    const files = h.history.edges.filter((e: any) => e.node.attachment).map((e: any) => Buffer.from(e.node.attachment.base64, 'base64').length);
    expect(files).toEqual([8, big.length]);
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
    // Past it, RATE_LIMITED before the join looks at what it asks: no group there (NOT_FOUND under it).
    expect(codeOf(await gql(s.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g: '00000000-0000-4000-8000-000000000000' }, churner.token))).toBe('RATE_LIMITED');
    // The refused join changed nothing: the owner is still the only member.
    const members = await ok(gql(s.url, 'query($g: ID!) { group(id: $g) { memberCount } }', { g }, owner.token));
    expect(members.group.memberCount).toBe(1);
  });

  it('should spend nothing on a join that changes nothing, and keep an invitation whose acceptance was refused for the limit', async () => {
    const s = await createTestServer({ RATE_LIMIT_GROUP_MEMBERSHIP: '3/1h' });
    const owner = await signup(s.url);
    const churner = await signup(s.url);
    const g = (await buildGroup(s.url, owner, { name: 'open room' })).id;
    const p = (await ok(gql(s.url, 'mutation { createGroup(name: "closed room", isPrivate: true) { id } }', {}, owner.token))).createGroup.id;
    await ok(gql(s.url, 'mutation($p: ID!, $u: ID!) { inviteToGroup(groupId: $p, userId: $u) }', { p, u: churner.id }, owner.token));
    const join = () => gql(s.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g }, churner.token);
    const leave = () => gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g }, churner.token);
    const accept = () => gql(s.url, 'mutation($p: ID!) { acceptGroupInvite(groupId: $p) { id } }', { p }, churner.token);
    const codes = [];
    // The second join finds them a member: told the group, announced to no one, free.
    for (const op of [join, join, leave, join, accept]) codes.push(codeOf(await op()));
    expect(codes).toEqual([undefined, undefined, undefined, undefined, 'RATE_LIMITED']);
    // The refused acceptance left the invitation: the invitee still reads the group, as no member.
    const seen = await ok(gql(s.url, 'query($p: ID!) { group(id: $p) { name myRole memberCount } }', { p }, churner.token));
    expect(seen.group).toEqual({ name: 'closed room', myRole: null, memberCount: 1 });
  });
});
