import { codeOf, gql, ok, subscribe, wsClient } from './helpers/graphql';
import { signup, type TestUser } from './helpers/factories';
import { createTestServer, type LogLine, type TestServer } from './helpers/server';
import { snapshot, sql } from './helpers/db';

const INTROSPECTION = '{ __schema { queryType { name } types { name } } }';
const TYPO = '{ me { usernam } }';

/** A production server whose log lines are kept, to check what is logged (and what is not answered). */
async function productionServer(overrides: Record<string, string> = {}): Promise<{ server: TestServer; lines: LogLine[]; url: string }> {
  const server = await createTestServer({ NODE_ENV: 'production', ...overrides }, { captureLogs: true });
  return { server, lines: server.logs, url: server.url };
}

describe('production mode', () => {
  let url: string;
  let wsUrl: string;
  let lines: LogLine[];
  let u: TestUser;
  beforeEach(async () => {
    const p = await productionServer();
    url = p.url;
    wsUrl = p.server.wsUrl;
    lines = p.lines;
    u = await signup(url);
  });

  it('should refuse introspection over HTTP and WebSocket, and still answer __typename', async () => {
    const r = await gql(url, INTROSPECTION, {}, u.token);
    expect(r.status).toBe(400);
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
    expect(r.data).toBeUndefined();
    expect(JSON.stringify(r.errors)).toMatch(/introspection/i);
    // The setting to name is this server's, not the library's option.
    expect(r.errors![0].message).toMatch(/ENABLE_INTROSPECTION/);
    expect(JSON.stringify(r.errors)).not.toMatch(/ApolloServer/);
    expect((await ok(gql(url, '{ __typename }'))).__typename).toBe('Query');

    const w = wsClient(wsUrl, u.token);
    await w.connected;
    const sub = subscribe(w, INTROSPECTION);
    await sub.done;
    expect(sub.values).toEqual([]);
    // In the same words and with the same code as over HTTP: one error for __schema, none for the fields under it.
    const errors = (sub.errors as unknown[]).flat();
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ message: r.errors![0].message, extensions: { code: 'BAD_USER_INPUT' } });
  });

  it('should not suggest field names ("Did you mean") over HTTP or WebSocket', async () => {
    for (const doc of [TYPO, 'mutation { sendMesage(input: { content: "x" }) { id } }', '{ users(serch: "a") { totalCount } }']) {
      const r = await gql(url, doc, {}, u.token);
      expect(codeOf(r)).toBe('BAD_USER_INPUT');
      expect(JSON.stringify(r.errors)).not.toMatch(/Did you mean/i);
    }
    const w = wsClient(wsUrl, u.token);
    await w.connected;
    const sub = subscribe(w, TYPO);
    await sub.done;
    expect(JSON.stringify(sub.errors)).toMatch(/usernam/);
    expect(JSON.stringify(sub.errors)).not.toMatch(/Did you mean/i);
    // Variables name input fields too, and are checked when the operation runs.
    const misspelt = { query: 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }', variables: { i: { contnt: 'x' } } };
    const r = await gql(url, misspelt.query, misspelt.variables, u.token);
    expect(JSON.stringify(r.errors)).toMatch(/contnt/);
    expect(JSON.stringify(r.errors)).not.toMatch(/Did you mean/i);
    // Cut whole: a plugin's cut left the `?` behind (`…not defined by type "SendMessageInput". ?`: an outside probe).
    expect(r.errors![0].message).toMatch(/by type "SendMessageInput"\.$/);
    const viaWs = subscribe(w, misspelt.query, misspelt.variables);
    await viaWs.done;
    expect(JSON.stringify(viaWs.errors)).toMatch(/contnt/);
    expect(JSON.stringify(viaWs.errors)).not.toMatch(/Did you mean/i);
    // An enum value in a variable would name the enum's values (over HTTP too, whichever path answers).
    for (let i = 0; i < 3; i++) {
      const enumTypo = await gql(url, 'mutation($v: PresenceVisibility!) { setPresenceVisibility(visibility: $v) { id } }', { v: 'HIDEN' }, u.token);
      expect(JSON.stringify(enumTypo.errors)).toMatch(/HIDEN/);
      expect(JSON.stringify(enumTypo.errors)).not.toMatch(/Did you mean|HIDDEN/i);
    }
  });

  it('should mask an internal error (no message, stack or SQL) and log it with the request id', async () => {
    const db = process.env.DATABASE_URL!;
    await sql(db, 'alter table groups rename to groups_hidden');
    try {
      // Twice: a query's later runs are compiled (graphql-jit) and must be masked and logged alike.
      for (const requestId of ['req-mask-1', 'req-mask-2']) {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}`, 'x-request-id': requestId },
          body: JSON.stringify({ query: '{ groups { totalCount edges { node { id name } } } }' }),
        });
        const text = await res.text();
        const body = JSON.parse(text);
        expect([requestId, res.status]).toEqual([requestId, 200]);
        expect(body.errors[0].message).toBe('Internal server error');
        expect(body.errors[0].extensions.code).toBe('INTERNAL_SERVER_ERROR');
        expect(body.errors[0].extensions.requestId).toBe(requestId);
        expect(text).not.toMatch(/stack|stacktrace|select |from "|relation|groups_hidden|\bat \w+ \(/i);

        const logged = lines.find((l) => l.json.msg === 'unexpected error' && l.json.requestId === requestId)?.json;
        expect(logged).toBeDefined();
        expect(JSON.stringify(logged!.err)).toMatch(/relation .*groups.* does not exist/);
      }

      // The same over the socket.
      const w = wsClient(wsUrl, u.token);
      await w.connected;
      const sub = subscribe(w, '{ groups { totalCount } }');
      await sub.done;
      const wsText = JSON.stringify(sub.errors);
      expect(wsText).toMatch(/Internal server error/);
      expect(wsText).toMatch(/INTERNAL_SERVER_ERROR/);
      expect(wsText).not.toMatch(/stack|select |relation|groups_hidden/i);
    } finally {
      await sql(db, 'alter table groups_hidden rename to groups');
    }
  });

  it('should turn CSRF prevention on: simple requests that a form or an <img> could send are refused', async () => {
    const before = await snapshot(process.env.DATABASE_URL!);
    const form = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'text/plain', authorization: `Bearer ${u.token}` },
      body: JSON.stringify({ query: 'mutation { createGroup(name: "csrf") { id } }' }),
    });
    expect(form.status).toBe(400);
    expect(await form.text()).toMatch(/CSRF|preflight/i);
    const urlencoded = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'query=mutation%20%7B%20logout%20%7D',
    });
    expect(urlencoded.status).toBe(400);
    const get = await fetch(`${url}?query=${encodeURIComponent('{ me { id } }')}`, { headers: { authorization: `Bearer ${u.token}` } });
    expect(get.status).toBe(400);
    expect(await get.text()).toMatch(/CSRF|preflight/i);
    expect(await snapshot(process.env.DATABASE_URL!)).toEqual(before);
    // A GET that shows it is not a simple request is served.
    const preflighted = await fetch(`${url}?query=${encodeURIComponent('{ me { id } }')}`, { headers: { authorization: `Bearer ${u.token}`, 'apollo-require-preflight': 'true' } });
    expect(((await preflighted.json()) as any).data.me.id).toBe(u.id);
  });

  it('should tell no browser or proxy to keep any answer of /graphql (Cache-Control: no-store), a token or a user\'s data in it', async () => {
    const post = (query: string, token?: string, variables: Record<string, unknown> = {}) =>
      fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify({ query, variables }) });
    const answers: Response[] = [];
    // Apollo's answers, then the same document's on the fast path (compiled on its second use).
    for (let i = 0; i < 4; i++) answers.push(await post('{ me { id username } }', u.token));
    answers.push(await post('mutation($u: String!, $p: String!) { signup(username: $u, password: $p) { token } }', undefined, { u: `nostore_${process.pid}_${Date.now()}`, p: 'a-long-password-1' }));
    answers.push(await fetch(`${url}?query=${encodeURIComponent('{ me { id } }')}`, { headers: { authorization: `Bearer ${u.token}`, 'apollo-require-preflight': 'true' } }));
    answers.push(await post('{ me { id } }', 'not-a-token'));
    answers.push(await post('{ me { nope } }', u.token));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200, 401, 400]);
    expect(answers.map((r) => r.headers.get('cache-control'))).toEqual(Array(answers.length).fill('no-store'));
  });
});

describe('production mode with ENABLE_INTROSPECTION', () => {
  it('should allow introspection and suggestions when asked for', async () => {
    const { url } = await productionServer({ ENABLE_INTROSPECTION: 'true' });
    const d = await ok(gql(url, INTROSPECTION));
    expect(d.__schema.queryType.name).toBe('Query');
    const u = await signup(url);
    expect(JSON.stringify((await gql(url, TYPO, {}, u.token)).errors)).toMatch(/Did you mean .*username/);
  });
});

describe('outside production', () => {
  it('should keep introspection on by default (development tools rely on it)', async () => {
    const s = await createTestServer();
    expect((await ok(gql(s.url, INTROSPECTION))).__schema.types.length).toBeGreaterThan(10);
  });
});
