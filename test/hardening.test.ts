import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { codeOf, gql, ok, wsClient, type GqlResult, type WsClient } from './helpers/graphql';
import { createTestServer, type TestServer } from './helpers/server';
import { buildProject, lobbyOf, signup, type TestUser, attempt, request } from './helpers/factories';
import { SendMessageDocument } from '../generated/client/graphql';
import { encodeCursor, type CursorScope } from '../src/shared/graphql/connection';

// A full collection on demand, so a heap figure counts what is retained, not garbage not yet collected.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const MB = 1024 * 1024;

/** Bytes in use on the heap once everything unreachable is gone (a few rounds let finalizers and late callbacks run). */
async function retainedHeap(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}

/** A distinct document of about `bytes`: whitespace, then a query anyone may run. */
function paddedDocument(bytes: number): string {
  return `#${randomUUID()}\n${' '.repeat(bytes)}\n{ __typename }`;
}

/** One query or mutation over an open graphql-ws client: its result (data and errors). */
function wsExecute(w: WsClient, query: string, variables?: Record<string, unknown>): Promise<{ data?: any; errors?: any[] }> {
  return new Promise((resolve) => {
    let result: { data?: any; errors?: any[] } = {};
    w.client.subscribe(
      { query, variables },
      {
        next: (r) => (result = r as typeof result),
        error: (e) => resolve({ errors: Array.isArray(e) ? e : [e] }),
        complete: () => resolve(result),
      },
    );
  });
}

const PNG_HEADER = Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex');

/** A .png of exactly `size` bytes (signature, then filler) whose bytes are not all alike. */
function png(size: number): Buffer {
  const b = Buffer.alloc(size);
  PNG_HEADER.copy(b);
  for (let i = PNG_HEADER.length; i < size; i++) b[i] = (i * 31) & 0xff;
  return b;
}

describe('document size and document caches (issue 15, item 1)', () => {
  it('should refuse a document over GRAPHQL_MAX_DOCUMENT_BYTES before parsing it, over HTTP and WebSocket', async () => {
    const s = await createTestServer();
    expect(s.env.GRAPHQL_MAX_DOCUMENT_BYTES).toBe(100 * 1024);
    // No token needed to be refused: this is what an anonymous attacker sends.
    const big = await gql(s.url, paddedDocument(200 * 1024));
    expect([big.status, codeOf(big)]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    const justUnder = await gql(s.url, paddedDocument(100 * 1024 - 100));
    expect(justUnder.errors).toBeUndefined();
    expect(justUnder.data).toEqual({ __typename: 'Query' });
    // Multi-byte text counts in bytes: 40,000 'é' are 80,000 bytes, 40,000 '語' are 120,000.
    expect((await gql(s.url, `# ${'é'.repeat(40_000)}\n{ __typename }`)).errors).toBeUndefined();
    expect(codeOf(await gql(s.url, `# ${'語'.repeat(40_000)}\n{ __typename }`))).toBe('PAYLOAD_TOO_LARGE');

    const u = await signup(s.url);
    const w = wsClient(s.wsUrl, u.token);
    await w.connected;
    const overWs = await wsExecute(w, paddedDocument(200 * 1024));
    expect(overWs.errors?.[0]?.extensions?.code).toBe('PAYLOAD_TOO_LARGE');
    expect((await wsExecute(w, paddedDocument(100 * 1024 - 100))).data).toEqual({ __typename: 'Query' });
    // The socket stays usable after a refusal.
    expect((await wsExecute(w, '{ me { id } }')).data).toEqual({ me: { id: u.id } });
  });

  it('should hold a request without a valid token to a small body: only a signed-in user can send an attachment', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    // A short document and a megabyte of variables: what an attachment looks like, from anyone.
    const post = (headers: Record<string, string>) =>
      fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ query: '{ __typename }', variables: { pad: 'x'.repeat(MB) } }) });
    const anonymous = await post({});
    expect([anonymous.status, ((await anonymous.json()) as any).errors[0].extensions.code]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    const badToken = await post({ authorization: 'Bearer not-a-token' });
    expect([badToken.status, ((await badToken.json()) as any).errors[0].extensions.code]).toEqual([401, 'UNAUTHENTICATED']);
    const signedIn = await post({ authorization: `Bearer ${u.token}` });
    expect([signedIn.status, await signedIn.json()]).toEqual([200, { data: { __typename: 'Query' } }]);
    // Small anonymous requests work as before (signup, login).
    expect((await gql(s.url, '{ __typename }')).data).toEqual({ __typename: 'Query' });
  });

  /**
   * Heap growth over 100 distinct 1 MB documents sent by HTTP and 100 by WebSocket, from after a
   * warm-up to after the last answer; `answer` checks each answer. Kept, they would be 200 MB, four
   * times the bound these tests allow; each cache holds 8 MB.
   */
  async function heapGrowth(s: TestServer, answer: (http: GqlResult, ws: { data?: any; errors?: any[] }) => void): Promise<number> {
    const u = await signup(s.url);
    const w = wsClient(s.wsUrl, u.token);
    await w.connected;
    await gql(s.url, paddedDocument(10));
    await wsExecute(w, paddedDocument(10));
    const before = await retainedHeap();
    // Over HTTP every other one without a token, as an attacker sends them, and with one, as a user could.
    for (let i = 0; i < 100; i++) answer(await gql(s.url, paddedDocument(MB), undefined, i % 2 ? u.token : undefined), await wsExecute(w, paddedDocument(MB)));
    return (await retainedHeap()) - before;
  }

  it('should not keep 100 distinct 1 MB documents a transport: the heap ends within 50 MB of where it started', async () => {
    const s = await createTestServer();
    // Before the cap, Apollo kept each one: its document cache sized the AST without the source text.
    const growth = await heapGrowth(s, (http, ws) => {
      expect([http.status, codeOf(http)]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
      expect(ws.errors?.[0]?.extensions?.code).toBe('PAYLOAD_TOO_LARGE');
    });
    expect(growth).toBeLessThan(50 * MB);
  }, 120_000);

  it('should bound both document caches by bytes when large documents are allowed', async () => {
    // With the cap raised, 1 MB documents are parsed, validated and cached: the caches, not the cap, hold the heap.
    const s = await createTestServer({ GRAPHQL_MAX_DOCUMENT_BYTES: String(2 * MB) });
    const growth = await heapGrowth(s, (http, ws) => {
      expect(http.data).toEqual({ __typename: 'Query' });
      expect(ws.data).toEqual({ __typename: 'Query' });
    });
    expect(growth).toBeLessThan(50 * MB);
    // A document that is used again is still served (from the cache or parsed anew).
    const again = paddedDocument(MB);
    expect((await gql(s.url, again)).data).toEqual({ __typename: 'Query' });
    expect((await gql(s.url, again)).data).toEqual({ __typename: 'Query' });
  }, 120_000);
});

describe('values echoed in input errors', () => {
  it('should cut short a variable value that did not coerce, over HTTP and WebSocket, not answer it whole', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const query = 'mutation($u: DateTime, $c: ConversationInput!) { muteConversation(conversation: $c, until: $u) { id } }';
    const variables = { u: 'x'.repeat(1 << 20), c: { groupId: await lobbyOf(s.url, u.token) } };
    const res = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` }, body: JSON.stringify({ query, variables }) });
    const text = await res.text();
    const body = JSON.parse(text) as { errors: { message: string; extensions: { code: string } }[] };
    expect(body.errors[0].extensions.code).toBe('BAD_USER_INPUT');
    expect(body.errors[0].message).toMatch(/^Variable "\$u" got invalid value "x{100}…"/);
    expect(text.length).toBeLessThan(2000);
    // Nor a key of an object value, which graphql-js prints unquoted.
    const keyed = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` }, body: JSON.stringify({ query, variables: { ...variables, u: { ['k'.repeat(1 << 20)]: 1 } } }) });
    expect((await keyed.text()).length).toBeLessThan(2000);
    const w = wsClient(s.wsUrl, u.token);
    try {
      type Answer = { errors?: { message: string; extensions?: { code?: string } }[] };
      const r = await new Promise<Answer>((resolve) => {
        let got: Answer = {};
        w.client.subscribe({ query, variables }, { next: (d) => void (got = d as Answer), error: (e) => resolve({ errors: e as Answer['errors'] }), complete: () => resolve(got) });
      });
      expect(r.errors?.[0].extensions?.code).toBe('BAD_USER_INPUT');
      expect(JSON.stringify(r).length).toBeLessThan(2000);
    } finally {
      w.client.dispose();
    }
  });
});

describe('compressed request bodies', () => {
  it('should answer a body sent with a Content-Encoding 415, naming it, over HTTP and SSE, and take it uncompressed', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const body = gzipSync(JSON.stringify({ query: 'mutation { createGroup(name: "zipped") { id } }' }));
    for (const [url, accept] of [[s.url, 'application/json'], [`${s.url}/stream`, 'text/event-stream']]) {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'gzip', accept, authorization: `Bearer ${u.token}` }, body });
      expect(res.status).toBe(415);
      expect(await res.json()).toEqual({ errors: [{ message: "Content-Encoding 'gzip' is not supported: send the request body uncompressed.", extensions: { code: 'BAD_USER_INPUT' } }] });
    }
    expect((await ok(gql(s.url, '{ groups(first: 100) { edges { node { name } } } }', {}, u.token))).groups.edges.map((e: any) => e.node.name)).not.toContain('zipped');
    // identity is no encoding.
    const plain = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-encoding': 'identity' }, body: JSON.stringify({ query: '{ __typename }' }) });
    expect(await plain.json()).toEqual({ data: { __typename: 'Query' } });
  });
});

describe('attachment data per response (issue 15, item 2)', () => {
  const PER_FILE = 90_000;
  const ALIASED = `query($c: ConversationInput!) {
    a: history(conversation: $c, last: 100) { edges { node { attachment { base64 } } } }
    b: history(conversation: $c, last: 100) { edges { node { attachment { base64 } } } } }`;

  async function withFiles(count: number) {
    const s = await createTestServer({ ATTACHMENT_MAX_BYTES: '100000', ATTACHMENT_MAX_BYTES_PER_RESPONSE: '250000' });
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    for (let i = 0; i < count; i++) {
      await request(s.url, SendMessageDocument, { input: { groupId: lobby, attachment: { fileName: `f${i}.png`, base64: png(PER_FILE).toString('base64') } } }, u.token);
    }
    return { s, u, c: { groupId: lobby } };
  }

  /** Decoded bytes of every base64 the response carried. */
  const carried = (data: any) =>
    Object.values(data ?? {})
      .flatMap((h: any) => h?.edges ?? [])
      .reduce((n: number, e: any) => n + (e.node.attachment?.base64 ? Buffer.from(e.node.attachment.base64, 'base64').length : 0), 0);

  it('should cap the attachment bytes one response carries: aliased pages of history get PAYLOAD_TOO_LARGE past the budget', async () => {
    const { s, u, c } = await withFiles(5);
    const r = await gql(s.url, ALIASED, { c }, u.token);
    // 10 selections of 90,000 bytes asked for, 250,000 allowed: two are served, the rest refused by name.
    expect(carried(r.data)).toBe(2 * PER_FILE);
    expect(r.errors?.length).toBe(8);
    for (const e of r.errors!) {
      expect(e.extensions?.code).toBe('PAYLOAD_TOO_LARGE');
      expect(e.path?.slice(-2)).toEqual(['attachment', 'base64']);
    }
    // Over WebSocket the same.
    const w = wsClient(s.wsUrl, u.token);
    await w.connected;
    const overWs = await wsExecute(w, ALIASED, { c });
    expect(carried(overWs.data)).toBe(2 * PER_FILE);
    expect(overWs.errors?.map((e) => e.extensions?.code)).toEqual(Array(8).fill('PAYLOAD_TOO_LARGE'));
  });

  it('should serve what fits in one response, and give every response its own budget', async () => {
    const { s, u, c } = await withFiles(2);
    for (let i = 0; i < 3; i++) {
      const r = await gql(s.url, 'query($c: ConversationInput!) { history(conversation: $c) { edges { node { attachment { size base64 } } } } }', { c }, u.token);
      expect(r.errors).toBeUndefined();
      expect(carried(r.data)).toBe(2 * PER_FILE);
    }
    // Metadata and url cost nothing from the budget.
    const meta = await gql(s.url, ALIASED.replace(/base64/g, 'url'), { c }, u.token);
    expect(meta.errors).toBeUndefined();
  });
});

describe('attachment data per user (RATE_LIMIT_ATTACHMENT_DATA)', () => {
  it("should cap the base64 one user's queries read in a window, theirs alone, while url stays free", async () => {
    // 1 MiB a minute; each response asks for two files of 90,000 bytes (0.17 MiB).
    const s = await createTestServer({ ATTACHMENT_MAX_BYTES: '100000', RATE_LIMIT_ATTACHMENT_DATA: '1/1m' });
    const [u, other] = [await signup(s.url), await signup(s.url)];
    const lobby = await lobbyOf(s.url, u.token);
    for (let i = 0; i < 2; i++) await request(s.url, SendMessageDocument, { input: { groupId: lobby, attachment: { fileName: `f${i}.png`, base64: png(90_000).toString('base64') } } }, u.token);
    const page = (token: string, field = 'base64') => gql(s.url, `query($c: ConversationInput!) { history(conversation: $c, last: 2) { edges { node { attachment { ${field} } } } } }`, { c: { groupId: lobby } }, token);
    const served = (r: GqlResult) => (r.data?.history.edges ?? []).filter((e: any) => e.node.attachment?.base64).length;
    // Five responses (ten files, 0.86 MiB) fit; the sixth's second file does not, nor anything after.
    for (let i = 0; i < 5; i++) expect(served(await page(u.token))).toBe(2);
    const sixth = await page(u.token);
    expect([served(sixth), sixth.errors?.map((e) => [e.extensions?.code, e.path?.slice(-2).join('.')])]).toEqual([1, [['RATE_LIMITED', 'attachment.base64']]]);
    expect(sixth.errors![0].extensions?.retryAfter).toBeGreaterThan(0);
    expect(served(await page(u.token))).toBe(0);
    // Another user's window is their own; links cost nothing.
    expect(served(await page(other.token))).toBe(2);
    const links = await page(u.token, 'url');
    expect([links.errors, links.data.history.edges.map((e: any) => typeof e.node.attachment.url)]).toEqual([undefined, ['string', 'string']]);
  });

  it("should give a response's budget back for a file the rate refused: the next is refused for the rate, not for the response's size", async () => {
    // Room in one response for the two large files and 50 bytes more.
    const s = await createTestServer({ ATTACHMENT_MAX_BYTES: '100000', ATTACHMENT_MAX_BYTES_PER_RESPONSE: '180050', RATE_LIMIT_ATTACHMENT_DATA: '1/1m' });
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const send = (i: number, bytes: number) => request(s.url, SendMessageDocument, { input: { groupId: lobby, attachment: { fileName: `f${i}.png`, base64: png(bytes).toString('base64') } } }, u.token);
    await send(0, 90_000);
    await send(1, 90_000);
    const page = (last: number) => gql(s.url, `query($c: ConversationInput!) { history(conversation: $c, last: ${last}) { edges { node { attachment { base64 } } } } }`, { c: { groupId: lobby } }, u.token);
    // Five pages of both (0.86 MiB of the minute's 1 MiB).
    for (let i = 0; i < 5; i++) expect((await page(2)).errors).toBeUndefined();
    await send(2, 100);
    const r = await page(3);
    // The first fits the rate; the second does not, and the small one after it is refused for the same.
    expect(r.errors?.map((e) => [e.extensions?.code, e.path?.[2]])).toEqual([
      ['RATE_LIMITED', 1],
      ['RATE_LIMITED', 2],
    ]);
  });

  it('should refuse a window too small for the largest attachment a send takes', async () => {
    await expect(createTestServer({ ATTACHMENT_MAX_BYTES: String(3 * MB), RATE_LIMIT_ATTACHMENT_DATA: '2/10s' })).rejects.toThrow(/RATE_LIMIT_ATTACHMENT_DATA/);
  });
});

describe('attachments up to ATTACHMENT_MAX_BYTES (issue 15, item 6)', () => {
  it('should accept an attachment of exactly ATTACHMENT_MAX_BYTES and give back the same bytes', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const max = s.env.ATTACHMENT_MAX_BYTES;
    expect(max).toBe(5 * MB);
    const file = png(max);
    const sent = await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, attachment: { fileName: 'big.png', base64: file.toString('base64') } } }, u.token);
    expect(sent.errors).toBeUndefined();
    expect(sent.data!.sendMessage.attachment!.size).toBe(max);
    // Inside the range where the old check overflowed the stack.
    const mid = png(4 * MB);
    expect((await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, attachment: { fileName: 'mid.png', base64: mid.toString('base64') } } }, u.token)).errors).toBeUndefined();

    const h = await ok(gql(s.url, 'query($c: ConversationInput!) { history(conversation: $c, last: 1) { edges { node { attachment { base64 } } } } }', { c: { groupId: lobby } }, u.token));
    expect(Buffer.from(h.history.edges[0].node.attachment.base64, 'base64').equals(mid)).toBe(true);
    const res = await fetch(new URL(sent.data!.sendMessage.attachment!.url, s.url), { headers: { authorization: `Bearer ${u.token}` } });
    expect(res.status).toBe(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(file)).toBe(true);

    const over = await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, attachment: { fileName: 'over.png', base64: png(max + 1).toString('base64') } } }, u.token);
    expect(codeOf(over)).toBe('PAYLOAD_TOO_LARGE');
  });

  it('should accept a text file of ATTACHMENT_MAX_BYTES and refuse one with a binary byte at its end', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const text = Buffer.from(`${'é'.repeat(s.env.ATTACHMENT_MAX_BYTES / 2 - 1)}\n`);
    expect(text.length).toBe(s.env.ATTACHMENT_MAX_BYTES - 1);
    const sent = await request(s.url, SendMessageDocument, { input: { groupId: lobby, attachment: { fileName: 'notes.txt', base64: text.toString('base64') } } }, u.token);
    const res = await fetch(new URL(sent.sendMessage.attachment!.url, s.url), { headers: { authorization: `Bearer ${u.token}` } });
    expect(Buffer.from(await res.arrayBuffer()).equals(text)).toBe(true);
    const binary = Buffer.concat([text.subarray(0, -1), Buffer.from([0x00])]);
    const r = await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, attachment: { fileName: 'notes.txt', base64: binary.toString('base64') } } }, u.token);
    expect([codeOf(r), r.errors?.[0]?.message]).toEqual(['BAD_USER_INPUT', "The file's content is not a .txt file."]);
  });

  it('should refuse malformed base64 of any length, or an empty file, as BAD_USER_INPUT, storing nothing', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const good = png(3000).toString('base64');
    const long = png(4 * MB).toString('base64');
    const bad = [
      'not base64!!',
      good.slice(0, -1), // length not a multiple of 4
      `${good.slice(0, 8)}====${good.slice(12)}`, // padding inside
      good.replace(/\+/g, '-').replace(/\//g, '_'), // base64url
      `${good.slice(0, 400)}\n${good.slice(401)}`, // a line break
      `${long.slice(0, -8)}!!!!${long.slice(-4)}`, // 5.3 MB, wrong near the end
      `${long.slice(0, 4)}*${long.slice(5)}`, // 5.3 MB, wrong near the start
    ];
    expect(bad[3]).not.toBe(good);
    for (const base64 of bad) {
      const r = await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, attachment: { fileName: 'x.png', base64 } } }, u.token);
      expect([codeOf(r), r.errors?.[0]?.extensions?.field]).toEqual(['BAD_USER_INPUT', 'attachment.base64']);
    }
    // An empty string is valid base64: what is wrong with it is that it holds no file (an outside probe read "not valid base64").
    const empty = await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, attachment: { fileName: 'x.png', base64: '' } } }, u.token);
    expect([codeOf(empty), empty.errors?.[0]?.extensions?.field, empty.errors?.[0]?.message]).toEqual(['BAD_USER_INPUT', 'attachment.base64', 'The attachment is empty.']);
    const h = await ok(gql(s.url, 'query($c: ConversationInput!) { history(conversation: $c) { totalCount } }', { c: { groupId: lobby } }, u.token));
    expect(h.history.totalCount).toBe(0);
  });
});

describe('hostile cursors (issue 15, item 7)', () => {
  async function setup() {
    const s = await createTestServer();
    const a = await signup(s.url);
    const b = await signup(s.url);
    const lobby = await lobbyOf(s.url, a.token);
    for (let i = 0; i < 3; i++) await request(s.url, SendMessageDocument, { input: { groupId: lobby, content: `m${i}` } }, a.token);
    await ok(gql(s.url, 'mutation { g1: createGroup(name: "alpha") { id } g2: createGroup(name: "beta") { id } }', {}, a.token));
    const project = (await buildProject(s.url, a, { participants: [b] })).id;
    await ok(gql(s.url, 'mutation($p: ID!) { renameProject(projectId: $p, title: "Q") { id } }', { p: project }, a.token));
    return { s, a, b, lobby };
  }

  /** Every connection, asked for one edge after (or before) `cursor`; `cursor` null gives the first page. */
  function connections(lobby: string) {
    const conn = (path: string[], query: string, scope: CursorScope, extra: Record<string, unknown> = {}) => ({ path, query, scope, extra });
    const page = 'pageInfo { endCursor startCursor } edges { cursor }';
    return {
      users: conn(['users'], `query($x: String) { users(first: 1, after: $x) { ${page} } }`, 'users'),
      groups: conn(['groups'], `query($x: String) { groups(first: 1, after: $x) { ${page} } }`, 'groups'),
      onlineUsers: conn(['onlineUsers'], `query($x: String) { onlineUsers(first: 1, after: $x) { ${page} } }`, 'online'),
      members: conn(['group', 'members'], `query($g: ID!, $x: String) { group(id: $g) { members(first: 1, after: $x) { ${page} } } }`, 'members', { g: lobby }),
      historyAfter: conn(['history'], `query($c: ConversationInput!, $x: String) { history(conversation: $c, first: 1, after: $x) { ${page} } }`, '', { c: { groupId: lobby } }),
      historyBefore: conn(['history'], `query($c: ConversationInput!, $x: String) { history(conversation: $c, last: 1, before: $x) { ${page} } }`, '', { c: { groupId: lobby } }),
      projectActions: conn(['projectActions'], `query($x: String) { projectActions(last: 1, before: $x) { ${page} } }`, 'actions'),
    };
  }
  const TIME_KEYED = ['members', 'historyAfter', 'historyBefore', 'projectActions'];

  it('should answer BAD_USER_INPUT to hostile cursors on every connection, and still page with real ones', async () => {
    const { s, b, lobby } = await setup();
    const id = randomUUID();
    const forged = (text: string) => Buffer.from(text).toString('base64url');
    // Refused by every connection (the first four as if it issued them).
    const everywhere = (scope: CursorScope) => [
      encodeCursor({ k: '\u0000', id }, scope),
      encodeCursor({ k: 'user\u0000name', id }, scope),
      encodeCursor({ k: '2024-01-01T00:00:00.000Z\u0000', id }, scope),
      encodeCursor({ k: 'tab\there', id }, scope),
      forged('c1:["x","not-a-uuid"]'),
      forged(`c1:[1,"${id}"]`),
      forged(`c1:["x","${id}","extra"]`),
      forged('c1:{"k":"x"}'),
      forged(`c2:["x","${id}"]`),
      'not a cursor',
      'A'.repeat(5000),
    ];
    // Refused where the key is a time: what JavaScript dates and PostgreSQL doesn't, and what this server never writes.
    const times = ['0000-01-01T00:00:00.000Z', '0000-12-31T23:59:59.999Z', '-000001-01-01T00:00:00.000Z', '+275760-09-13T00:00:00.000Z', '2024-02-30T00:00:00.000Z', '2024-01-01T00:00:00Z', '2024-01-01', 'alpha'];
    const conns = connections(lobby);
    const issued = new Map<string, string>();
    for (const [name, c] of Object.entries(conns)) {
      const at = (data: any) => c.path.reduce((v, k) => v?.[k], data);
      const first = await ok(gql(s.url, c.query, { ...c.extra, x: null }, b.token));
      const real = at(first).pageInfo.endCursor as string;
      expect([name, typeof real]).toEqual([name, 'string']);
      issued.set(name, real);
      // A cursor this server issued still pages.
      expect([name, (await gql(s.url, c.query, { ...c.extra, x: real }, b.token)).errors]).toEqual([name, undefined]);
    }
    for (const [name, c] of Object.entries(conns)) {
      // Another connection's cursor is not this one's (users and onlineUsers both key a string and an id).
      const others = Object.entries(conns).filter(([, o]) => o.scope !== c.scope).map(([other]) => issued.get(other)!);
      const encode = (k: string) => encodeCursor({ k, id }, c.scope);
      const hostile = [...everywhere(c.scope), ...others, ...(TIME_KEYED.includes(name) ? times.map(encode) : [])];
      for (const x of hostile) {
        const r = await gql(s.url, c.query, { ...c.extra, x }, b.token);
        expect([name, x, codeOf(r), r.errors?.[0]?.message]).toEqual([name, x, 'BAD_USER_INPUT', expect.stringMatching(/^Invalid cursor in '(after|before)'\.$/)]);
      }
      // The extremes of what is accepted as a time reach PostgreSQL and are answered.
      if (TIME_KEYED.includes(name)) {
        for (const k of ['0001-01-01T00:00:00.000Z', '9999-12-31T23:59:59.999Z']) {
          expect([name, k, (await gql(s.url, c.query, { ...c.extra, x: encode(k) }, b.token)).errors]).toEqual([name, k, undefined]);
        }
      }
      // On string keys a date-like key is only an odd name: answered, never an error from the database.
      if (!TIME_KEYED.includes(name)) {
        for (const k of times) expect([name, k, (await gql(s.url, c.query, { ...c.extra, x: encode(k) }, b.token)).errors]).toEqual([name, k, undefined]);
      }
    }
  });

  it('should page past a group whose name is 100 characters of a multi-byte script', async () => {
    const s = await createTestServer();
    const u: TestUser = await signup(s.url);
    const long = '語'.repeat(100);
    await ok(gql(s.url, 'mutation($n: String!) { createGroup(name: $n) { id } }', { n: long }, u.token));
    await ok(gql(s.url, 'mutation { createGroup(name: "𝔷𝔷𝔷") { id } }', {}, u.token));
    const names: string[] = [];
    let after: string | null = null;
    for (;;) {
      const page: any = (await ok(gql(s.url, 'query($x: String) { groups(first: 1, after: $x) { pageInfo { hasNextPage endCursor } edges { node { name } } } }', { x: after }, u.token))).groups;
      names.push(...page.edges.map((e: any) => e.node.name));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(names).toEqual(expect.arrayContaining([long, '𝔷𝔷𝔷']));
    expect(names).toHaveLength(3); // with the lobby
  });
});
