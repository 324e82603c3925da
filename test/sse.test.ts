import { execFileSync } from 'node:child_process';
import { request } from 'node:http';
import pg from 'pg';
import { join } from 'node:path';
import { build } from 'esbuild';
import { createClient, type Client } from 'graphql-sse';
import { streamMessages } from '../examples/clients/sse';
import { launchChromium } from './helpers/browser';
import { eventually, gql, ok, running, subscribe, wsClient } from './helpers/graphql';
import { buildProject, lobbyOf, signup, sendMessage, buildGroup } from './helpers/factories';
import { createTestServer, describeRedis, type TestServer } from './helpers/server';
import { sql } from './helpers/db';
import { proxiedDatabase } from './helpers/tcp-proxy';
import { describeNeeding, tools } from './helpers/tools';

const MESSAGES = 'subscription($g: ID) { messageAdded(conversation: { groupId: $g }) { content sender { username } } }';
const ALL_MESSAGES = 'subscription { messageAdded { content } }';
const ACTIONS = 'subscription { projectAction { kind message } }';
const TICKET = 'mutation { streamTicket }';

const streamUrl = (s: TestServer) => `${s.url}/stream`;

const clients = new Set<Client>();
afterEach(() => {
  for (const c of clients) c.dispose();
  clients.clear();
});

/** A graphql-sse client (distinct connections mode) on Node's fetch, subscribed to `query`. */
function sseSubscribe<T = any>(s: TestServer, token: string, query: string, variables?: Record<string, unknown>) {
  const client = createClient({ url: streamUrl(s), fetchFn: fetch, retryAttempts: 0, headers: { authorization: `Bearer ${token}` } });
  clients.add(client);
  return subscribe<T>({ client }, query, variables);
}

describe('SSE transport (/graphql/stream)', () => {
  it('should stream messageAdded and projectAction to the graphql-sse client, from the same execution and bytes as the WebSocket', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const lobby = await lobbyOf(s.url, bob.token);
    const messages = sseSubscribe(s, bob.token, MESSAGES, { g: lobby });
    const actions = sseSubscribe(s, bob.token, ACTIONS);
    // The same document on a WebSocket: one execution serves both.
    const w = wsClient(s.wsUrl, alice.token);
    await w.connected;
    const onSocket = subscribe(w, MESSAGES, { g: lobby });
    await running(s, 'messageAdded', 2);
    await running(s, 'projectAction', 1);

    const before = s.fanout.executions;
    await sendMessage(s.url, alice.token, { groupId: lobby, content: 'over SSE' });
    const expected = { messageAdded: { content: 'over SSE', sender: { username: alice.username } } };
    expect(await messages.nth(1)).toEqual(expected);
    expect(await onSocket.nth(1)).toEqual(expected);
    expect(s.fanout.executions - before).toBe(1);

    await buildProject(s.url, alice, { title: 'Apollo', participants: [bob] });
    expect(await actions.nth(1)).toEqual({ projectAction: { kind: 'ADDED_TO_PROJECT', message: expect.stringContaining('Apollo') } });

    messages.stop();
    actions.stop();
    await running(s, 'messageAdded', 1);
    await running(s, 'projectAction', 0);
  });

  it.each([
    ['in Redis', {}],
    ['in memory', { REDIS_URL: '' }],
  ])('should refuse a stream without a valid token or ticket with 401, and take a ticket (kept %s) once', async (_, store) => {
    const s = await createTestServer(store);
    const u = await signup(s.url);
    const get = (qs: string, headers: Record<string, string> = {}) =>
      fetch(`${streamUrl(s)}?query=${encodeURIComponent(ALL_MESSAGES)}${qs}`, { headers: { accept: 'text/event-stream', ...headers } });
    const refused = async (res: Response, message: RegExp) => {
      expect(res.status).toBe(401);
      const e = ((await res.json()) as any).errors[0];
      expect(e.extensions.code).toBe('UNAUTHENTICATED');
      expect(e.message).toMatch(message);
    };
    // Told to send a token when none came; told it is no good when one did.
    await refused(await get(''), /^Send your bearer token/);
    await refused(await get('&ticket=not-a-ticket'), /invalid, expired or revoked/);
    await refused(await get('', { authorization: 'Bearer not-a-token' }), /invalid, expired or revoked/);
    // A ticket needs a signed-in caller.
    expect((await gql(s.url, TICKET)).errors?.[0].extensions?.code).toBe('UNAUTHENTICATED');

    const ticket = (await ok(gql(s.url, TICKET, {}, u.token))).streamTicket as string;
    // A request the stream can't answer (it asks for JSON) is refused without spending the ticket.
    expect((await get(`&ticket=${encodeURIComponent(ticket)}`, { accept: 'application/json' })).status).toBe(406);
    // So is a POST whose body is not sent as JSON: without a type it opened a stream, where /graphql
    // refuses it; as text, it was 415 with the ticket spent (outside probes).
    for (const body of [JSON.stringify({ query: ALL_MESSAGES }), Buffer.from(JSON.stringify({ query: ALL_MESSAGES }))]) {
      const untyped = await fetch(`${streamUrl(s)}?ticket=${encodeURIComponent(ticket)}`, { method: 'POST', headers: { accept: 'text/event-stream' }, body });
      const e = ((await untyped.json()) as any).errors[0];
      expect([untyped.status, e.extensions.code, e.message]).toEqual([415, 'BAD_USER_INPUT', 'Send the request body as JSON (Content-Type: application/json).']);
    }
    // JSON in capitals is JSON, as on /graphql (it passed the check above, then graphql-sse refused it with the ticket spent).
    const capitals = await fetch(`${streamUrl(s)}?ticket=${encodeURIComponent(ticket)}`, { method: 'POST', headers: { accept: 'text/event-stream', 'content-type': 'APPLICATION/JSON; Charset=UTF-8' }, body: JSON.stringify({ query: '{ me { id } }' }) });
    expect([capitals.status, await capitals.text()]).toEqual([200, expect.stringContaining(u.id)]);
    const again = (await ok(gql(s.url, TICKET, {}, u.token))).streamTicket as string;
    const first = await get(`&ticket=${encodeURIComponent(again)}`);
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toMatch(/^text\/event-stream/);
    await running(s, 'messageAdded', 1);
    await refused(await get(`&ticket=${encodeURIComponent(again)}`), /invalid, expired or revoked/);
    // A body that is not JSON is told so, not answered with the parser's words.
    // So is JSON that is no object with a query (`null`, an array, `{}`).
    for (const body of ['{"query": ', 'null', '[1,2,3]', '{}']) {
      const bad = await fetch(streamUrl(s), { method: 'POST', headers: { authorization: `Bearer ${u.token}`, 'content-type': 'application/json', accept: 'text/event-stream' }, body });
      const badError = ((await bad.json()) as any).errors[0];
      expect([body, bad.status, badError.extensions.code, badError.message]).toEqual([body, 400, 'BAD_USER_INPUT', 'The request body must be a JSON object with a `query`: { "query": …, "variables": …, "operationName": … }.']);
    }
    // A GET without a query is told of its URL, not of a body it never sent.
    const noQuery = await fetch(streamUrl(s), { headers: { authorization: `Bearer ${u.token}`, accept: 'text/event-stream' } });
    expect([noQuery.status, ((await noQuery.json()) as any).errors[0].message]).toEqual([400, expect.stringMatching(/^A GET carries its operation in the URL/)]);
    // An operationName that is no string, as /graphql answers it (it was looked up as the name "5").
    const named = await fetch(streamUrl(s), { method: 'POST', headers: { authorization: `Bearer ${u.token}`, 'content-type': 'application/json', accept: 'text/event-stream' }, body: '{"query":"{ me { id } }","operationName":5}' });
    expect([named.status, ((await named.json()) as any).errors[0].extensions.code]).toEqual([400, 'BAD_USER_INPUT']);
    await first.body?.cancel();
    await running(s, 'messageAdded', 0);
  });

  it('should let a ticket read and never write, issue tickets at the streams rate, and keep none past its minute', async () => {
    const s = await createTestServer({ REDIS_URL: '', RATE_LIMIT_WS_MESSAGES: '5/1m' });
    const u = await signup(s.url);
    const ticket = async () => (await ok(gql(s.url, TICKET, {}, u.token))).streamTicket as string;
    // A ticket travels in a URL: it can't run a mutation, least of all trade itself for new tickets.
    for (const body of [{ query: TICKET }, { query: 'mutation { updateProfile(displayName: "via ticket") { id } }' }]) {
      const res = await fetch(`${streamUrl(s)}?ticket=${encodeURIComponent(await ticket())}`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: JSON.stringify(body) });
      expect([body.query, res.status, ((await res.json()) as any).errors[0].extensions.code]).toEqual([body.query, 403, 'FORBIDDEN']);
    }
    expect((await ok(gql(s.url, '{ me { displayName } }', {}, u.token))).me.displayName).toBeNull();
    // A query it reads, as an EventSource would (by GET).
    const read = await fetch(`${streamUrl(s)}?query=${encodeURIComponent('{ me { id } }')}&ticket=${encodeURIComponent(await ticket())}`, { headers: { accept: 'text/event-stream' } });
    expect([read.status, await read.text()]).toEqual([200, expect.stringContaining(u.id)]);
    // Three tickets so far, then a stream's worth each: the sixth is past RATE_LIMIT_WS_MESSAGES.
    await ticket();
    await ticket();
    const sixth = await gql(s.url, TICKET, {}, u.token);
    expect(sixth.errors?.[0].extensions?.code).toBe('RATE_LIMITED');
    // Unredeemed tickets go once expired, whether or not anyone asks for another.
    expect(s.services.tickets.held).toBe(2);
    const now = Date.now();
    const clock = jest.spyOn(Date, 'now').mockReturnValue(now + 61_000);
    try {
      expect(await s.services.tickets.redeem('not-a-ticket')).toBeNull();
      expect(s.services.tickets.held).toBe(0);
    } finally {
      clock.mockRestore();
    }
  });

  it('should end the stream when its token is revoked, and only that one', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const other = (await ok(gql(s.url, 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }', { u: u.username, p: u.password }))).login.token;
    const revoked = sseSubscribe(s, u.token, ALL_MESSAGES);
    const kept = sseSubscribe(s, other, ALL_MESSAGES);
    await running(s, 'messageAdded', 2);
    await ok(gql(s.url, 'mutation { logout }', {}, u.token));
    // An UNAUTHENTICATED result, then complete (a failed connection would add an error of its own).
    await revoked.done;
    expect(revoked.errors).toEqual([expect.objectContaining({ extensions: { code: 'UNAUTHENTICATED' } })]);
    await running(s, 'messageAdded', 1);
    await sendMessage(s.url, other, { groupId: await lobbyOf(s.url, other), content: 'still here' });
    expect(await kept.nth(1)).toEqual({ messageAdded: { content: 'still here' } });
  });

  it("should reset a stream whose reader stopped, so that neither the server's kernel keeps its unsent bytes nor the client waits for them", async () => {
    const s = await createTestServer({ WS_MAX_BUFFERED_BYTES: '65536' });
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const url = new URL('/graphql/stream', s.url);
    const body = JSON.stringify({ query: ALL_MESSAGES });
    const headers = { authorization: `Bearer ${u.token}`, 'content-type': 'application/json', accept: 'text/event-stream', 'content-length': String(body.length) };
    const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers }, resolve).on('error', reject).end(body));
    expect(res.statusCode).toBe(200);
    await running(s, 'messageAdded', 1);
    // Stop reading: the kernel buffers fill, then the server's, then it gives up on the reader.
    res.socket.pause();
    const big = 'x'.repeat(3900);
    for (let i = 0; i < 2000 && s.fanout.slowConsumersClosed === 0; i += 10) {
      await Promise.all([...Array(10).keys()].map((k) => ok(gql(s.url, 'mutation($g: ID!, $c: String!) { sendMessage(input: { groupId: $g, content: $c }) { id } }', { g: lobby, c: `${i + k} ${big}` }, u.token))));
    }
    expect(s.fanout.slowConsumersClosed).toBe(1);
    // Closed, its connection would sit in FIN-WAIT-1 with megabytes unsent (till the client read
    // them or TCP gave up); reset, the server's side is gone at once.
    await new Promise((r) => setTimeout(r, 100));
    expect(execFileSync('ss', ['-tnH', 'state', 'fin-wait-1', `( sport = :${url.port} )`], { encoding: 'utf8' }).trim()).toBe('');
    // Reading again: the connection was reset (ECONNRESET).
    const outcome = new Promise<string>((resolve) => {
      res.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      res.on('end', () => resolve('end'));
    });
    res.resume();
    res.socket.resume();
    expect(await outcome).toBe('ECONNRESET');
  }, 60_000);

  it('should not open a stream, nor run an operation, for a token revoked while its request body was on its way', async () => {
    const s = await createTestServer();
    /** POSTs `body` with `token`, its first bytes at once and the rest once the token has been revoked (logout). */
    const slowly = (path: string, token: string, body: string, accept: string) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const url = new URL(path, s.url);
        const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json', accept, 'content-length': String(Buffer.byteLength(body)) };
        const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode!, text }));
          // A stream that opened would stay open: what came within a second tells.
          setTimeout(() => (resolve({ status: res.statusCode!, text }), res.destroy()), 1000);
        });
        req.on('error', reject);
        req.write(body.slice(0, 10));
        setTimeout(() => void ok(gql(s.url, 'mutation { logout }', {}, token)).then(() => req.end(body.slice(10)), reject), 300);
      });
    const u = await signup(s.url);
    const stream = await slowly('/graphql/stream', u.token, JSON.stringify({ query: 'subscription { messageAdded { content } }' }), 'text/event-stream');
    expect([stream.status, JSON.parse(stream.text).errors[0].extensions.code]).toEqual([401, 'UNAUTHENTICATED']);
    await running(s, 'messageAdded', 0);
    // A mutation over HTTP, and over the stream endpoint, the same: refused, nothing written.
    for (const path of ['/graphql', '/graphql/stream']) {
      const v = await signup(s.url);
      const r = await slowly(path, v.token, JSON.stringify({ query: 'mutation { createGroup(name: "after logout") { id } }' }), path.endsWith('stream') ? 'text/event-stream' : 'application/json');
      expect([path, r.status]).toEqual([path, 401]);
      expect(await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from groups where owner_id = $1', [v.id])).toEqual([{ n: 0 }]);
    }
  });

  it('should answer 401, not cut the connection, to a stream whose token is revoked while its subscription is set up', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    // The stream's session reads the user's memberships as it opens: held there, its token is revoked.
    const holder = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('lock table group_members in access exclusive mode');
      const answer = fetch(streamUrl(s), {
        method: 'POST',
        headers: { authorization: `Bearer ${u.token}`, accept: 'text/event-stream', 'content-type': 'application/json' },
        body: JSON.stringify({ query: ALL_MESSAGES }),
      }).then(
        async (res) => ({ status: res.status, body: await res.text() }),
        (e: Error) => ({ status: 0, body: String((e.cause as Error | undefined)?.message ?? e) }),
      );
      await eventually(async () => (await holder.query("select 1 from pg_locks l join pg_database d on d.oid = l.database where not l.granted and d.datname = current_database() and l.relation = 'group_members'::regclass")).rows.length > 0);
      await ok(gql(s.url, 'mutation { logout }', {}, u.token));
      await holder.query('commit');
      // Before, the connection was cut without an answer: a client read a network failure and retried.
      const { status, body } = await answer;
      expect([status, JSON.parse(body).errors[0].extensions.code]).toEqual([401, 'UNAUTHENTICATED']);
    } finally {
      await holder.end();
    }
    await running(s, 'messageAdded', 0);
  });

  it('should end the stream when its token expires', async () => {
    const s = await createTestServer({ TOKEN_TTL: '3s' });
    const u = await signup(s.url);
    const stream = sseSubscribe(s, u.token, ALL_MESSAGES);
    await running(s, 'messageAdded', 1);
    await stream.done;
    expect(stream.errors).toEqual([expect.objectContaining({ message: 'Your token expired; sign in again.', extensions: { code: 'UNAUTHENTICATED' } })]);
    await running(s, 'messageAdded', 0);
  });

  it("should not stream a group's messages to a non-member", async () => {
    const s = await createTestServer();
    const [alice, carol] = [await signup(s.url), await signup(s.url)];
    const secret = (await buildGroup(s.url, alice, { name: 'Secret', isPrivate: true })).id;
    const everything = sseSubscribe(s, carol.token, ALL_MESSAGES);
    const pointed = sseSubscribe(s, carol.token, MESSAGES, { g: secret });
    // Subscribing to the group itself is refused: an error, then complete.
    await pointed.done;
    // A private group answers as one that does not exist.
    expect(pointed.errors).toEqual([expect.objectContaining({ extensions: expect.objectContaining({ code: 'NOT_FOUND' }) })]);
    await running(s, 'messageAdded', 1);
    await sendMessage(s.url, alice.token, { groupId: secret, content: 'members only' });
    await sendMessage(s.url, alice.token, { groupId: await lobbyOf(s.url, alice.token), content: 'for everyone' });
    // Events are delivered in order: once the lobby's message is in, the group's would be too.
    expect(await everything.nth(1)).toEqual({ messageAdded: { content: 'for everyone' } });
    expect(everything.values).toHaveLength(1);
  });

  it('should count a stream against the per-user connection limit with WebSockets, and as a live socket for presence', async () => {
    const s = await createTestServer({ WS_MAX_SOCKETS_PER_USER: '2', PRESENCE_GRACE: '200ms' });
    const [u, watcher, control] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const w = wsClient(s.wsUrl, u.token);
    const controlSocket = wsClient(s.wsUrl, control.token);
    await Promise.all([w.connected, controlSocket.connected]);
    const one = sseSubscribe(s, u.token, ALL_MESSAGES);
    await running(s, 'messageAdded', 1);
    const res = await fetch(streamUrl(s), {
      method: 'POST',
      headers: { authorization: `Bearer ${u.token}`, accept: 'text/event-stream', 'content-type': 'application/json' },
      body: JSON.stringify({ query: ALL_MESSAGES }),
    });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('5');
    expect(((await res.json()) as any).errors[0].extensions).toMatchObject({ code: 'RATE_LIMITED', reason: 'TOO_MANY_CONNECTIONS', retryAfter: 5 });

    // With the socket gone, the stream alone keeps the user ONLINE; without it, they go OFFLINE.
    const statusOf = async (id: string) => (await ok(gql(s.url, 'query($id: ID!) { user(id: $id) { status } }', { id }, watcher.token))).user.status;
    const status = () => statusOf(u.id);
    // A user whose only socket closes at the same time is the control: once their grace is over, so is u's.
    await Promise.all([w.dispose(), controlSocket.dispose()]);
    await eventually(async () => (await statusOf(control.id)) === 'OFFLINE');
    expect(await status()).toBe('ONLINE');
    one.stop();
    await eventually(async () => (await status()) === 'OFFLINE');
  });

  it('should not take a refused subscription request for a stream that closed: its user, active over HTTP, stays ONLINE', async () => {
    const s = await createTestServer({ PRESENCE_GRACE: '200ms' });
    const [u, watcher, control, owner] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const secret = await buildGroup(s.url, owner, { isPrivate: true });
    const statusOf = async (id: string) => (await ok(gql(s.url, 'query($id: ID!) { user(id: $id) { status } }', { id }, watcher.token))).user.status;
    await ok(gql(s.url, 'mutation { heartbeat { status } }', {}, u.token));
    const controlSocket = wsClient(s.wsUrl, control.token);
    await controlSocket.connected;
    // Not a member: refused (an error, then complete), and no subscription was ever carried.
    const refused = sseSubscribe(s, u.token, MESSAGES, { g: secret.id });
    await refused.done.catch(() => undefined);
    expect(refused.errors.map((e: any) => e.extensions?.code ?? e.message)).toEqual(['NOT_FOUND']);
    // A socket closed at the same time is the control: once its grace is over, u's would be too.
    await controlSocket.dispose();
    await eventually(async () => (await statusOf(control.id)) === 'OFFLINE');
    await new Promise((r) => setTimeout(r, 300));
    expect(await statusOf(u.id)).toBe('ONLINE');
  });

  it('should answer a query with one result then complete, and refuse a mutation over GET', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const me = sseSubscribe(s, u.token, '{ me { username } }');
    expect(await me.nth(1)).toEqual({ me: { username: u.username } });
    await me.done;
    expect(me.errors).toEqual([]);
    const res = await fetch(`${streamUrl(s)}?query=${encodeURIComponent('mutation { logout }')}`, {
      headers: { authorization: `Bearer ${u.token}`, accept: 'text/event-stream' },
    });
    expect(res.status).toBe(405);
    expect(((await res.json()) as any).errors[0].extensions.code).toBe('BAD_USER_INPUT');
    // Variables that are no JSON are named as such (graphql-sse says "Unparsable URL").
    const badVariables = await fetch(`${streamUrl(s)}?query=${encodeURIComponent('{ me { username } }')}&variables=%7Bnope`, {
      headers: { authorization: `Bearer ${u.token}`, accept: 'text/event-stream' },
    });
    expect(badVariables.status).toBe(400);
    expect(((await badVariables.json()) as any).errors[0]).toMatchObject({ message: expect.stringMatching(/variables.*JSON/), extensions: { code: 'BAD_USER_INPUT' } });

    // Any client that takes an event stream gets one (fetch sends Accept: */*); one that takes only JSON is told why not.
    const post = (headers: Record<string, string> = {}) =>
      fetch(streamUrl(s), {
        method: 'POST',
        headers: { authorization: `Bearer ${u.token}`, 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ query: '{ me { username } }' }),
      });
    const streamed = await post();
    expect(streamed.status).toBe(200);
    const text = await streamed.text();
    expect(text).toContain(`event: next\ndata: {"data":{"me":{"username":"${u.username}"}}}\n\n`);
    expect(text).toMatch(/event: complete\n/);
    const json = await post({ accept: 'application/json' });
    expect(json.status).toBe(406);
    expect(((await json.json()) as any).errors[0].extensions.code).toBe('BAD_USER_INPUT');
    // The most specific range that matches decides, and q=0 is a refusal.
    const accepts = async (accept: string) => {
      const r = await fetch(streamUrl(s), { method: 'POST', headers: { authorization: `Bearer ${u.token}`, 'content-type': 'application/json', accept }, body: JSON.stringify({ query: '{ __typename }' }) });
      await r.text();
      return r.status;
    };
    const statuses = ['text/event-stream;q=0, application/json', 'Text/Event-Stream; Q=0, */*', '*/*;q=0', 'text/*;q=0, text/event-stream', 'application/json;q=0.9, text/event-stream;q=0.1', 'text/*', '*/*;q=0.5'];
    expect(await Promise.all(statuses.map(accepts))).toEqual([406, 406, 406, 200, 200, 200, 200]);

    // graphql-sse's single connection mode (PUT to reserve a stream, DELETE to end an operation) is not served: told so, with what is.
    for (const method of ['PUT', 'DELETE']) {
      const refused = await fetch(streamUrl(s), { method, headers: { authorization: `Bearer ${u.token}` } });
      const error = ((await refused.json()) as any).errors[0];
      expect([method, refused.status, refused.headers.get('allow'), error.extensions.code, error.message]).toEqual([method, 405, 'GET, POST', 'BAD_USER_INPUT', expect.stringMatching(/distinct connections/)]);
    }

    // Counted as operations over HTTP and WebSocket are.
    const metrics = await (await fetch(s.url.replace(/\/graphql$/, '/metrics'))).text();
    expect(metrics).toContain('parley_graphql_operations_total{operation="me",type="query",code="OK"} 2');
    expect(metrics).toContain('parley_graphql_operations_total{operation="logout",type="mutation",code="BAD_USER_INPUT"} 1');
  });

  it('should run a repeated query on its compiled plan, as HTTP and WebSocket do', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const query = 'query StreamedMe { me { id username } }';
    const before = s.operations.compiled;
    for (let i = 0; i < 3; i++) {
      const me = sseSubscribe(s, u.token, query);
      expect(await me.nth(1)).toEqual({ me: { id: u.id, username: u.username } });
      await me.done;
    }
    // graphql-js answers the first; the plan compiled on the second use answers the second and third.
    expect(s.operations.compiled - before).toBe(2);
  });

  it('should answer 503 SERVICE_UNAVAILABLE while PostgreSQL is away, and hold nothing for the failed stream', async () => {
    const { proxy, url } = await proxiedDatabase();
    try {
      const s = await createTestServer({ DATABASE_URL: url, WS_MAX_SOCKETS_PER_USER: '1' });
      const u = await signup(s.url);
      // A token never used yet must be looked up; one already used is cached, but its memberships must load.
      const fresh = (await ok(gql(s.url, 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }', { u: u.username, p: u.password }))).login.token;
      await ok(gql(s.url, '{ me { id } }', {}, u.token));
      await proxy.cut();
      for (const token of [fresh, u.token]) {
        const res = await fetch(`${streamUrl(s)}?query=${encodeURIComponent(ALL_MESSAGES)}`, { headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` } });
        expect([res.status, res.headers.get('retry-after')]).toEqual([503, '1']);
        expect(((await res.json()) as any).errors[0].extensions.code).toBe('SERVICE_UNAVAILABLE');
      }
      await proxy.restore();
      // The failed stream released its place (the limit is 1 here).
      const after = sseSubscribe(s, u.token, ALL_MESSAGES);
      await running(s, 'messageAdded', 1);
      await sendMessage(s.url, u.token, { groupId: await lobbyOf(s.url, u.token), content: 'back' });
      expect(await after.nth(1)).toEqual({ messageAdded: { content: 'back' } });
    } finally {
      await proxy.cut();
    }
  }, 60_000);

  it("should run the graphql-sse snippet of docs/TOUR.md as it is, and tell of a reconnection, whose gap it did not stream", async () => {
    let s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const lobby = await lobbyOf(s.url, bob.token);
    const got: string[] = [];
    let reconnected = 0;
    const stop = streamMessages({ url: s.url, token: bob.token, groupId: lobby, onMessage: (content) => got.push(content), onReconnect: () => reconnected++ });
    try {
      await running(s, 'messageAdded', 1);
      await sendMessage(s.url, alice.token, { groupId: lobby, content: 'from the snippet' });
      await eventually(() => got.length > 0);
      expect(got).toEqual(['from the snippet']);
      // The server restarts on its port; graphql-sse comes back by itself, and says so.
      const { port } = s;
      await s.dispose();
      s = await createTestServer({ PORT: String(port) }, { clean: false });
      await eventually(() => reconnected === 1, 20_000);
      await running(s, 'messageAdded', 1);
      await sendMessage(s.url, alice.token, { groupId: lobby, content: 'back' });
      await eventually(() => got.length > 1);
      expect(got).toEqual(['from the snippet', 'back']);
    } finally {
      stop();
    }
    await running(s, 'messageAdded', 0);
  }, 40_000);

  describeRedis('two instances', () => {
    it('should stream on instance B a message sent on instance A', async () => {
      const a = await createTestServer();
      const b = await createTestServer({}, { clean: false });
      const [alice, bob] = [await signup(a.url), await signup(a.url)];
      // The ticket is issued on A and redeemed on B.
      const ticket = (await ok(gql(a.url, TICKET, {}, bob.token))).streamTicket;
      const res = await fetch(`${streamUrl(b)}?query=${encodeURIComponent(ALL_MESSAGES)}&ticket=${encodeURIComponent(ticket)}`, { headers: { accept: 'text/event-stream' } });
      expect(res.status).toBe(200);
      await running(b, 'messageAdded', 1);
      await sendMessage(a.url, alice.token, { groupId: await lobbyOf(a.url, alice.token), content: 'from A' });
      const reader = res.body!.getReader();
      let text = '';
      while (!text.includes('event: next')) text += new TextDecoder().decode((await reader.read()).value);
      expect(text).toContain('event: next\ndata: {"data":{"messageAdded":{"content":"from A"}}}\n\n');
      await reader.cancel();
    });
  });
});

describeNeeding('chromium', tools.chromium)('SSE transport in a browser', () => {
  it('should stream messageAdded and projectAction to a plain EventSource with a stream ticket', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const lobby = await lobbyOf(s.url, bob.token);
    const browser = await launchChromium();
    const page = await browser.newPage();
    // Same origin as the API, as a page served next to it would be.
    await page.goto(s.url.replace(/\/graphql$/, '/healthz'));
    // Messages with an EventSource written here; project notifications with the documented snippet (docs/TOUR.md), as it is.
    const ticket = (await ok(gql(s.url, TICKET, {}, bob.token))).streamTicket;
    const url = `/graphql/stream?query=${encodeURIComponent(MESSAGES)}&variables=${encodeURIComponent(JSON.stringify({ g: lobby }))}&ticket=${encodeURIComponent(ticket)}`;
    await page.evaluate((url) => {
      const w = globalThis as unknown as Record<string, unknown[]> & { EventSource: new (url: string) => any };
      w.messages = [];
      const source = new w.EventSource(url);
      source.addEventListener('next', (e: { data: string }) => w.messages.push(JSON.parse(e.data)));
      source.addEventListener('complete', () => source.close());
    }, url);
    const snippet = await build({ entryPoints: [join(__dirname, '..', 'examples', 'clients', 'eventsource.ts')], bundle: true, write: false, format: 'iife', globalName: 'snippet' });
    await page.addScriptTag({ content: snippet.outputFiles[0].text });
    await page.evaluate(
      async ([url, token]) => {
        const w = globalThis as unknown as Record<string, unknown[]> & { snippet: typeof import('../examples/clients/eventsource') };
        w.actions = [];
        await w.snippet.streamProjectActions({ url, token, onAction: (m) => w.actions.push(m) });
      },
      [s.url, bob.token] as const,
    );
    await running(s, 'messageAdded', 1);
    await running(s, 'projectAction', 1);
    await sendMessage(s.url, alice.token, { groupId: lobby, content: 'to the browser' });
    await buildProject(s.url, alice, { title: 'Apollo', participants: [bob] });
    const received = (name: string) => page.waitForFunction((n) => (globalThis as unknown as Record<string, unknown[]>)[n].length > 0, name).then((h) => h.jsonValue());
    await received('messages');
    await received('actions');
    const got = await page.evaluate(() => {
      const w = globalThis as unknown as Record<string, unknown[]>;
      return { messages: w.messages, actions: w.actions };
    });
    expect(got.messages).toEqual([{ data: { messageAdded: { content: 'to the browser', sender: { username: alice.username } } } }]);
    expect(got.actions).toEqual([expect.stringContaining('Apollo')]);
  }, 60_000);
});
