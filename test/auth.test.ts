import { createHash } from 'node:crypto';
import WebSocket from 'ws';
import pg from 'pg';
import { PostgreSqlConnection } from '@mikro-orm/postgresql';
import { codeOf, eventually, gql, ok, running, sleep, subscribe, wsClient, type GqlResult } from './helpers/graphql';
import { loadEnv } from '../src/config/env';
import { createTestServer, describeRedis, itRedis } from './helpers/server';
import { attempt, buildUser, lobbyOf, request, sendMessage, signup, login } from './helpers/factories';
import { throughRedisProxy } from './helpers/tcp-proxy';
import { LoginDocument, SignupDocument } from '../generated/client/graphql';
import { HOSTILE_STRINGS, snapshot, sql, whileHolding } from './helpers/db';
import { sessionRepository } from '../src/modules/auth/auth.repository';

const ME = '{ me { id username displayName status } }';

/** Opens a raw graphql-transport-ws socket and returns how it ends. */
function rawSocket(url: string, init: Record<string, unknown> | null, headers: Record<string, string> = {}) {
  const ws = new WebSocket(url, 'graphql-transport-ws', { headers });
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  const acked = new Promise<boolean>((resolve) => {
    ws.on('message', (m) => resolve(JSON.parse(String(m)).type === 'connection_ack'));
    ws.on('close', () => resolve(false));
  });
  ws.on('open', () => init && ws.send(JSON.stringify({ type: 'connection_init', payload: init })));
  return { ws, closed, acked };
}

describe('accounts', () => {
  it('should sign up, return a token that works, and answer me', async () => {
    const s = await createTestServer();
    const input = buildUser({ displayName: 'Alice' });
    const data = await request(s.url, SignupDocument, input);
    expect(data.signup.user).toMatchObject({ username: input.username, displayName: 'Alice', status: 'ONLINE' });
    expect(new Date(data.signup.expiresAt!).getTime()).toBeGreaterThan(Date.now() + 29 * 86400_000);
    const me = await ok(gql(s.url, ME, {}, data.signup.token));
    expect(me.me.id).toBe(data.signup.user.id);
    expect((await ok(gql(s.url, ME))).me).toBeNull();
  });

  it('should validate usernames and passwords naming the field', async () => {
    const s = await createTestServer();
    for (const username of ['ab', 'a'.repeat(33), 'has space', 'émile', 'semi;colon', '']) {
      const r = await attempt(s.url, SignupDocument, { username, password: 'password123' });
      expect(codeOf(r)).toBe('BAD_USER_INPUT');
      expect(r.errors![0].extensions!.field).toBe('username');
    }
    for (const password of ['short', 'x'.repeat(257)]) {
      const r = await attempt(s.url, SignupDocument, { username: 'valid_name', password });
      expect(codeOf(r)).toBe('BAD_USER_INPUT');
      expect(r.errors![0].extensions!.field).toBe('password');
    }
    await request(s.url, SignupDocument, { username: 'a.b-c_3', password: 'x'.repeat(256) });
  });

  it('should refuse a taken username regardless of case, also when two signups race', async () => {
    const s = await createTestServer();
    await request(s.url, SignupDocument, { username: 'Carol', password: 'password123' });
    const r = await attempt(s.url, SignupDocument, { username: 'cAROL', password: 'password123' });
    expect(codeOf(r)).toBe('CONFLICT');
    const race = await Promise.all([1, 2, 3].map(() => attempt(s.url, SignupDocument, { username: 'Dave', password: 'password123' })));
    expect(race.filter((x) => !x.errors).length).toBe(1);
    expect(race.filter((x) => codeOf(x) === 'CONFLICT').length).toBe(2);
    // The lobby's owner is the system user 'parley': no account may take its name.
    for (const username of ['parley', 'PARLEY']) expect(codeOf(await attempt(s.url, SignupDocument, { username, password: 'password123' }))).toBe('CONFLICT');
  });

  it('should hash passwords with argon2id at OWASP parameters and store tokens only as hashes', async () => {
    // The default, which the harness's minimal cost (helpers/server.ts) would hide.
    const s = await createTestServer({ PASSWORD_HASH_COST: undefined });
    const u = await signup(s.url);
    const [row] = await sql(s.env.DATABASE_URL!, 'select password_hash from users where id = $1', [u.id]);
    expect(row.password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    expect(Buffer.from(u.token, 'base64url').length).toBeGreaterThanOrEqual(16);
    const sessions = await sql(s.env.DATABASE_URL!, 'select token_hash from sessions where user_id = $1', [u.id]);
    expect(sessions).toEqual([{ token_hash: createHash('sha256').update(u.token).digest('hex') }]);
    const leaked = await sql(s.env.DATABASE_URL!, "select count(*)::int as n from sessions where token_hash = $1 or token_hash like '%' || $1 || '%'", [u.token]);
    expect(leaked[0].n).toBe(0);
  });

  it('should hash at minimal cost only under NODE_ENV=test, and check a password against the cost it was hashed at', async () => {
    for (const NODE_ENV of ['production', 'development']) expect(() => loadEnv({ NODE_ENV, PASSWORD_HASH_COST: 'minimal' })).toThrow(/PASSWORD_HASH_COST/);
    expect(() => loadEnv({ NODE_ENV: 'test', PASSWORD_HASH_COST: 'cheap' })).toThrow(/PASSWORD_HASH_COST/);
    const cheap = await createTestServer({ PASSWORD_HASH_COST: 'minimal' });
    const u = await signup(cheap.url);
    const [row] = await sql(cheap.env.DATABASE_URL!, 'select password_hash from users where id = $1', [u.id]);
    expect(row.password_hash).toMatch(/^\$argon2id\$v=19\$m=1024,t=1,p=1\$/);
    await cheap.dispose();
    // A server at the default cost takes the cheaper hash as stored (verify reads its parameters).
    const s = await createTestServer({ PASSWORD_HASH_COST: 'owasp' }, { clean: false });
    expect((await request(s.url, LoginDocument, { username: u.username, password: u.password })).login.user.id).toBe(u.id);
    expect(codeOf(await attempt(s.url, LoginDocument, { username: u.username, password: `${u.password}x` }))).toBe('UNAUTHENTICATED');
  });

  it('should log in, answering an unknown user and a wrong password the same way', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const good = await request(s.url, LoginDocument, { username: u.username.toUpperCase(), password: u.password });
    expect(good.login.user).toMatchObject({ id: u.id, status: 'ONLINE' });
    expect(good.login.token).not.toBe(u.token);
    const wrong = await attempt(s.url, LoginDocument, { username: u.username, password: 'wrong-password' });
    const unknown = await attempt(s.url, LoginDocument, { username: 'nobody_here', password: 'wrong-password' });
    expect(codeOf(wrong)).toBe('UNAUTHENTICATED');
    expect(wrong.errors![0].message).toBe(unknown.errors![0].message);
    expect(codeOf(unknown)).toBe('UNAUTHENTICATED');
  });

  it('should revoke only the token logout was called with', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const second = await login(s.url, u);
    expect((await ok(gql(s.url, 'mutation { logout }', {}, u.token))).logout).toBe(true);
    const after = await gql(s.url, ME, {}, u.token);
    expect(codeOf(after)).toBe('UNAUTHENTICATED');
    expect(after.status).toBe(401);
    expect((await ok(gql(s.url, ME, {}, second))).me.id).toBe(u.id);
    expect(codeOf(await gql(s.url, 'mutation { logout }'))).toBe('UNAUTHENTICATED');
  });

  it("should refuse the root fields after a logoutOtherSessions through this instance ended the document's session while it ran", () => revokedMidway(false));
  itRedis("should refuse the root fields after a logoutOtherSessions through another instance ended the document's session while it ran", () => revokedMidway(true));

  async function revokedMidway(two: boolean): Promise<void> {
    const s = await createTestServer();
    // The revocation asked of this instance, or of another one that tells it through Redis.
    const revoker = two ? await createTestServer({}, { clean: false }) : s;
    const [u, g] = [await signup(s.url), await signup(s.url)];
    const other = await login(s.url, u);
    const groupId = (await ok(gql(s.url, 'mutation { createGroup(name: "Midway") { id } }', {}, g.token))).createGroup.id;
    await ok(gql(s.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g: groupId }, u.token));
    await sendMessage(s.url, g.token, { groupId, content: 'to mark' });
    // The document's first field waits on the member's read state, held here, while the session is revoked elsewhere.
    const holder = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('select 1 from conversation_members where conversation_key = $1 and user_id = $2 for update', [`g:${groupId}`, u.id]);
      const running = gql(s.url, 'mutation($g: ID!) { markRead(conversation: { groupId: $g }) { id } createGroup(name: "After revocation") { id } }', { g: groupId }, other);
      await eventually(async () => (await sql(s.env.DATABASE_URL!, 'select 1 from pg_locks l join pg_stat_activity a using (pid) where not l.granted and a.datname = current_database()')).length > 0);
      expect((await ok(gql(revoker.url, 'mutation($p: String!) { logoutOtherSessions(password: $p) }', { p: u.password }, u.token))).logoutOtherSessions).toBe(1);
      // Heard through Redis: as its socket there is closed once it is.
      if (two) await sleep(300);
      await holder.query('commit');
      const r = await running;
      expect([r.data ?? null, codeOf(r), r.errors![0].path]).toEqual([null, 'UNAUTHENTICATED', ['createGroup']]);
    } finally {
      await holder.end();
    }
    expect(await sql(s.env.DATABASE_URL!, "select 1 from groups where name = 'After revocation'")).toEqual([]);
  }

  it('should refuse the root fields after a logout or a deleteAccount in the same document, as the revoked token is refused after it', async () => {
    const s = await createTestServer();
    const [u, g] = [await signup(s.url), await signup(s.url)];
    const groupId = (await ok(gql(s.url, 'mutation { createGroup(name: "After") { id } }', {}, g.token))).createGroup.id;
    const after = await gql(s.url, 'mutation($g: ID!) { logout joinGroup(groupId: $g) { id } }', { g: groupId }, u.token);
    // joinGroup is non-null: the whole data goes with it, though the logout was done.
    expect([after.data ?? null, codeOf(after), after.errors![0].path]).toEqual([null, 'UNAUTHENTICATED', ['joinGroup']]);
    expect(codeOf(await gql(s.url, ME, {}, u.token))).toBe('UNAUTHENTICATED');
    const members = async () => (await ok(gql(s.url, 'query($g: ID!) { group(id: $g) { memberCount } }', { g: groupId }, g.token))).group.memberCount;
    expect(await members()).toBe(1);
    const token = await login(s.url, u);
    const gone = await gql(s.url, 'mutation($g: ID!, $p: String!) { deleteAccount(password: $p) joinGroup(groupId: $g) { id } }', { g: groupId, p: u.password }, token);
    expect([gone.data ?? null, codeOf(gone), gone.errors![0].path]).toEqual([null, 'UNAUTHENTICATED', ['joinGroup']]);
    expect(codeOf(await attempt(s.url, LoginDocument, { username: u.username, password: u.password }))).toBe('UNAUTHENTICATED');
    expect(await members()).toBe(1);
  });

  it("should not keep a session its logout overtook while a request was reading it", async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const token = await login(s.url, u);
    // The next read of this token's session is held once it has the row, as a slow read would be.
    const real = sessionRepository.byTokenHash;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let held = false;
    const hash = createHash('sha256').update(token).digest('hex');
    sessionRepository.byTokenHash = async (em, h) => {
      const row = await real.call(sessionRepository, em, h);
      if (h === hash && !held) {
        held = true;
        await gate;
      }
      return row;
    };
    try {
      const early = gql(s.url, ME, {}, token);
      await eventually(() => held);
      expect((await ok(gql(s.url, 'mutation { logout }', {}, token))).logout).toBe(true);
      release();
      // The request begun before the logout is answered; the token is not put back for the next ones
      // (before, it was cached again for a minute: an outside probe sent messages with it).
      expect((await ok(early)).me.id).toBe(u.id);
      expect(codeOf(await gql(s.url, ME, {}, token))).toBe('UNAUTHENTICATED');
      expect(codeOf(await gql(s.url, 'mutation { heartbeat { status } }', {}, token))).toBe('UNAUTHENTICATED');
    } finally {
      sessionRepository.byTokenHash = real;
      release();
    }
  });

  it('should sign in with a stale token still in the header, and refuse it for anything else', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    await ok(gql(s.url, 'mutation { logout }', {}, u.token));
    const LOGIN = 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token user { id } } }';
    // The client kept the revoked token: its sign-in goes through as if it had sent none, over the fast path too (a document's third use).
    for (let i = 0; i < 3; i++) {
      const again = await ok(gql(s.url, LOGIN, { u: u.username, p: u.password }, u.token));
      expect(again.login.user.id).toBe(u.id);
      expect((await ok(gql(s.url, ME, {}, again.login.token))).me.id).toBe(u.id);
    }
    const other = await ok(gql(s.url, 'mutation($u: String!) { signup(username: $u, password: "long enough pass") { user { id } } }', { u: `fresh_${Date.now()}` }, u.token));
    expect(other.signup.user.id).toMatch(/^[0-9a-f-]{36}$/);
    // Anything else with it, a sign-in beside another field included: 401 as before.
    for (const q of [ME, 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } logout }']) {
      const r = await gql(s.url, q, { u: u.username, p: u.password }, u.token);
      expect([r.status, codeOf(r)]).toEqual([401, 'UNAUTHENTICATED']);
    }
    // An automatic persisted query by its hash alone, as Apollo Client sends it first (an outside
    // probe: 401, which the client never got past): unknown, it asks for the text; known, it signs in.
    const apq = async (query: string | undefined, variables: Record<string, unknown>) => {
      const extensions = { persistedQuery: { version: 1, sha256Hash: createHash('sha256').update(query ?? LOGIN).digest('hex') } };
      const res = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` }, body: JSON.stringify({ query, variables, extensions }) });
      const body = (await res.json()) as any;
      return [res.status, body.errors?.[0]?.extensions?.code ?? null, body.data?.login?.user?.id ?? null];
    };
    const vars = { u: u.username, p: u.password };
    expect(await apq(undefined, vars)).toEqual([200, 'PERSISTED_QUERY_NOT_FOUND', null]);
    expect(await apq(LOGIN, vars)).toEqual([200, null, u.id]);
    expect(await apq(undefined, vars)).toEqual([200, null, u.id]);
    // Known by its hash, anything else is still refused with the token: ME's hash once ME ran by it.
    const meHash = { persistedQuery: { version: 1, sha256Hash: createHash('sha256').update(ME).digest('hex') } };
    const fresh = (await ok(gql(s.url, LOGIN, vars))).login.token;
    await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${fresh}` }, body: JSON.stringify({ query: ME, extensions: meHash }) });
    const stale = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` }, body: JSON.stringify({ extensions: meHash }) });
    expect([stale.status, ((await stale.json()) as any).errors[0].extensions.code]).toEqual([401, 'UNAUTHENTICATED']);
  });

  it('should take a password however a keyboard composed its accents, and one hashed as typed before passwords were composed', async () => {
    const s = await createTestServer();
    const SIGNUP = 'mutation($u: String!, $p: String!) { signup(username: $u, password: $p) { user { id } } }';
    const LOGIN = 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }';
    const [composed, decomposed] = ['caf\u00e9-secret', 'cafe\u0301-secret'];
    const name = `accent_${process.pid}`;
    await ok(gql(s.url, SIGNUP, { u: name, p: decomposed }));
    for (const p of [composed, decomposed]) expect([p, codeOf(await gql(s.url, LOGIN, { u: name, p }))]).toEqual([p, undefined]);
    expect(codeOf(await gql(s.url, LOGIN, { u: name, p: 'cafe-secret' }))).toBe('UNAUTHENTICATED');
    // Eight characters as shown, not as typed: four accented letters spelled in eight code points are four.
    // Nor U+0958, which composing takes apart (a composition exclusion): four characters, composed or not.
    for (const p of ['e\u0301'.repeat(4), '\u0958'.repeat(4), '\u0915\u093c'.repeat(4)]) {
      const short = await gql(s.url, SIGNUP, { u: `short_${process.pid}`, p });
      expect([p, codeOf(short), short.errors?.[0].extensions?.field]).toEqual([p, 'BAD_USER_INPUT', 'password']);
    }
    expect(codeOf(await gql(s.url, SIGNUP, { u: `devanagari_${process.pid}`, p: '\u0958'.repeat(8) }))).toBeUndefined();
    // The longest password signup takes, typed decomposed (1,280 units as sent, 512 composed), signs in and confirms as sent (an outside probe).
    const long = '\u1fa7\u0301'.normalize('NFD').repeat(256);
    const longName = `long_${process.pid}`;
    const signedUp = (await ok(gql(s.url, SIGNUP, { u: longName, p: long }))).signup.user.id;
    const token = (await ok(gql(s.url, LOGIN, { u: longName, p: long }))).login.token;
    expect((await ok(gql(s.url, 'mutation($p: String!) { logoutOtherSessions(password: $p) }', { p: long }, token))).logoutOtherSessions).toBe(1);
    expect(signedUp).toEqual(expect.any(String));
    // A hash made of the password as typed (an earlier release) still takes it as typed.
    const { hash } = await import('@node-rs/argon2');
    await sql(s.env.DATABASE_URL!, 'update users set password_hash = $1 where username = $2', [await hash(decomposed), name]);
    expect(codeOf(await gql(s.url, LOGIN, { u: name, p: decomposed }))).toBeUndefined();
  });

  it("should refuse a password with half of a surrogate pair (it would match others), the names 'all' and 'here', and any a deleted account's placeholder could have", async () => {
    const s = await createTestServer();
    const SIGNUP = 'mutation($u: String!, $p: String!) { signup(username: $u, password: $p) { user { id } } }';
    const r = await gql(s.url, SIGNUP, { u: `half_${process.pid}`, p: '\ud800abcdefgh' });
    expect([codeOf(r), r.errors?.[0].extensions?.field]).toEqual(['BAD_USER_INPUT', 'password']);
    for (const name of ['all', 'HERE', 'deleted-000000000000000000000000', 'Deleted-me']) expect([name, codeOf(await gql(s.url, SIGNUP, { u: name, p: 'long enough pass' }))]).toEqual([name, 'CONFLICT']);
    const u = await signup(s.url);
    expect(codeOf(await gql(s.url, 'mutation { updateProfile(username: "All") { id } }', {}, u.token))).toBe('CONFLICT');
    expect(codeOf(await gql(s.url, 'mutation { updateProfile(username: "deleted-x") { id } }', {}, u.token))).toBe('CONFLICT');
    // Nor the display names a deleted account and the system show (an outside probe: a live sender read as deleted).
    const shown = async () => (await gql(s.url, '{ me { displayName } }', {}, u.token)).data.me.displayName;
    const before = await shown();
    const SIGNUP_AS = 'mutation($u: String!, $d: String!) { signup(username: $u, password: "long enough pass", displayName: $d) { user { id } } }';
    for (const name of ['Deleted user', ' deleted  USER ', 'Ｄeleted user', 'Parley', 'Раrley', 'ρarley', 'Dеleted user', 'Deleted-user', 'Deleted_user', 'Parley․', 'Pàrley', 'Par1ey', 'PARLEΥ', 'Parleγ', 'ParIey', 'DeIeted user', 'ᴘᴀʀʟᴇʏ', 'Paгley', 'Deleted usег', 'Parłey', 'Par|ey', 'ꓑꓮꓣꓡꓰꓬ', 'Ꮲarley', 'Deleted սser', 'Parley™', 'Parleyʼ', 'Parl℮y', 'Ⓟⓐⓡⓛⓔⓨ', '🄿🄰🅁🄻🄴🅈', 'ᴾᵃʳˡᵉʸ', 'Ᵽarley', 'Paɾley', 'Deleted ʉser', '🅿🅰🆁🅻🅴🆈', '🅟🅐🅡🅛🅔🅨', '⒫⒜⒭⒧⒠⒴', '🅳🅴🅻🅴🆃🅴🅳 🆄🆂🅴🆁', 'ParȽey', 'PaɌley', 'ParⱢey', 'Parleꭹ', 'Deleted uꮥer', 'Pⱥrley', 'PȺrley', 'Deleⱦed user', 'Deleted uꞩer', '🇵🇦🇷🇱🇪🇾', 'Parle🇾', '🆥eleted user', 'Par│ey', 'Par▏ey', 'Par❘ey', 'Par⏐ey', 'Par𝼦ey', 'Deleted uꟍer', 'ꝺeleted user', 'Parꝇey', 'Parlεy', 'ParlƐy', '🆊arley', 'Pa®ley', 'PA®LEY', '℗arley', 'Parlɘy', 'Pɐrley', 'P@rley', 'Parl€y', 'Deleted ʊser', 'Deleted u$er', 'Parləy', 'Pa🄬ley', 'Pɒrley', 'Paᴙley', 'Paʁley', 'ꟼarley', 'Par⅃ey', 'Parlɞy', 'Paяley', 'Deleted usэr', 'Parlєy', 'Ԁeleted user', 'Parley®', 'Parley ©', '@Parley', '$Parley$', 'Deleted user®', 'Parley €']) {
      const up = await gql(s.url, 'mutation($d: String!) { updateProfile(displayName: $d) { displayName } }', { d: name }, u.token);
      const at = await gql(s.url, SIGNUP_AS, { u: `dn_${process.pid}_${name.length}`, d: name });
      expect([name, codeOf(up), up.errors?.[0].extensions?.field, codeOf(at)]).toEqual([name, 'BAD_USER_INPUT', 'displayName', 'BAD_USER_INPUT']);
    }
    expect(await shown()).toBe(before);
    // A name that merely contains one, or a Russian one, is a name like any other.
    for (const name of ['Deleted users fan', 'Parley team', 'Рарлей', 'ΑΡΗΣ', 'Harley', 'Parsley', '张伟', 'İsmail', 'Mr. ™', 'Ⓐnna', 'Łukasz', 'Pariey', 'Ana 🇵🇹', 'Barley', 'Pearl', 'Acme®', 'Əli @ Acme', 'Jo$h']) {
      expect((await gql(s.url, 'mutation($d: String!) { updateProfile(displayName: $d) { displayName } }', { d: name }, u.token)).data.updateProfile.displayName).toBe(name);
    }
    // Login with one: a mismatch, answered as any wrong password.
    expect(codeOf(await gql(s.url, 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }', { u: u.username, p: '\udbffabcdefgh' }))).toBe('UNAUTHENTICATED');
  });

  it('should refuse an expired token', async () => {
    const s = await createTestServer({ TOKEN_TTL: '1s' });
    const u = await signup(s.url);
    expect((await ok(gql(s.url, ME, {}, u.token))).me.id).toBe(u.id);
    // What is under test: TOKEN_TTL (1 s) passing.
    await eventually(async () => codeOf(await gql(s.url, ME, {}, u.token)) === 'UNAUTHENTICATED', 3000);
  });

  it('should not query the database to authenticate a cached token', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    await ok(gql(s.url, '{ __typename }', {}, u.token));
    const spy = jest.spyOn(PostgreSqlConnection.prototype, 'execute');
    try {
      for (let i = 0; i < 20; i++) await ok(gql(s.url, '{ __typename }', {}, u.token));
      expect(spy).not.toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  it('should limit failed logins per account, counting aliased logins in one document', async () => {
    const s = await createTestServer({ LOGIN_MAX_FAILURES_PER_USER: '3', TRUST_PROXY: 'true' });
    const u = await signup(s.url);
    // From an address the owner never signed in from (theirs keep their own allowance past this limit).
    const elsewhere = { 'x-forwarded-for': '203.0.113.77' };
    // Mutation fields run one after another; a failed login (non-null) ends the document, so
    // aliases can't try more passwords than the limit allows.
    const doc = `mutation { a: login(username: "${u.username}", password: "nope-nope-1") { token } b: login(username: "${u.username}", password: "nope-nope-2") { token } c: login(username: "${u.username}", password: "nope-nope-3") { token } d: login(username: "${u.username}", password: "nope-nope-4") { token } }`;
    const codes: string[] = [];
    for (let i = 0; i < 4; i++) codes.push(...(await gql(s.url, doc, undefined, undefined, elsewhere)).errors!.map((e) => e.extensions!.code as string));
    expect(codes).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'RATE_LIMITED']);
    const blocked = await attempt(s.url, LoginDocument, { username: u.username, password: u.password }, undefined, elsewhere);
    expect(codeOf(blocked)).toBe('RATE_LIMITED');
    expect(blocked.errors![0].extensions!.retryAfter).toBeGreaterThan(0);
  });

  it('should limit failed logins per client address', async () => {
    const s = await createTestServer({ LOGIN_MAX_FAILURES_PER_IP: '3' });
    for (let i = 0; i < 3; i++) expect(codeOf(await attempt(s.url, LoginDocument, { username: `ghost_${i}`, password: 'whatever1' }))).toBe('UNAUTHENTICATED');
    expect(codeOf(await attempt(s.url, LoginDocument, { username: 'ghost_9', password: 'whatever1' }))).toBe('RATE_LIMITED');
  });

  it('should update the profile with the same rules as signup', async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const b = await signup(s.url);
    const UPDATE = 'mutation($u: String, $d: String) { updateProfile(username: $u, displayName: $d) { id username displayName } }';
    const r = await ok(gql(s.url, UPDATE, { u: 'renamed_a', d: '  Ann  ' }, a.token));
    expect(r.updateProfile).toEqual({ id: a.id, username: 'renamed_a', displayName: 'Ann' });
    expect(codeOf(await gql(s.url, UPDATE, { u: b.username.toUpperCase() }, a.token))).toBe('CONFLICT');
    expect(codeOf(await gql(s.url, UPDATE, { u: 'Parley' }, a.token))).toBe('CONFLICT');
    expect(codeOf(await gql(s.url, UPDATE, { u: 'x' }, a.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, UPDATE, { d: 'y'.repeat(65) }, a.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, UPDATE, { u: 'anon_try' }))).toBe('UNAUTHENTICATED');
    const me = await ok(gql(s.url, ME, {}, a.token));
    expect(me.me).toMatchObject({ username: 'renamed_a', displayName: 'Ann' });
    // A blank display name is none, as null is (a form's emptied field): the username shows.
    expect((await ok(gql(s.url, UPDATE, { d: ' \u3000 ' }, a.token))).updateProfile.displayName).toBeNull();
    // Composed as group names are: é typed as e and an accent is stored as the one é.
    expect((await ok(gql(s.url, UPDATE, { d: 'Rene\u0301e' }, a.token))).updateProfile.displayName).toBe('Ren\u00e9e');
  });

  it("should not rename an account deleted while the rename was on its way (the deleted placeholder keeps its name)", async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    // A deletion under way from another session, as deleteAccount locks and anonymizes the row, not yet committed.
    const deleting: [string, unknown[]][] = [
      ['select 1 from users where id = $1 for no key update', [a.id]],
      ["update users set username = 'deleted-placeholder', display_name = 'Deleted user', deleted_at = now() where id = $1", [a.id]],
    ];
    const renamed = await whileHolding(s.env.DATABASE_URL!, deleting, () => gql(s.url, 'mutation { updateProfile(username: "alive_again", displayName: "Alive") { id } }', {}, a.token));
    expect(codeOf(renamed)).toBe('UNAUTHENTICATED');
    expect(await sql(s.env.DATABASE_URL!, 'select username, display_name from users where id = $1', [a.id])).toEqual([{ username: 'deleted-placeholder', display_name: 'Deleted user' }]);
  });

  it('should tell a deleteAccount that waited on another deletion of the account that its session is gone, and delete nothing twice', async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const other = await login(s.url, a);
    // The other session's deletion, under way: the row locked and anonymized, the sessions gone, not yet committed.
    const deleting: [string, unknown[]][] = [
      ['select 1 from users where id = $1 for no key update', [a.id]],
      ["update users set username = 'deleted-placeholder', display_name = 'Deleted user', deleted_at = now() where id = $1", [a.id]],
      ['delete from sessions where user_id = $1', [a.id]],
    ];
    const second = await whileHolding(s.env.DATABASE_URL!, deleting, () => gql(s.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: a.password }, other));
    expect([codeOf(second), second.data?.deleteAccount ?? null]).toEqual(['UNAUTHENTICATED', null]);
    expect(await sql(s.env.DATABASE_URL!, 'select username, display_name from users where id = $1', [a.id])).toEqual([{ username: 'deleted-placeholder', display_name: 'Deleted user' }]);
  });

  it("should refuse a username ending in a dot (a mention could never name it) and a rename into a name LOBBY_ADMINS or MODERATORS gives rights to", async () => {
    const s = await createTestServer({ MODERATORS: `mod_${process.pid}`, LOBBY_ADMINS: `ladmin_${process.pid}` });
    const SIGNUP = 'mutation($u: String!, $p: String!) { signup(username: $u, password: $p) { user { id } } }';
    const UPDATE = 'mutation($u: String) { updateProfile(username: $u) { username } }';
    const u = await signup(s.url);
    const before = await snapshot(s.env.DATABASE_URL!);
    for (const name of [`dot_${process.pid}.`, 'all.', 'here.']) {
      const r = await gql(s.url, SIGNUP, { u: name, p: 'long enough pass' });
      expect([codeOf(r), r.errors?.[0].extensions?.field]).toEqual(['BAD_USER_INPUT', 'username']);
      expect(codeOf(await gql(s.url, UPDATE, { u: name }, u.token))).toBe('BAD_USER_INPUT');
    }
    // Moderating others' reported direct messages is not a profile edit away, in any case.
    for (const name of [`MOD_${process.pid}`, `ladmin_${process.pid}`]) expect(codeOf(await gql(s.url, UPDATE, { u: name }, u.token))).toBe('CONFLICT');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    // Dots inside a name are fine; a configured name is taken by signing up, and kept by its holder.
    expect((await ok(gql(s.url, UPDATE, { u: `a.b_${process.pid}` }, u.token))).updateProfile.username).toBe(`a.b_${process.pid}`);
    const mod = await signup(s.url, { username: `mod_${process.pid}` });
    expect((await ok(gql(s.url, UPDATE, { u: `Mod_${process.pid}` }, mod.token))).updateProfile.username).toBe(`Mod_${process.pid}`);

    // A lobby admin by name who renames away is a member again at once, and the name given up is
    // taken by no one (its rights went to whoever signed up first under it: a security review);
    // nor the name of a moderator who deleted their account.
    const lobbyRole = async (token: string) => (await ok(gql(s.url, '{ groups(first: 50) { edges { node { isLobby myRole } } } }', {}, token))).groups.edges.find((e: any) => e.node.isLobby).node.myRole;
    const admin = await signup(s.url, { username: `ladmin_${process.pid}` });
    expect(await lobbyRole(admin.token)).toBe('ADMIN');
    await ok(gql(s.url, UPDATE, { u: `former_${process.pid}` }, admin.token));
    expect(await lobbyRole(admin.token)).toBe('MEMBER');
    await ok(gql(s.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: mod.password }, mod.token));
    const rest = await snapshot(s.env.DATABASE_URL!);
    for (const name of [`ladmin_${process.pid}`, `LADMIN_${process.pid}`, `mod_${process.pid}`]) {
      const r = await gql(s.url, SIGNUP, { u: name, p: 'long enough pass' });
      expect([codeOf(r), r.errors?.[0].extensions?.field]).toEqual(['CONFLICT', 'username']);
    }
    expect(codeOf(await gql(s.url, UPDATE, { u: `ladmin_${process.pid}` }, admin.token))).toBe('CONFLICT');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(rest);
    // An unlisted name given up is free again, as ever.
    await ok(gql(s.url, UPDATE, { u: `former2_${process.pid}` }, admin.token));
    expect((await ok(gql(s.url, UPDATE, { u: `former_${process.pid}` }, u.token))).updateProfile.username).toBe(`former_${process.pid}`);
    // The next start says which listed names no account holds: retired ones, and ones anyone may take.
    const next = await createTestServer({ MODERATORS: `mod_${process.pid}, spare_${process.pid}`, LOBBY_ADMINS: `ladmin_${process.pid}` }, { clean: false, captureLogs: true });
    const warned = (msg: RegExp) => next.logs.find((l) => msg.test(String(l.json.msg)))?.json.names;
    expect(warned(/no one can take it again/)?.sort()).toEqual([`ladmin_${process.pid}`, `mod_${process.pid}`]);
    expect(warned(/whoever signs up under it first/)).toEqual([`spare_${process.pid}`]);
  });

  it('should find users by search with keyset paging', async () => {
    const s = await createTestServer();
    const me = await signup(s.url, { username: 'zed_viewer' });
    for (const n of ['pat_1', 'pat_2', 'pat_3', 'pat_4', 'other']) await signup(s.url, { username: n });
    const Q = 'query($s: String, $f: Int, $a: String) { users(search: $s, first: $f, after: $a) { totalCount pageInfo { hasNextPage endCursor } edges { node { username } } } }';
    const p1 = await ok(gql(s.url, Q, { s: 'pat_', f: 3 }, me.token));
    expect(p1.users.totalCount).toBe(4);
    expect(p1.users.edges.map((e: any) => e.node.username)).toEqual(['pat_1', 'pat_2', 'pat_3']);
    expect(p1.users.pageInfo.hasNextPage).toBe(true);
    const p2 = await ok(gql(s.url, Q, { s: 'pat_', f: 3, a: p1.users.pageInfo.endCursor }, me.token));
    expect(p2.users.edges.map((e: any) => e.node.username)).toEqual(['pat_4']);
    expect(p2.users.pageInfo.hasNextPage).toBe(false);
    expect(codeOf(await gql(s.url, Q, { a: 'forged' }, me.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, Q, { f: 1000 }, me.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, Q, {}))).toBe('UNAUTHENTICATED');
  });

  it('should find users and groups by name as a reader types it: accents, case, final sigma and vowel marks aside', async () => {
    const s = await createTestServer();
    const me = await signup(s.url);
    const names = ['Jürgen Müller', 'ΣΩΚΡΆΤΗΣ', 'مُحَمَّد', 'שָׁלוֹם עליכם', 'İZMİR', 'Ёлкин', 'Back∖slash', '100％ sure'];
    const ids: Record<string, string> = {};
    for (const displayName of names) ids[displayName] = (await signup(s.url, { displayName })).id;
    const groups: Record<string, string> = {};
    for (const name of ['Café Société', 'Straßenfest', 'Ελληνικά']) groups[name] = (await ok(gql(s.url, 'mutation($n: String!) { createGroup(name: $n) { id } }', { n: name }, me.token))).createGroup.id;
    const users = async (q: string) => (await ok(gql(s.url, 'query($s: String) { users(search: $s) { totalCount edges { node { id } } } }', { s: q }, me.token))).users;
    const found = async (q: string) => (await users(q)).edges.map((e: any) => e.node.id);
    const inGroups = async (q: string) => (await ok(gql(s.url, 'query($s: String) { groups(search: $s) { edges { node { id } } } }', { s: q }, me.token))).groups.edges.map((e: any) => e.node.id);
    // Before, each of these found nothing: ilike minds accents, a final sigma and vowel marks (an outside probe).
    for (const [q, name] of [['jurgen', 'Jürgen Müller'], ['MULLER', 'Jürgen Müller'], ['σωκρατης', 'ΣΩΚΡΆΤΗΣ'], ['Σωκράτη', 'ΣΩΚΡΆΤΗΣ'], ['محمد', 'مُحَمَّد'], ['שלום', 'שָׁלוֹם עליכם'], ['izmir', 'İZMİR'], ['елкин', 'Ёлкин']]) {
      expect([q, await found(q)]).toEqual([q, [ids[name]]]);
    }
    for (const [q, name] of [['cafe soc', 'Café Société'], ['strassenfest', 'Straßenfest'], ['ελληνικα', 'Ελληνικά']]) expect([q, await inGroups(q)]).toEqual([q, [groups[name]]]);
    // The count counts the same; a LIKE wildcard is still a character, and a name that is not there matches nothing.
    expect((await users('jurgen')).totalCount).toBe(1);
    expect(await found('j%n')).toEqual([]);
    // Folded, a fullwidth ％ or ＿ is a % or _, and ＼ or ∖ a backslash: characters too, never a
    // wildcard or an escape (folded after the escaping, ％％％ found everyone: an outside probe).
    for (const q of ['％％％', '＿＿＿', 'a＿b', '100% s']) expect([q, await found(q)]).toEqual([q, q === '100% s' ? [ids['100％ sure']] : []]);
    expect(await found('k∖sl')).toEqual([ids['Back∖slash']]);
    expect(await found('0％ s')).toEqual([ids['100％ sure']]);
    expect(await inGroups('zzz_none')).toEqual([]);
    // Marks alone fold to nothing: they found every name (an outside probe); now only names holding them.
    expect(await found('\u0301\u0301\u0301')).toEqual([]);
    expect(await inGroups('\u0301\u0301\u0301')).toEqual([]);
    expect(await found('\u05b8\u05c1\u05b9')).toEqual([]);
    // NULs alone are no search, for users and groups alike (every user and no group before);
    // half a surrogate pair is refused, as searchMessages refuses it (an outside probe).
    expect((await users('\u0000')).totalCount).toBe((await users('')).totalCount);
    expect(await inGroups('\u0000\u0000')).toEqual(await inGroups(''));
    for (const q of ['ab\ud800cd', '\udc00']) {
      for (const field of ['users', 'groups']) {
        const r = await gql(s.url, `query($s: String) { ${field}(search: $s) { totalCount } }`, { s: q }, me.token);
        expect([field, codeOf(r), r.errors?.[0]?.extensions?.field]).toEqual([field, 'BAD_USER_INPUT', 'search']);
      }
    }
  });

  it('should delete an account: password required, tokens revoked, name freed, gone from search', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const other = await signup(s.url);
    const DEL = 'mutation($p: String!) { deleteAccount(password: $p) }';
    expect(codeOf(await gql(s.url, DEL, { p: 'wrong-password' }, u.token))).toBe('BAD_USER_INPUT');
    expect((await ok(gql(s.url, ME, {}, u.token))).me.id).toBe(u.id);
    expect((await ok(gql(s.url, DEL, { p: u.password }, u.token))).deleteAccount).toBe(true);
    expect(codeOf(await gql(s.url, ME, {}, u.token))).toBe('UNAUTHENTICATED');
    expect(codeOf(await attempt(s.url, LoginDocument, { username: u.username, password: u.password }))).toBe('UNAUTHENTICATED');
    const search = await ok(gql(s.url, '{ users(search: "") { totalCount edges { node { id } } } }', {}, other.token));
    expect(search.users.edges.map((e: any) => e.node.id)).not.toContain(u.id);
    expect((await ok(gql(s.url, 'query($id: ID!) { user(id: $id) { id } }', { id: u.id }, other.token))).user).toBeNull();
    // Gone for presence too, as for an id that never was.
    expect(codeOf(await gql(s.url, 'query($id: ID!) { userStatus(userId: $id) { status } }', { id: u.id }, other.token))).toBe('NOT_FOUND');
    const [sessions] = await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from sessions where user_id = $1', [u.id]);
    expect(sessions.n).toBe(0);
    // The name is free again.
    await request(s.url, SignupDocument, { username: u.username, password: 'another-password' });
  });

  it('should reject hostile input in every string argument and write nothing', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const before = await snapshot(s.env.DATABASE_URL!);
    for (const bad of HOSTILE_STRINGS) {
      // A login that names no account is UNAUTHENTICATED like any failed login; the rest is bad input.
      const attempts: [string, Promise<GqlResult>, string][] = [
        ['signup username', attempt(s.url, SignupDocument, { username: bad, password: 'password123' }), 'BAD_USER_INPUT'],
        ['signup password', attempt(s.url, SignupDocument, { username: 'fine_name', password: bad.length >= 8 && bad.length <= 256 ? 'x' : bad }), 'BAD_USER_INPUT'],
        ['login', attempt(s.url, LoginDocument, { username: bad, password: bad }), 'UNAUTHENTICATED'],
        ['updateProfile', gql(s.url, 'mutation($u: String) { updateProfile(username: $u) { id } }', { u: bad }, u.token), 'BAD_USER_INPUT'],
        ['deleteAccount', gql(s.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: bad }, u.token), 'BAD_USER_INPUT'],
      ];
      for (const [what, r, code] of attempts) expect([what, bad, codeOf(await r)]).toEqual([what, bad, code]);
      const search = await gql(s.url, 'query($s: String) { users(search: $s) { totalCount } }', { s: bad }, u.token);
      if (search.errors) expect(codeOf(search)).toBe('BAD_USER_INPUT');
      else expect(search.data!.users.totalCount).toBeLessThanOrEqual(1);
    }
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
  });

  it('should answer a logout and a deleteAccount sent over a socket before closing that socket with 4403', async () => {
    const s = await createTestServer();
    for (const [query, variables] of [['mutation { logout }', {}], ['mutation($p: String!) { deleteAccount(password: $p) }', null]] as const) {
      const u = await signup(s.url);
      const w = wsClient(s.wsUrl, u.token);
      await w.connected;
      const answer = await w.client.iterate({ query, variables: variables ?? { p: u.password } }).next();
      // Closed under it, the client saw only the close and could not tell it had succeeded.
      expect(Object.values((answer.value as any).data)).toEqual([true]);
      expect((await w.closed).code).toBe(4403);
      expect(codeOf(await gql(s.url, '{ me { id } }', {}, u.token))).toBe('UNAUTHENTICATED');
    }
  });

  it("should stop a socket's subscriptions once its session ends, though the close waits for an operation of its own", async () => {
    const s = await createTestServer();
    const [u, c] = [await signup(s.url), await signup(s.url)];
    const lobby = await lobbyOf(s.url, u.token);
    const w = wsClient(s.wsUrl, u.token);
    await w.connected;
    const live = subscribe(w, 'subscription($g: ID) { messageAdded(conversation: { groupId: $g }) { content } }', { g: lobby });
    await running(s, 'messageAdded', 1);
    const mine = (await ok(gql(s.url, 'mutation($g: ID!) { sendMessage(input: { groupId: $g, content: "mine" }) { id } }', { g: lobby }, u.token))).sendMessage;
    await live.nth(1);
    // An edit of its own in flight on the socket, held on its row: the close waits for its answer (up to 2 s).
    const holder = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await holder.connect();
    await holder.query('begin');
    await holder.query('select 1 from messages where id = $1 for update', [mine.id]);
    const editing = w.client.iterate({ query: 'mutation($m: ID!) { editMessage(messageId: $m, content: "edited") { id } }', variables: { m: mine.id } }).next().catch(() => undefined);
    await eventually(async () => (await sql(s.env.DATABASE_URL!, 'select 1 from pg_locks where not granted')).length > 0);
    await ok(gql(s.url, 'mutation { logout }', {}, u.token));
    // Sent after the revocation: none reaches the revoked socket (an outside probe: all did, for up to 2 s).
    for (const n of [1, 2, 3]) await ok(gql(s.url, 'mutation($g: ID!, $t: String!) { sendMessage(input: { groupId: $g, content: $t }) { id } }', { g: lobby, t: `after ${n}` }, c.token));
    await sleep(300);
    await holder.query('commit');
    await holder.end();
    await editing;
    expect((await w.closed).code).toBe(4403);
    expect(live.values.map((v: any) => v.messageAdded.content)).toEqual(['mine']);
  });
});

describeRedis('logoutOtherSessions', () => {
  it("should revoke every other token of the account on every instance, keep this one, and not let theirs keep the user ONLINE", async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const LOGOUT_OTHERS = 'mutation($p: String!) { logoutOtherSessions(password: $p) }';
    const [u, watcher] = [await signup(a.url), await signup(a.url)];
    const [phone, laptop] = [await login(a.url, u), await login(b.url, u)];
    const onB = wsClient(b.wsUrl, laptop);
    await onB.connected;
    // A token alone (a stolen one) can't: the password is asked, and a wrong one revokes nothing.
    const before = await snapshot(a.env.DATABASE_URL!);
    for (const p of ['', 'not the password']) {
      const r = await gql(a.url, LOGOUT_OTHERS, { p }, u.token);
      expect([codeOf(r), r.errors?.[0].extensions?.field]).toEqual(['BAD_USER_INPUT', 'password']);
    }
    expect(await snapshot(a.env.DATABASE_URL!)).toEqual(before);
    expect((await ok(gql(a.url, LOGOUT_OTHERS, { p: u.password }, u.token))).logoutOtherSessions).toBe(2);
    // The other instance's socket closes, and neither token reads anything there or here.
    expect((await onB.closed).code).toBe(4403);
    // Once that instance has let the socket go (its close handler runs after the frame went out).
    await eventually(() => !b.services.presence.hasSocket(u.id));
    for (const [url, token] of [[a.url, phone], [b.url, laptop], [b.url, phone]]) expect(codeOf(await gql(url, ME, {}, token))).toBe('UNAUTHENTICATED');
    expect((await ok(gql(b.url, ME, {}, u.token))).me.id).toBe(u.id);
    expect((await ok(gql(a.url, LOGOUT_OTHERS, { p: u.password }, u.token))).logoutOtherSessions).toBe(0);
    // A session that expired is no session to end: removed, not counted (an outside probe: counted as one).
    const ran = await login(a.url, u);
    await sql(a.env.DATABASE_URL!, "update sessions set expires_at = now() - interval '1 minute' where user_id = $1 and created_at = (select max(created_at) from sessions where user_id = $1)", [u.id]);
    expect(codeOf(await gql(a.url, ME, {}, ran))).toBe('UNAUTHENTICATED');
    expect((await ok(gql(a.url, LOGOUT_OTHERS, { p: u.password }, u.token))).logoutOtherSessions).toBe(0);
    expect(await sql(a.env.DATABASE_URL!, 'select count(*)::int as n from sessions where user_id = $1', [u.id])).toEqual([{ n: 1 }]);
    // The revoked sessions' activity is gone with them: this session's logout is OFFLINE at once.
    const status = async () => (await ok(gql(a.url, 'query($id: ID!) { userStatus(userId: $id) { status } }', { id: u.id }, watcher.token))).userStatus.status;
    expect(await status()).toBe('ONLINE');
    await ok(gql(a.url, 'mutation { logout }', {}, u.token));
    expect(await status()).toBe('OFFLINE');
    expect(codeOf(await gql(a.url, LOGOUT_OTHERS, { p: u.password }, u.token))).toBe('UNAUTHENTICATED');
  });

  it("should end the revoked sessions on an instance cut off from Redis too: its socket within seconds, its token at once", async () => {
    await throughRedisProxy(async (proxy, proxiedUrl) => {
      // A reaches Redis through the proxy; B, where the revocation is made, directly.
      const a = await createTestServer({ REDIS_URL: proxiedUrl });
      const b = await createTestServer({}, { clean: false });
      const u = await signup(b.url);
      const stolen = await login(a.url, u);
      // Used on A (its session cached there), a socket open there too.
      expect((await ok(gql(a.url, ME, {}, stolen))).me.id).toBe(u.id);
      const onA = wsClient(a.wsUrl, stolen);
      await onA.connected;
      await proxy.cut();
      await eventually(() => a.services.pubsub.offRedis());
      expect((await ok(gql(b.url, 'mutation($p: String!) { logoutOtherSessions(password: $p) }', { p: u.password }, u.token))).logoutOtherSessions).toBe(1);
      // The revocation's publish can't reach A: A asks the database while off Redis.
      expect(codeOf(await gql(a.url, ME, {}, stolen))).toBe('UNAUTHENTICATED');
      expect(codeOf(await gql(a.url, 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }', { i: { groupId: await lobbyOf(b.url, u.token), content: 'stolen' } }, stolen))).toBe('UNAUTHENTICATED');
      const closed = await Promise.race([onA.closed.then((c) => c.code), new Promise((r) => setTimeout(() => r('still open'), 8000))]);
      expect(closed).toBe(4403);
      // The session left standing still reads on A.
      expect((await ok(gql(a.url, ME, {}, u.token))).me.id).toBe(u.id);
    });
  }, 30_000);

  it('should leave one session standing when two ask at once, each on an instance: the other is told UNAUTHENTICATED', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const LOGOUT_OTHERS = 'mutation($p: String!) { logoutOtherSessions(password: $p) }';
    for (let round = 0; round < 3; round++) {
      const u = await signup(a.url);
      const other = await login(b.url, u);
      // Before: each revoked the other, and the account was left with no session, both told theirs stayed.
      const answers = await Promise.all([gql(a.url, LOGOUT_OTHERS, { p: u.password }, u.token), gql(b.url, LOGOUT_OTHERS, { p: u.password }, other)]);
      expect(answers.map((r) => r.data?.logoutOtherSessions ?? codeOf(r)).sort()).toEqual([1, 'UNAUTHENTICATED']);
      const standing = answers[0].data?.logoutOtherSessions === 1 ? u.token : other;
      for (const [token, code] of [[u.token, standing === u.token ? undefined : 'UNAUTHENTICATED'], [other, standing === other ? undefined : 'UNAUTHENTICATED']]) {
        expect(codeOf(await gql(a.url, ME, {}, token))).toBe(code);
      }
    }
  });
});

describe('authenticated sockets', () => {
  it('should close a socket without a token or with a bad one with 4403', async () => {
    const s = await createTestServer();
    expect(await rawSocket(s.wsUrl, {}).closed).toBe(4403);
    expect(await rawSocket(s.wsUrl, { token: 'not-a-token' }).closed).toBe(4403);
    expect(await rawSocket(s.wsUrl, { authorization: 'Bearer nope' }).closed).toBe(4403);
  });

  it('should accept the token as authorization, as token, or in the upgrade header', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    expect(await rawSocket(s.wsUrl, { authorization: `Bearer ${u.token}` }).acked).toBe(true);
    expect(await rawSocket(s.wsUrl, { token: u.token }).acked).toBe(true);
    expect(await rawSocket(s.wsUrl, {}, { authorization: `Bearer ${u.token}` }).acked).toBe(true);
    // An empty one (a client's unset header) is none: the next one given is read.
    expect(await rawSocket(s.wsUrl, { authorization: '', token: u.token }).acked).toBe(true);
    expect(await rawSocket(s.wsUrl, { authorization: '' }, { authorization: `Bearer ${u.token}` }).acked).toBe(true);
    expect(await rawSocket(s.wsUrl, { authorization: '' }).acked).toBe(false);
  });

  it('should close the sockets of a token when it is revoked, and only those', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const other = await login(s.url, u);
    const a = wsClient(s.wsUrl, u.token);
    const b = wsClient(s.wsUrl, other);
    await Promise.all([a.connected, b.connected]);
    const started = Date.now();
    await ok(gql(s.url, 'mutation { logout }', {}, u.token));
    expect((await a.closed).code).toBe(4403);
    expect(Date.now() - started).toBeLessThan(1000);
    // The other socket still answers, after the revocation was handled.
    expect(await subscribe(b, '{ me { id } }').nth(1)).toEqual({ me: { id: u.id } });
    await ok(gql(s.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: u.password }, other));
    expect((await b.closed).code).toBe(4403);
  });
});

describeRedis('authentication across instances', () => {
  it('should close a socket on instance B when its token is revoked on instance A', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const u = await signup(a.url);
    const onB = wsClient(b.wsUrl, u.token);
    await onB.connected;
    // B has the token cached now; revocation must reach its cache too.
    expect((await ok(gql(b.url, ME, {}, u.token))).me.id).toBe(u.id);
    const started = Date.now();
    await ok(gql(a.url, 'mutation { logout }', {}, u.token));
    expect((await onB.closed).code).toBe(4403);
    expect(Date.now() - started).toBeLessThan(1000);
    await eventually(async () => codeOf(await gql(b.url, ME, {}, u.token)) === 'UNAUTHENTICATED', 1000);
  });
});
