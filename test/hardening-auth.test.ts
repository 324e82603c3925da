import { codeOf, eventually, gql, ok, subscribe, wsClient, type GqlResult } from './helpers/graphql';
import { attempt, request, signup, buildUser, lobbyOf } from './helpers/factories';
import { LoginDocument, SignupDocument, SendMessageDocument, HistoryDocument } from '../generated/client/graphql';
import { Redis } from 'ioredis';
import { createTestServer, describeRedis, redisName } from './helpers/server';
import { snapshot, sql } from './helpers/db';

const ME = '{ me { id } }';
const DELETE = 'mutation($p: String!) { deleteAccount(password: $p) }';
const BEFRIEND = 'mutation($id: ID!) { sendFriendRequest(userId: $id) { id from { id } to { id } } }';
const ACCEPT = 'mutation($id: ID!) { acceptFriendRequest(requestId: $id) { id status } }';
const DECLINE = 'mutation($id: ID!) { declineFriendRequest(requestId: $id) { id status } }';
const CREATE_GROUP = 'mutation($n: String!) { createGroup(name: $n) { id name } }';
const RENAME_GROUP = 'mutation($g: ID!, $n: String!) { renameGroup(groupId: $g, name: $n) { id name } }';
const CREATE_PROJECT = 'mutation($t: String!) { createProject(title: $t) { id title } }';
const RENAME_PROJECT = 'mutation($p: ID!, $t: String!) { renameProject(projectId: $p, title: $t) { id title } }';
const PROFILE = 'mutation($d: String) { updateProfile(displayName: $d) { displayName } }';

/** Requests from a given client address (the server trusts X-Forwarded-For in these tests). */
const from = (ip: string) => ({ 'x-forwarded-for': ip });

describe('password checks', () => {
  it('should count wrong passwords at deleteAccount with login failures, and refuse both once used up', async () => {
    const s = await createTestServer({ LOGIN_MAX_FAILURES_PER_USER_IP: '3' });
    const u = await signup(s.url);
    // Two wrong logins and one wrong deleteAccount use up the three allowed from this address.
    for (const p of ['wrong-pass-1', 'wrong-pass-2']) expect(codeOf(await attempt(s.url, LoginDocument, { username: u.username, password: p }))).toBe('UNAUTHENTICATED');
    expect(codeOf(await gql(s.url, DELETE, { p: 'wrong-pass-3' }, u.token))).toBe('BAD_USER_INPUT');
    // A stolen token can't keep guessing: the fourth check is refused before the password is tried.
    const blocked = await gql(s.url, DELETE, { p: u.password }, u.token);
    expect(codeOf(blocked)).toBe('RATE_LIMITED');
    expect(blocked.errors![0].extensions!.retryAfter).toBeGreaterThan(0);
    expect(codeOf(await attempt(s.url, LoginDocument, { username: u.username, password: u.password }))).toBe('RATE_LIMITED');
    // Nothing was deleted.
    expect((await ok(gql(s.url, ME, {}, u.token))).me.id).toBe(u.id);
  });

  it('should check no more wrong passwords than the limit when they come at once, and give a right one back its attempt', async () => {
    // All three limits at 4: a right password gives back what it took from each.
    const s = await createTestServer({ LOGIN_MAX_FAILURES_PER_USER_IP: '4', LOGIN_MAX_FAILURES_PER_USER: '4', LOGIN_MAX_FAILURES_PER_IP: '4' });
    const u = await signup(s.url);
    // Right passwords spend nothing: four logins in a row, then the four guesses are still all there.
    for (let i = 0; i < 4; i++) await request(s.url, LoginDocument, { username: u.username, password: u.password });
    const guesses = await Promise.all(Array.from({ length: 16 }, (_, i) => attempt(s.url, LoginDocument, { username: u.username, password: `guess-number-${i}` })));
    const codes = guesses.map(codeOf);
    expect(codes.filter((c) => c === 'UNAUTHENTICATED')).toHaveLength(4);
    expect(codes.filter((c) => c === 'RATE_LIMITED')).toHaveLength(12);
  });

  it('should limit deleteAccount guesses alone, even without any login', async () => {
    const s = await createTestServer({ LOGIN_MAX_FAILURES_PER_USER_IP: '2' });
    const u = await signup(s.url);
    const codes: (string | undefined)[] = [];
    for (let i = 0; i < 4; i++) codes.push(codeOf(await gql(s.url, DELETE, { p: `guess-number-${i}` }, u.token)));
    expect(codes).toEqual(['BAD_USER_INPUT', 'BAD_USER_INPUT', 'RATE_LIMITED', 'RATE_LIMITED']);
  });

  it('should not let a stranger at another address lock the owner out', async () => {
    const s = await createTestServer({ TRUST_PROXY: 'true' });
    const u = await signup(s.url);
    const codes: (string | undefined)[] = [];
    for (let i = 0; i < 12; i++) codes.push(codeOf(await attempt(s.url, LoginDocument, { username: u.username, password: `guess-number-${i}` }, undefined, from('203.0.113.9'))));
    // The attacker's own address is stopped after LOGIN_MAX_FAILURES_PER_USER_IP (default 10)…
    expect(codes).toEqual([...Array(10).fill('UNAUTHENTICATED'), 'RATE_LIMITED', 'RATE_LIMITED']);
    // …and the owner, elsewhere, still gets in, also with the name in another case.
    await request(s.url, LoginDocument, { username: u.username, password: u.password }, undefined, from('198.51.100.7'));
    await request(s.url, LoginDocument, { username: u.username.toUpperCase(), password: u.password }, undefined, from('198.51.100.7'));
  });

  it('should still lock an account from everywhere at LOGIN_MAX_FAILURES_PER_USER', async () => {
    const s = await createTestServer({ TRUST_PROXY: 'true', LOGIN_MAX_FAILURES_PER_USER_IP: '2', LOGIN_MAX_FAILURES_PER_USER: '5' });
    const u = await signup(s.url);
    const other = await signup(s.url);
    // Five guesses spread over three addresses, none of which reaches its own limit of 2 at the end…
    for (const ip of ['10.0.0.1', '10.0.0.1', '10.0.0.2', '10.0.0.2', '10.0.0.3']) {
      expect(codeOf(await attempt(s.url, LoginDocument, { username: u.username, password: 'not-the-password' }, undefined, from(ip)))).toBe('UNAUTHENTICATED');
    }
    // …use up the account's count: refused from a fresh address too, for this account only.
    expect(codeOf(await attempt(s.url, LoginDocument, { username: u.username, password: u.password }, undefined, from('10.0.0.9')))).toBe('RATE_LIMITED');
    await request(s.url, LoginDocument, { username: other.username, password: other.password }, undefined, from('10.0.0.9'));
  });
});

describeRedis('the addresses an account signed in from', () => {
  const known = async (redis: Redis, userId: string) => (await redis.keys(redisName('pw-known:*'))).filter((k) => k.includes(userId));

  it('should hold them in Redis for every instance, and forget them when the account is deleted', async () => {
    const a = await createTestServer({ TRUST_PROXY: 'true', LOGIN_MAX_FAILURES_PER_USER: '3' });
    const b = await createTestServer({ TRUST_PROXY: 'true', LOGIN_MAX_FAILURES_PER_USER: '3' }, { clean: false });
    const redis = new Redis(process.env.REDIS_URL!);
    try {
      const owner = buildUser();
      const u = await request(a.url, SignupDocument, owner, undefined, from('198.51.100.30'));
      const userId = u.signup.user.id;
      const stays = (await request(a.url, SignupDocument, buildUser(), undefined, from('198.51.100.31'))).signup.user;
      const login = (url: string, address: string, password: string) => attempt(url, LoginDocument, { username: owner.username, password }, undefined, from(address));
      expect((await login(a.url, '198.51.100.32', owner.password)).errors).toBeUndefined();
      // Strangers use up the account-wide allowance; the other instance, which saw neither of the
      // owner's addresses, still lets both in (Redis told it), and holds a new one back.
      for (let i = 1; i <= 4; i++) await login(a.url, `203.0.113.${60 + i}`, `guess-number-${i}`);
      expect((await login(b.url, '198.51.100.30', owner.password)).errors).toBeUndefined();
      expect((await login(b.url, '198.51.100.32', owner.password)).errors).toBeUndefined();
      expect(codeOf(await login(b.url, '198.51.100.33', owner.password))).toBe('RATE_LIMITED');
      // One hash an account, its fields the addresses.
      expect(await known(redis, userId)).toEqual([redisName(`pw-known:${userId}`)]);
      expect((await redis.hkeys(redisName(`pw-known:${userId}`))).sort()).toEqual(['198.51.100.30', '198.51.100.32']);
      // Deleted (its own password check marks its address again): nothing of it is left, another account's stays.
      await ok(gql(b.url, DELETE, { p: owner.password }, u.signup.token, from('198.51.100.32')));
      expect(await known(redis, userId)).toEqual([]);
      expect(await known(redis, stays.id)).toHaveLength(1);
    } finally {
      redis.disconnect();
    }
  });

  it('should drop lapsed addresses from an account that has many', async () => {
    const s = await createTestServer({ TRUST_PROXY: 'true' });
    const redis = new Redis(process.env.REDIS_URL!);
    try {
      const u = await signup(s.url);
      const key = redisName(`pw-known:${u.id}`);
      const lapsed = Array.from({ length: 20 }, (_, i) => [`192.0.2.${i}`, String(Date.now() - 1000)]).flat();
      await redis.hset(key, ...lapsed);
      await request(s.url, LoginDocument, { username: u.username, password: u.password }, undefined, from('198.51.100.50'));
      // The signup's address and this one: none of the lapsed twenty.
      const left = await redis.hkeys(key);
      expect(left).toContain('198.51.100.50');
      expect(left).toHaveLength(2);
      expect(await redis.pttl(key)).toBeGreaterThan(29 * 86_400_000);
    } finally {
      redis.disconnect();
    }
  });

  it('should still count an address an older build kept under a key of its own', async () => {
    const s = await createTestServer({ TRUST_PROXY: 'true', LOGIN_MAX_FAILURES_PER_USER: '3' });
    const redis = new Redis(process.env.REDIS_URL!);
    try {
      const u = await signup(s.url);
      await redis.set(redisName(`pw-known:${u.id}|198.51.100.40`), '1', 'EX', 3600);
      const login = (address: string, password: string) => attempt(s.url, LoginDocument, { username: u.username, password }, undefined, from(address));
      for (let i = 1; i <= 4; i++) await login(`203.0.113.${70 + i}`, `guess-number-${i}`);
      expect((await login('198.51.100.40', u.password)).errors).toBeUndefined();
      expect(codeOf(await login('198.51.100.41', u.password))).toBe('RATE_LIMITED');
    } finally {
      redis.disconnect();
    }
  });
});

describe('ids', () => {
  it('should treat an upper-cased id as the id it spells, in arguments, input objects and subscriptions', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const A = a.id.toUpperCase();
    const B = b.id.toUpperCase();
    // Befriending oneself is refused however the id is spelled, as a variable or a literal.
    const before = await snapshot(s.env.DATABASE_URL!);
    expect(codeOf(await gql(s.url, BEFRIEND, { id: A }, a.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, `mutation { sendFriendRequest(userId: "${A}") { id } }`, {}, a.token))).toBe('BAD_USER_INPUT');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    // Anything that is not a UUID still names nothing.
    expect(codeOf(await gql(s.url, BEFRIEND, { id: 'NOT-A-UUID' }, a.token))).toBe('NOT_FOUND');

    const req = (await ok(gql(s.url, BEFRIEND, { id: B }, a.token))).sendFriendRequest;
    expect(req.to.id).toBe(b.id);
    await ok(gql(s.url, ACCEPT, { id: req.id.toUpperCase() }, b.token));

    const w = wsClient(s.wsUrl, b.token);
    await w.connected;
    const sub = subscribe(w, 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { content } }', { c: { userId: A } });
    // A subscription is live once a message sent after it arrives; poll with messages until one does.
    await eventually(async () => {
      await request(s.url, SendMessageDocument, { input: { toUserId: B, content: 'ping' } }, a.token);
      return sub.values.length > 0;
    });
    const sent = (await request(s.url, SendMessageDocument, { input: { toUserId: B, content: 'upper-cased dm' } }, a.token)).sendMessage;
    await eventually(() => sub.values.some((v: any) => v.messageAdded.content === 'upper-cased dm'));
    // It is stored in the one conversation both read, whichever spelling they use.
    for (const [u, peer] of [[a, b.id], [a, B], [b, a.id], [b, A]] as const) {
      const h = await request(s.url, HistoryDocument, { conversation: { userId: peer } }, u.token);
      expect(h.history.edges.map((e: any) => e.node.id)).toContain(sent.id);
    }
    // Other ids: a group by an upper-cased id answers with the stored spelling.
    const lobby = await lobbyOf(s.url, a.token);
    expect((await ok(gql(s.url, 'query($id: ID!) { group(id: $id) { id } }', { id: lobby.toUpperCase() }, a.token))).group.id).toBe(lobby);
  });
});

describe('creation rates', () => {
  it('should limit createGroup per user at RATE_LIMIT_CREATE_GROUP', async () => {
    const s = await createTestServer({ RATE_LIMIT_CREATE_GROUP: '3/1h' });
    const [a, b] = [await signup(s.url), await signup(s.url)];
    for (let i = 0; i < 3; i++) await ok(gql(s.url, CREATE_GROUP, { n: `spam ${i}` }, a.token));
    const r = await gql(s.url, CREATE_GROUP, { n: 'spam 4' }, a.token);
    expect(codeOf(r)).toBe('RATE_LIMITED');
    expect(r.errors![0].extensions!.retryAfter).toBeGreaterThan(0);
    const names = (await ok(gql(s.url, '{ groups(first: 100) { edges { node { name } } } }', {}, b.token))).groups.edges.map((e: any) => e.node.name);
    expect(names).not.toContain('spam 4');
    // Per user: someone else may still create.
    await ok(gql(s.url, CREATE_GROUP, { n: 'fine' }, b.token));
  });

  it('should limit sendFriendRequest per user at RATE_LIMIT_FRIEND_REQUEST', async () => {
    const s = await createTestServer({ RATE_LIMIT_FRIEND_REQUEST: '2/1h' });
    const [a, b, c, d] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    await ok(gql(s.url, BEFRIEND, { id: b.id }, a.token));
    await ok(gql(s.url, BEFRIEND, { id: c.id }, a.token));
    const r = await gql(s.url, BEFRIEND, { id: d.id }, a.token);
    expect(codeOf(r)).toBe('RATE_LIMITED');
    expect((await ok(gql(s.url, '{ friendRequests { id } }', {}, d.token))).friendRequests).toEqual([]);
  });

  it('should refuse to re-send a declined request for FRIEND_REQUEST_COOLDOWN (default a day)', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const req = (await ok(gql(s.url, BEFRIEND, { id: b.id }, a.token))).sendFriendRequest;
    await ok(gql(s.url, DECLINE, { id: req.id }, b.token));
    const again = await gql(s.url, BEFRIEND, { id: b.id }, a.token);
    expect(codeOf(again)).toBe('RATE_LIMITED');
    expect(again.errors![0].message).toMatch(/declined/);
    expect(again.errors![0].extensions!.retryAfter).toBeGreaterThan(23 * 3600);
    expect((await ok(gql(s.url, '{ friendRequests { id } }', {}, b.token))).friendRequests).toEqual([]);
    // The one who said no may still ask.
    await ok(gql(s.url, BEFRIEND, { id: a.id }, b.token));
  });

  it('should hold a decline no more once the two became friends since: after the friendship ends either may ask again', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const req = (await ok(gql(s.url, BEFRIEND, { id: b.id }, a.token))).sendFriendRequest;
    await ok(gql(s.url, DECLINE, { id: req.id }, b.token));
    const theirs = (await ok(gql(s.url, BEFRIEND, { id: a.id }, b.token))).sendFriendRequest;
    await ok(gql(s.url, 'mutation($id: ID!) { acceptFriendRequest(requestId: $id) { id } }', { id: theirs.id }, a.token));
    await ok(gql(s.url, 'mutation($id: ID!) { removeFriend(userId: $id) }', { id: a.id }, b.token));
    await ok(gql(s.url, BEFRIEND, { id: b.id }, a.token));
    expect((await ok(gql(s.url, '{ friendRequests { from { id } } }', {}, b.token))).friendRequests).toEqual([{ from: { id: a.id } }]);
  });

  it('should allow a new request once the cooldown has passed', async () => {
    const s = await createTestServer({ FRIEND_REQUEST_COOLDOWN: '1s' });
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const req = (await ok(gql(s.url, BEFRIEND, { id: b.id }, a.token))).sendFriendRequest;
    await ok(gql(s.url, DECLINE, { id: req.id }, b.token));
    expect(codeOf(await gql(s.url, BEFRIEND, { id: b.id }, a.token))).toBe('RATE_LIMITED');
    await eventually(async () => !(await gql(s.url, BEFRIEND, { id: b.id }, a.token)).errors, 5000, 200);
  });
});

// Bidi controls, zero-width and tag characters, Hangul fillers, and text that shows nothing.
const SPOOFS = [
  'invoice\u202Efdp',
  '\u2066admin\u2069',
  'admin\u200E',
  'ad\u200Bmin',
  'admin\u200D',
  'ad\uFEFFmin',
  'admin\u{E0041}\u{E0042}',
  '\u3164',
  'ad\u3164min',
  '\u115F\u1160',
  '\u200B\u200C\u200D',
  '\u2800',
  '\u0301',
  // Invisible marks (default-ignorable, not format characters): a combining grapheme joiner, Khmer's
  // inherent vowels, a Mongolian variation selector and variation selectors after a Latin letter.
  'b\u034Fob',
  'bo\u17B4b',
  'b\u180Bob',
  'bob\uFE00',
  'b\u{E0100}ob',
  // Joiners between Latin letters, unassigned default-ignorables, a selector after a symbol that has no variants.
  'b\u200Cob',
  'b\u2065ob',
  '\u2605\uFE00bob',
  // A presentation selector after a character that has no emoji form, and a notehead that draws nothing.
  '+\uFE0F',
  'b\u{1D159}ob',
  // Noncharacters, never to be assigned: blank or a box.
  '\uFFFF',
  '\u{10FFFF}',
  'bo\uFDD0b',
];
// Emoji (with ZWJ and tag sequences), accents, CJK, Arabic, Persian with ZWNJ, Devanagari with ZWJ.
// And variation selectors where they choose a glyph: a kanji's ideographic variant (a name's own
// spelling), a symbol's text presentation, a Mongolian letter's form.
const GOOD = ['👩‍👩‍👧', 'Zoë', 'Zoe\u0308', '日本語', 'مرحبا بالعالم', 'می‌خواهم', '🏴󠁧󠁢󠁳󠁣󠁴󠁿 fans', 'क्‍ष', '❤️ team', '葛\u{E0100}飾', '☺\uFE0E', 'ᠨ\u180Bᠠ', 'ᠨ\u180Eᠠ', 'ශ්‍රී', 'കൃഷ്ണന്\u200D', '≩\uFE00', '⚽\uFE0F Football', '☕\uFE0F', '👍\uFE0F', '⚽\uFE0E'];

describe('text rules', () => {
  it('should refuse spoofing characters in display names, group names and project titles, and write nothing', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const group = (await ok(gql(s.url, CREATE_GROUP, { n: 'g' }, u.token))).createGroup.id;
    const project = (await ok(gql(s.url, CREATE_PROJECT, { t: 'p' }, u.token))).createProject.id;
    const before = await snapshot(s.env.DATABASE_URL!);
    for (const bad of SPOOFS) {
      const attempts: [string, Promise<GqlResult>][] = [
        ['signup displayName', attempt(s.url, SignupDocument, { ...buildUser(), displayName: bad })],
        ['updateProfile', gql(s.url, PROFILE, { d: bad }, u.token)],
        ['createGroup', gql(s.url, CREATE_GROUP, { n: bad }, u.token)],
        ['renameGroup', gql(s.url, RENAME_GROUP, { g: group, n: bad }, u.token)],
        ['createProject', gql(s.url, CREATE_PROJECT, { t: bad }, u.token)],
        ['renameProject', gql(s.url, RENAME_PROJECT, { p: project, t: bad }, u.token)],
        ['signup username', attempt(s.url, SignupDocument, { ...buildUser(), username: `user${bad}` })],
      ];
      for (const [what, p] of attempts) expect([what, JSON.stringify(bad), codeOf(await p)]).toEqual([what, JSON.stringify(bad), 'BAD_USER_INPUT']);
    }
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
  });

  it("should take a display name made before today's rules back unchanged, with a new username", async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const older = 'b\u034Fob';
    await sql(s.env.DATABASE_URL!, 'update users set display_name = $2 where id = $1', [u.id, older]);
    const renamed = `${u.username}x`.slice(0, 32);
    const r = await ok(gql(s.url, 'mutation($d: String, $n: String) { updateProfile(displayName: $d, username: $n) { username displayName } }', { d: older, n: renamed }, u.token));
    expect(r.updateProfile).toEqual({ username: renamed, displayName: older });
    // A change to it is checked as any name is.
    expect(codeOf(await gql(s.url, PROFILE, { d: `${older}!` }, u.token))).toBe('BAD_USER_INPUT');
    // So are a group's name and a project's title: the one it has is taken back unchanged.
    const group = (await ok(gql(s.url, CREATE_GROUP, { n: 'g' }, u.token))).createGroup.id;
    const project = (await ok(gql(s.url, CREATE_PROJECT, { t: 'p' }, u.token))).createProject.id;
    await sql(s.env.DATABASE_URL!, 'update groups set name = $2 where id = $1', [group, older]);
    await sql(s.env.DATABASE_URL!, 'update projects set title = $2 where id = $1', [project, older]);
    expect((await ok(gql(s.url, RENAME_GROUP, { g: group, n: older }, u.token))).renameGroup.name).toBe(older);
    expect((await ok(gql(s.url, RENAME_PROJECT, { p: project, t: older }, u.token))).renameProject.title).toBe(older);
  });

  it('should keep emoji, ZWJ sequences and real scripts in names', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    // Kept as given, composed (NFC): 'Zoe\u0308' is kept as 'Zoë'.
    for (const given of GOOD) {
      const good = given.normalize('NFC');
      expect((await request(s.url, SignupDocument, { ...buildUser(), displayName: given })).signup.user.displayName).toBe(good);
      expect((await ok(gql(s.url, PROFILE, { d: given }, u.token))).updateProfile.displayName).toBe(good);
      expect((await ok(gql(s.url, CREATE_GROUP, { n: given }, u.token))).createGroup.name).toBe(good);
      expect((await ok(gql(s.url, CREATE_PROJECT, { t: given }, u.token))).createProject.title).toBe(good);
    }
  });

  it('should refuse bidi controls and invisible characters in file names', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const text = (fileName: string) => ({ groupId: lobby, attachment: { fileName, base64: Buffer.from('hello').toString('base64') } });
    const before = await snapshot(s.env.DATABASE_URL!);
    for (const fileName of ['invoice\u202Efdp.txt', 'report\u200B.txt', '\u3164.txt', 'a\u2066b\u2069.txt', 'b\u034Fob.txt']) {
      const r = await attempt(s.url, SendMessageDocument, { input: text(fileName) }, u.token);
      expect([fileName, codeOf(r), r.errors?.[0].extensions?.field]).toEqual([fileName, 'BAD_USER_INPUT', 'attachment.fileName']);
    }
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    expect((await request(s.url, SendMessageDocument, { input: text('日本語 📄.txt') }, u.token)).sendMessage.attachment!.fileName).toBe('日本語 📄.txt');
  });

  it('should refuse a message that shows nothing, and keep emoji and scripts in messages', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const before = await snapshot(s.env.DATABASE_URL!);
    for (const content of ['\u200B', '\u200B\u200C\u200D\u2060', '\u3164 \u3164', '\u{E0041}\u{E0020}', '\uFFFF', '\uFFFE \u{10FFFF}']) {
      const r = await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, content } }, u.token);
      expect([JSON.stringify(content), codeOf(r)]).toEqual([JSON.stringify(content), 'BAD_USER_INPUT']);
    }
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    for (const content of [...GOOD, 'hi\u200B']) expect((await request(s.url, SendMessageDocument, { input: { groupId: lobby, content } }, u.token)).sendMessage.content).toBe(content);
  });
});
