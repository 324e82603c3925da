import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { getIntrospectionQuery, Kind, print, visit, type DocumentNode } from 'graphql';
import { Redis } from 'ioredis';
import WebSocket from 'ws';
import { loadEnv } from '../src/config/env';
import { createSchema } from '../src/graphql/schema';
import { documentLimits } from '../src/graphql/limits';
import { bodyLimit } from '../src/graphql/limits';
import { messageRepository } from '../src/modules/message/message.repository';
import { codeOf, eventually, gql, ok, running, subscribe, wsClient } from './helpers/graphql';
import { attempt, signup, buildUser, type TestUser, lobbyOf, login, request, buildGroup } from './helpers/factories';
import * as generated from '../generated/client/graphql';
import { LoginDocument, SignupDocument, SendMessageDocument } from '../generated/client/graphql';
import { createTestServer, describeRedis, redisName, type Overrides, type TestServer } from './helpers/server';
import { monitorRedis } from './helpers/redis-monitor';
import { snapshot } from './helpers/db';
import { initialized, muteAfterInit, raw } from './helpers/raw-socket';

const ME = '{ me { id } }';
const SEND = 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { id } }';
const GROUP_EVENTS = 'subscription { groupEvent { kind groupId } }';

describe('document limits', () => {
  let s: TestServer;
  let u: TestUser;
  beforeEach(async () => {
    s = await createTestServer();
    u = await signup(s.url);
  });

  it('should refuse a document deeper than GRAPHQL_MAX_DEPTH, over HTTP and WebSocket', async () => {
    // The deepest path the schema has (8) passes the default.
    const lobby = await lobbyOf(s.url, u.token);
    await ok(gql(s.url, 'query($g: ID) { history(conversation: { groupId: $g }) { edges { node { group { members { edges { node { id } } } } } } } }', { g: lobby }, u.token));
    s = await createTestServer({ GRAPHQL_MAX_DEPTH: '5' }, { clean: false });
    const five = '{ groups { edges { node { members { totalCount } } } } }';
    const six = '{ groups { edges { node { members { edges { cursor } } } } } }';
    await ok(gql(s.url, five, {}, u.token));
    const r = await gql(s.url, six, {}, u.token);
    expect(r.status).toBe(400);
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
    expect(r.errors![0].message).toMatch(/depth/i);
    // The limit can't be dodged with fragments.
    const viaFragment = await gql(s.url, '{ groups { edges { node { ...G } } } } fragment G on Group { members { edges { cursor } } }', {}, u.token);
    expect(codeOf(viaFragment)).toBe('BAD_USER_INPUT');

    const w = wsClient(s.wsUrl, u.token);
    await w.connected;
    const sub = subscribe(w, six);
    await sub.done;
    expect((sub.errors[0] as any)[0]?.extensions?.code ?? (sub.errors[0] as any).extensions?.code).toBe('BAD_USER_INPUT');
  });

  it('should refuse more than 15 aliases', async () => {
    const aliases = (n: number) => `{ ${Array.from({ length: n }, (_, i) => `a${i}: me { id }`).join(' ')} }`;
    await ok(gql(s.url, aliases(15), {}, u.token));
    const r = await gql(s.url, aliases(16), {}, u.token);
    expect(r.status).toBe(400);
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
    expect(r.errors![0].message).toMatch(/Aliases limit of 15/);
  });

  it('should refuse more than 1000 tokens, over HTTP and WebSocket', async () => {
    // `{` + n × `me { id }` + `}`: graphql's own guard against many identical fields stays out of the way.
    const tokens = (n: number) => `{ ${'me { id } '.repeat(Math.floor((n - 2) / 4))}}`;
    await ok(gql(s.url, tokens(990), {}, u.token));
    const r = await gql(s.url, tokens(1100), {}, u.token);
    expect(r.status).toBe(400);
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
    expect(r.errors![0].message).toMatch(/token/i);

    const w = await initialized(s.wsUrl, u.token);
    w.send({ id: 't', type: 'subscribe', payload: { query: tokens(1100) } });
    const err = await w.next('error', 't');
    expect(err.payload[0].extensions.code).toBe('BAD_USER_INPUT');
    expect(err.payload[0].message).toMatch(/token/i);
  });

  it('should refuse more than 10 directives', async () => {
    const dirs = (n: number) => `{ me { ${Array.from({ length: n }, (_, i) => `f${i}: id @include(if: true)`).join(' ')} } }`;
    await ok(gql(s.url, dirs(10), {}, u.token));
    const r = await gql(s.url, dirs(11), {}, u.token);
    expect(r.status).toBe(400);
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
    expect(r.errors![0].message).toMatch(/Directives limit of 10/);
  });

  it('should refuse a document costing more than 5000', async () => {
    // Scalars 8 levels deep cost 1.5^8 ≈ 26 each; within the depth, alias and token limits.
    const lobby = await lobbyOf(s.url, u.token);
    const costly = (n: number) =>
      `query($g: ID) { history(conversation: { groupId: $g }) { edges { node { group { members { edges { node { ${'id '.repeat(n)} } } } } } } } }`;
    await ok(gql(s.url, costly(100), { g: lobby }, u.token));
    const r = await gql(s.url, costly(300), { g: lobby }, u.token);
    expect(r.status).toBe(400);
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
    expect(r.errors![0].message).toMatch(/^Query Cost limit of 5000/i);
  });

  it('should take a page of 100 messages with every field, its size written or in a variable, and refuse pages of pages past GRAPHQL_MAX_ITEMS either way', async () => {
    const lobby = await lobbyOf(s.url, u.token);
    const row = 'cursor node { id content createdAt clientMessageId sender { id username displayName status } group { id name } recipient { id username } attachment { id fileName mimeType size url } }';
    const page = (size: string) => `history(conversation: { groupId: $g }, last: ${size}) { totalCount edges { ${row} } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } }`;
    // graphql-armor multiplied this one's cost by 100 written in the document (13,156 of 5,000), not in a variable.
    await ok(gql(s.url, `query($g: ID) { ${page('100')} }`, { g: lobby }, u.token));
    await ok(gql(s.url, `query($g: ID, $n: Int) { ${page('$n')} }`, { g: lobby, n: 100 }, u.token));

    const groups = (size: string) => `groups(first: ${size}) { edges { node { id members(first: ${size}) { edges { node { id } } } } } }`;
    // 100 groups and 100 members each: 10,100 items; twice that is past 20,000, written either way.
    await ok(gql(s.url, `{ ${groups('100')} }`, {}, u.token));
    for (const [query, variables] of [
      [`{ a: ${groups('100')} b: ${groups('100')} }`, {}],
      [`query($n: Int) { a: ${groups('$n')} b: ${groups('$n')} }`, { n: 2 }],
    ] as const) {
      const r = await gql(s.url, query, variables, u.token);
      expect(r.status).toBe(400);
      expect(codeOf(r)).toBe('BAD_USER_INPUT');
      expect(r.errors![0].message).toMatch(/^Items limit of 20000 exceeded, found 20200/);
    }
    const w = await initialized(s.wsUrl, u.token);
    w.send({ id: 'i', type: 'subscribe', payload: { query: `query($n: Int) { a: ${groups('$n')} b: ${groups('$n')} }`, variables: { n: 1 } } });
    const err = await w.next('error', 'i');
    expect(err.payload[0].extensions.code).toBe('BAD_USER_INPUT');
    expect(err.payload[0].message).toMatch(/^Items limit of 20000/);
  });

  it('should cost a selection written with named or inline fragments as the same fields written in place', async () => {
    const limits = documentLimits(loadEnv({ NODE_ENV: 'test', GRAPHQL_MAX_COST: '1' }));
    const schema = await createSchema();
    const found = (doc: string) => {
      const checked = limits.check(schema, doc);
      return Number(/found (\d+(?:\.\d+)?)/.exec('errors' in checked ? checked.errors[0].message : '')?.[1]);
    };
    const inline = '{ conversations(first: 20) { edges { node { id title lastMessage { id content sender { id username displayName } } } } } }';
    const named = `{ conversations(first: 20) { edges { node { ...Row } } } }
      fragment Row on Conversation { id title lastMessage { ...Message } } fragment Message on Message { id content sender { ...Label } } fragment Label on User { id username displayName }`;
    const inlineFragments = '{ conversations(first: 20) { edges { node { ... on Conversation { id title lastMessage { ... { id content sender { id username displayName } } } } } } } }';
    // graphql-armor counted each spread as a level (x1.5 each): a client's colocated fragments were refused where the same fields inline passed.
    expect(found(inline)).toBeGreaterThan(1);
    expect([found(named), found(inlineFragments)]).toEqual([found(inline), found(inline)]);
  });

  it('should figure each fragment once however often it is spread, and take an introspection query', async () => {
    const limits = documentLimits(loadEnv({ NODE_ENV: 'test' }));
    const schema = await createSchema();
    // Each fragment spreads the next twice, 40 deep: 2^40 fields if each spread were expanded again.
    const fragments = Array.from({ length: 40 }, (_, i) => `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`).join(' ');
    const started = performance.now();
    const checked = limits.check(schema, `{ ...F0 } ${fragments} fragment F40 on Query { me { id } }`);
    expect(performance.now() - started).toBeLessThan(500);
    expect('errors' in checked && checked.errors[0].message).toMatch(/^Query Cost limit of 5000 exceeded/);
    // GraphiQL's own query (introspection costs nothing, as it did with graphql-armor).
    expect('document' in limits.check(schema, getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true }))).toBe(true);
  });

  it("should count a list's items as a page's (nodes, pinned messages, mentions), and an interface's fragments as alternatives", async () => {
    const limits = documentLimits(loadEnv({ NODE_ENV: 'test' }));
    const schema = await createSchema();
    const items = (doc: string) => {
      const checked = limits.check(schema, doc);
      return 'errors' in checked ? Number(/^Items limit of \d+ exceeded, found (\d+)/.exec(checked.errors[0].message)?.[1]) : 'passed';
    };
    const members = 'members(first: 100) { edges { node { id } } }';
    const ids = (n: number) => JSON.stringify(Array.from({ length: n }, (_, i) => `g:00000000-0000-4000-8000-${String(i).padStart(12, '0')}`));
    // Each conversation's 50 pins, each with a page of its group's members: a list under a list under a list.
    expect(items(`query($ids: [ID!]!) { nodes(ids: $ids) { ... on Conversation { pinnedMessages { id group { ${members} } } } } }`)).toBe(100 + 100 * 50 + 100 * 50 * 100);
    expect(items(`{ nodes(ids: ${ids(10)}) { ... on Conversation { pinnedMessages { id group { ${members} } } } } }`)).toBe(10 + 10 * 50 + 10 * 50 * 100);
    const mentions = (alias: string) => `${alias}: history(conversation: { groupId: "00000000-0000-4000-8000-000000000000" }, last: 100) { edges { node { mentions { id } } } }`;
    expect(items(`{ ${mentions('a')} }`)).toBe('passed');
    expect(items(`{ ${['a', 'b', 'c', 'd'].map(mentions).join(' ')} }`)).toBe(4 * (100 + 100 * 50));
    // A node is a Conversation or a Group, not both: 100 ids, each with one page of 100 members.
    expect(items(`query($ids: [ID!]!) { nodes(ids: $ids) { ... on Conversation { group { ${members} } } ... on Group { ${members} } } }`)).toBe('passed');
  });

  it('should refuse batched HTTP requests', async () => {
    const res = await fetch(s.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` },
      body: JSON.stringify([{ query: ME }, { query: ME }]),
    });
    expect(res.status).toBe(400);
    const body: any = await res.json();
    expect(body.data).toBeUndefined();
    expect(body.errors[0].message).toMatch(/batching/i);
  });

  it('should refuse a subscription sent over HTTP (it belongs on the WebSocket) and an unknown operationName, as bad input', async () => {
    const r = await gql(s.url, 'subscription { groupEvent { kind } }', {}, u.token);
    expect(r.status).toBe(400);
    expect(codeOf(r)).toBe('BAD_USER_INPUT');
    // It names both places a subscription is served: a network that blocks WebSockets has the stream.
    expect(r.errors![0].message).toMatch(/WebSocket.*\/graphql\/stream/);
    const named = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` }, body: JSON.stringify({ query: 'query A { me { id } }', operationName: 'B' }) });
    expect(((await named.json()) as any).errors[0].extensions.code).toBe('BAD_USER_INPUT');
    // An empty name names no operation (as Apollo reads it), also once the document ran often without a name (the fuzzer: a 500).
    const post = (operationName?: string) =>
      fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` }, body: JSON.stringify({ query: 'query C { me { id } }', operationName }) });
    for (let i = 0; i < 3; i++) expect((await post()).status).toBe(200);
    const empty = await post('');
    expect([empty.status, ((await empty.json()) as any).errors?.[0].extensions.code]).toEqual([400, 'BAD_USER_INPUT']);
  });

  it("should refuse a subscription whose root field is skipped or included, as bad input on every transport, the socket's other subscriptions going on", async () => {
    const conditional: [string, Record<string, unknown>][] = [
      ['subscription($s: Boolean!) { groupEvent @include(if: $s) { kind } }', { s: true }],
      ['subscription($s: Boolean!) { groupEvent @skip(if: $s) { kind } }', { s: false }],
      ['subscription { groupEvent @skip(if: true) { kind } }', {}],
      ['subscription($s: Boolean!) { ...F @skip(if: $s) } fragment F on Subscription { groupEvent { kind } }', { s: false }],
      ['subscription { ... on Subscription @include(if: false) { groupEvent { kind } } }', {}],
    ];
    // HTTP: as any subscription there, with or without a token.
    for (const [query, variables] of conditional) {
      for (const token of [u.token, undefined]) {
        const r = await gql(s.url, query, variables, token);
        expect([query, r.status, codeOf(r)]).toEqual([query, 400, 'BAD_USER_INPUT']);
      }
    }
    // WebSocket: an error for that operation; the socket and its other subscriptions stay.
    const w = wsClient(s.wsUrl, u.token);
    await w.connected;
    const plain = subscribe(w, GROUP_EVENTS);
    await running(s, 'groupEvent', 1);
    for (const [query, variables] of conditional) {
      const sub = subscribe(w, query, variables);
      await sub.done;
      // graphql-ws hands an operation's errors over as one list.
      expect([query, sub.errors.flat().map((e: any) => e.extensions?.code ?? e.message)]).toEqual([query, ['BAD_USER_INPUT']]);
    }
    await ok(gql(s.url, 'mutation { createGroup(name: "Still live") { id } }', {}, u.token));
    expect((await plain.nth(1)).groupEvent.kind).toBe('CREATED');
    // SSE: the same refusal.
    for (const [query, variables] of conditional) {
      const res = await fetch(`${s.url}/stream`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${u.token}` }, body: JSON.stringify({ query, variables }) });
      const text = await res.text();
      expect([query, res.status < 500, text]).toEqual([query, true, expect.stringContaining('BAD_USER_INPUT')]);
    }
  });

  it("should answer a persisted query it can't take as bad input, and one it doesn't know as Apollo's clients expect", async () => {
    const post = async (body: unknown) => {
      const res = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return [res.status, ((await res.json()) as any).errors?.[0]?.extensions?.code];
    };
    const hash = (q: string) => createHash('sha256').update(q).digest('hex');
    // An unknown version, a hash that doesn't match its query: the client's mistake, not masked as the server's.
    expect(await post({ extensions: { persistedQuery: { version: 2, sha256Hash: 'abc' } } })).toEqual([400, 'BAD_USER_INPUT']);
    expect(await post({ query: '{ __typename }', extensions: { persistedQuery: { version: 1, sha256Hash: 'abc' } } })).toEqual([400, 'BAD_USER_INPUT']);
    // The protocol itself: unknown, then registered with its text, then known by its hash alone.
    expect(await post({ extensions: { persistedQuery: { version: 1, sha256Hash: hash('{ __typename }') } } })).toEqual([200, 'PERSISTED_QUERY_NOT_FOUND']);
    expect(await post({ query: '{ __typename }', extensions: { persistedQuery: { version: 1, sha256Hash: hash('{ __typename }') } } })).toEqual([200, undefined]);
    expect(await post({ extensions: { persistedQuery: { version: 1, sha256Hash: hash('{ __typename }') } } })).toEqual([200, undefined]);
  });

  it('should read a media type in any case, and answer more than 50 bad variables as bad input, not as its own fault', async () => {
    for (const type of ['Application/JSON', 'APPLICATION/JSON; charset=utf-8', 'application/JSON']) {
      const res = await fetch(s.url, { method: 'POST', headers: { 'content-type': type }, body: '{"query":"{ __typename }"}' });
      expect([type, res.status, ((await res.json()) as any).data]).toEqual([type, 200, { __typename: 'Query' }]);
    }
    // graphql-js stops after 50 and says so without a node: it was INTERNAL_SERVER_ERROR (an outside probe).
    const res = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: 'query($ids: [ID!]!) { nodes(ids: $ids) { id } }', variables: { ids: Array(51).fill(true) } }) });
    const codes = ((await res.json()) as any).errors.map((e: any) => e.extensions.code);
    expect([res.status, codes.length, new Set(codes)]).toEqual([400, 51, new Set(['BAD_USER_INPUT'])]);
  });

  it('should let every generated document pass the default limits as clients send it, each alone and with __typename added', async () => {
    const limits = documentLimits(loadEnv({ NODE_ENV: 'production' }));
    const schema = await createSchema();
    // Apollo Client adds __typename to every selection set below an operation's root (its cache needs them): a costlier document.
    const typename = { kind: Kind.FIELD, name: { kind: Kind.NAME, value: '__typename' } } as const;
    const withTypename = (d: DocumentNode) =>
      visit(d, {
        SelectionSet: {
          leave: (set, _key, parent) =>
            (parent as { kind?: Kind } | undefined)?.kind === Kind.OPERATION_DEFINITION || set.selections.some((f) => f.kind === Kind.FIELD && f.name.value === '__typename') ? undefined : { ...set, selections: [...set.selections, typename] },
        },
      });
    const documents = Object.entries(generated).filter(([name]) => name.endsWith('Document')) as [string, DocumentNode][];
    expect(documents.length).toBeGreaterThan(90);
    const problems: string[] = [];
    for (const [name, document] of documents) {
      for (const text of [print(document), print(withTypename(document))]) {
        const checked = limits.check(schema, text);
        if ('errors' in checked) problems.push(`${name}: ${checked.errors.map((e) => e.message).join('; ')}`);
      }
    }
    expect(problems).toEqual([]);
  });
});

/** POSTs `body` chunked (no Content-Length) in 16 KiB writes, as a streaming client does: the answer's status and error code. */
function postChunked(url: string, body: string, headers: Record<string, string>): Promise<[number, string]> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      // An event stream (a 200 over /graphql/stream) has no JSON body: no code.
      res.on('end', () => resolve([res.statusCode!, res.headers['content-type']?.startsWith('application/json') ? JSON.parse(text).errors?.[0]?.extensions?.code : undefined]));
    });
    req.on('error', reject);
    const bytes = Buffer.from(body);
    let at = 0;
    const write = (): void => {
      while (at < bytes.length) if (!req.write(bytes.subarray(at, (at += 16384)))) return void req.once('drain', write);
      req.end();
    };
    write();
  });
}

/**
 * A server whose ATTACHMENT_BYTES_IN_FLIGHT (1 MiB) one user's upload has taken (1,000,000 bytes
 * declared, never sent), and another user, v, with the lobby to send to.
 */
async function budgetHeld() {
  const s = await createTestServer({ ATTACHMENT_BYTES_IN_FLIGHT: String(1024 * 1024) });
  const [u, v] = [await signup(s.url), await signup(s.url)];
  const lobby = await lobbyOf(s.url, v.token);
  const port = Number(new URL(s.url).port);
  const held = connect(port, '127.0.0.1');
  await new Promise((r) => held.once('connect', r));
  held.write(`POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${u.token}\r\nContent-Length: 1000000\r\n\r\n{"query":`);
  await new Promise((r) => setTimeout(r, 200));
  return { s, v, lobby, held, port };
}

describe('size limits', () => {
  it('should answer 413 to a body just over what the largest attachment needs, and accept that attachment', async () => {
    const s = await createTestServer({ ATTACHMENT_MAX_BYTES: '30000' });
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const limit = bodyLimit(s.env);
    const biggest = Buffer.alloc(30000, 'a').toString('base64');
    await request(s.url, SendMessageDocument, { input: { groupId: lobby, attachment: { fileName: 'big.txt', base64: biggest } } }, u.token);

    const before = await snapshot(s.env.DATABASE_URL!);
    const res = await fetch(s.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` },
      body: JSON.stringify({ query: SEND, variables: { input: { groupId: lobby, content: 'x'.repeat(limit) } } }),
    });
    expect(res.status).toBe(413);
    expect(((await res.json()) as any).errors[0].extensions.code).toBe('PAYLOAD_TOO_LARGE');
    // The same body to /graphql/stream: the same answer.
    const streamed = await fetch(`${s.url}/stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${u.token}` },
      body: JSON.stringify({ query: SEND, variables: { input: { groupId: lobby, content: 'x'.repeat(limit) } } }),
    });
    expect([streamed.status, ((await streamed.json()) as any).errors[0].extensions.code]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    // Sent chunked (no Content-Length, as a streamed fetch body or a proxy sends it): the same answer, not a reset connection.
    const over = JSON.stringify({ query: SEND, variables: { input: { groupId: lobby, content: 'x'.repeat(limit) } } });
    const auth = { authorization: `Bearer ${u.token}` };
    expect(await postChunked(s.url, over, auth)).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    expect(await postChunked(`${s.url}/stream`, over, { ...auth, accept: 'text/event-stream' })).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    expect(await postChunked(s.url, over, {})).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
  });

  it('should refuse a body or frame of many small values (PAYLOAD_TOO_LARGE, 1009) before parsing it, and still take a large attachment', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    // 30,000 unused variables, 0.4 MB: before, parsed whole (400,000 held every other user 1.3-1.6 s).
    const variables = Object.fromEntries(Array.from({ length: 30_000 }, (_, i) => [`v${i}`, i]));
    const body = JSON.stringify({ query: '{ me { id } }', variables });
    for (const path of ['', '/stream']) {
      const res = await fetch(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', accept: path ? 'text/event-stream' : 'application/json', authorization: `Bearer ${u.token}` }, body });
      const answer = (await res.json()) as any;
      expect([res.status, answer.errors[0].extensions.code, answer.errors[0].message]).toEqual([413, 'PAYLOAD_TOO_LARGE', expect.stringMatching(/more than 20000 values/)]);
    }
    const w = await initialized(s.wsUrl, u.token);
    w.send({ id: '1', type: 'subscribe', payload: { query: '{ me { id } }', variables } });
    expect((await w.closed).code).toBe(1009);
    // Lists nested in lists hold no separator, and count by their openings: 3,000,000 of them held
    // every other user 4.4-5.9 s (an outside probe).
    const nested = `{"query":"{ me { id } }","variables":{"x":${'['.repeat(30_000)}${']'.repeat(30_000)}}}`;
    const deep = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${u.token}` }, body: nested });
    expect([deep.status, ((await deep.json()) as any).errors[0].extensions.code]).toEqual([413, 'PAYLOAD_TOO_LARGE']);
    // A few thousand are taken, and a message with its attachment near the largest (one long string).
    const fewer = Object.fromEntries(Array.from({ length: 5_000 }, (_, i) => [`v${i}`, i]));
    expect((await ok(gql(s.url, '{ me { id } }', fewer, u.token))).me.id).toBe(u.id);
    const lobby = await lobbyOf(s.url, u.token);
    const data = Buffer.alloc(s.env.ATTACHMENT_MAX_BYTES - 1, 'a').toString('base64');
    const sent = await ok(gql(s.url, SEND, { input: { groupId: lobby, content: 'file, 1, 2, 3: here', attachment: { fileName: 'notes.txt', base64: data } } }, u.token));
    expect(sent.sendMessage.id).toBeTruthy();
  });

  it('should answer a subscription whose variables nest too deeply to key with BAD_USER_INPUT, over a socket that stays open', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const w = await initialized(s.wsUrl, u.token);
    w.send({ id: 'live', type: 'subscribe', payload: { query: 'subscription { groupEvent { kind } }' } });
    // 15,000 brackets, under the count: its key's JSON overflowed the stack, and the socket closed
    // 4500 with its other subscriptions (SSE: 500; an outside probe). Undeclared variables key
    // nothing. A declared one is refused past 32 levels, whatever the stack would take.
    const query = 'subscription($x: [ID!]) { presenceChanged(userIds: $x) { status } }';
    const x = `${'['.repeat(15_000)}${']'.repeat(15_000)}`;
    const w33 = `${'['.repeat(33)}${']'.repeat(33)}`;
    w.send(`{"id":"d33","type":"subscribe","payload":{"query":${JSON.stringify(query)},"variables":{"x":${w33}}}}`);
    expect((await w.next('next', 'd33')).payload.errors[0].message).toMatch(/^The variables nest too deeply/);
    w.send(`{"id":"d32","type":"subscribe","payload":{"query":${JSON.stringify(query)},"variables":{"x":${'['.repeat(32)}${']'.repeat(32)}}}}`);
    expect((await w.next('next', 'd32')).payload.errors[0].message).not.toMatch(/nest too deeply/);
    const frame = (id: string, q: string) => `{"id":"${id}","type":"subscribe","payload":{"query":${JSON.stringify(q)},"variables":{"x":${x}}}}`;
    w.send(frame('deep', query));
    const err = (await w.next('next', 'deep')).payload.errors[0];
    expect([err.extensions.code, err.message]).toEqual(['BAD_USER_INPUT', 'The variables nest too deeply (at most 32 lists or objects in one another).']);
    await w.next('complete', 'deep');
    w.send(frame('unused', 'subscription { groupEvent { kind } }'));
    await new Promise((r) => setTimeout(r, 200));
    const g = await ok(gql(s.url, 'mutation { createGroup(name: "Deep") { id } }', {}, u.token));
    for (const id of ['live', 'unused']) expect((await w.next('next', id)).payload.data.groupEvent.kind).toBeTruthy();
    expect(g.createGroup.id).toBeTruthy();
    const sse = await fetch(`${s.url}/stream`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${u.token}` }, body: `{"query":${JSON.stringify(query)},"variables":{"x":${x}}}` });
    expect(sse.status).toBe(200);
    expect(await sse.text()).toMatch(/"code":"BAD_USER_INPUT"/);
  });

  it("should leave a body with a file unread while ATTACHMENT_BYTES_IN_FLIGHT is taken, and take it in once there is room", async () => {
    const { s, v, lobby, held, port } = await budgetHeld();
    // v's file (a 400,000-byte body) waits for it; a send without a file does not.
    const file = Buffer.alloc(300_000, 'a').toString('base64');
    let answered = false;
    const withFile = gql(s.url, SEND, { input: { groupId: lobby, attachment: { fileName: 'a.txt', base64: file } } }, v.token).finally(() => (answered = true));
    await ok(gql(s.url, SEND, { input: { groupId: lobby, content: 'no file' } }, v.token));
    await new Promise((r) => setTimeout(r, 500));
    expect(answered).toBe(false);
    // Over /graphql/stream too.
    let streamed = false;
    const stream = fetch(`${s.url}/stream`, { method: 'POST', headers: { authorization: `Bearer ${v.token}`, 'content-type': 'application/json', accept: 'text/event-stream' }, body: JSON.stringify({ query: SEND, variables: { input: { groupId: lobby, attachment: { fileName: 'b.txt', base64: file } } } }) }).then(async (r) => ((streamed = true), r.text()));
    // One whose client leaves while it waits leaves the line, and takes nothing once u is gone.
    const leaving = connect(port, '127.0.0.1');
    await new Promise((r) => leaving.once('connect', r));
    leaving.write(`POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer ${v.token}\r\nContent-Length: 900000\r\n\r\n{"query":`);
    await new Promise((r) => setTimeout(r, 500));
    expect([answered, streamed]).toEqual([false, false]);
    leaving.destroy();
    await new Promise((r) => setTimeout(r, 100));
    // u gives up: its room is v's.
    held.destroy();
    expect((await ok(withFile)).sendMessage.id).toBeTruthy();
    expect(await stream).toMatch(/"sendMessage":\{"id"/);
    // Nothing left taken: a body of about 870,000 bytes goes at once (the one that left would have kept 900,000).
    const big = Buffer.alloc(650_000, 'a').toString('base64');
    expect((await ok(gql(s.url, SEND, { input: { groupId: lobby, attachment: { fileName: 'c.txt', base64: big } } }, v.token))).sendMessage.id).toBeTruthy();
  });

  it('should read a small chunked body at once while the file budget is taken, and hold a chunked file for its turn', async () => {
    const { s, v, lobby, held } = await budgetHeld();
    // Sent without a Content-Length (as a streamed fetch body is), a query is no file: it waits for nothing.
    const auth = { authorization: `Bearer ${v.token}` };
    expect(await postChunked(s.url, JSON.stringify({ query: '{ me { id } }' }), auth)).toEqual([200, undefined]);
    expect(await postChunked(`${s.url}/stream`, JSON.stringify({ query: '{ me { id } }' }), { ...auth, accept: 'text/event-stream' })).toEqual([200, undefined]);
    // A file sent so waits its turn once it has grown past a token-less body's size.
    let answered = false;
    const file = Buffer.alloc(300_000, 'a').toString('base64');
    const withFile = postChunked(s.url, JSON.stringify({ query: SEND, variables: { input: { groupId: lobby, attachment: { fileName: 'a.txt', base64: file } } } }), auth).finally(() => (answered = true));
    await new Promise((r) => setTimeout(r, 500));
    expect(answered).toBe(false);
    held.destroy();
    expect(await withFile).toEqual([200, undefined]);
  });

  it('should close a WebSocket with 1009 when a frame is too big', async () => {
    const s = await createTestServer({ ATTACHMENT_MAX_BYTES: '30000' });
    const u = await signup(s.url);
    const w = await initialized(s.wsUrl, u.token);
    w.send({ id: '1', type: 'subscribe', payload: { query: SEND, variables: { input: { content: 'x'.repeat(bodyLimit(s.env) + 10) } } } });
    expect((await w.closed).code).toBe(1009);
  });
});

describe('slow clients', () => {
  /** A raw TCP client that sends `parts` and reports what the server answered and when it closed. */
  function trickle(s: TestServer, parts: string[]): Promise<{ text: string; ms: number }> {
    const { port } = new URL(s.url);
    return new Promise((resolve, reject) => {
      const started = Date.now();
      let text = '';
      const socket = connect(Number(port), '127.0.0.1', () => parts.forEach((p) => socket.write(p)));
      socket.on('data', (d) => (text += d));
      socket.on('error', reject);
      socket.on('close', () => resolve({ text, ms: Date.now() - started }));
    });
  }

  it('should keep an idle kept-alive connection past a load balancer idle timeout, and close it after HTTP_KEEPALIVE_TIMEOUT', async () => {
    // What the server tells clients to plan for: 72 s, not Node's 5 (which reset requests sent as it closed).
    const s = await createTestServer();
    const answered = await fetch(s.url.replace('/graphql', '/healthz'));
    expect(answered.headers.get('keep-alive')).toBe('timeout=72');
    const short = await createTestServer({ HTTP_KEEPALIVE_TIMEOUT: '1s' });
    const idle = await trickle(short, ['GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n']);
    expect(idle.text).toMatch(/^HTTP\/1\.1 200[^]*keep-alive: timeout=1\r\n/i);
    expect(idle.ms).toBeGreaterThanOrEqual(900);
    expect(idle.ms).toBeLessThan(4000);
  });

  it('should cut a client that never finishes its headers, and one that never finishes its body', async () => {
    const s = await createTestServer({ HTTP_HEADERS_TIMEOUT: '300ms', HTTP_REQUEST_TIMEOUT: '600ms' });
    const headers = await trickle(s, ['POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n']);
    expect(headers.text).toMatch(/^HTTP\/1\.1 408/);
    expect(headers.ms).toBeLessThan(3000);
    const body = await trickle(s, ['POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"query":']);
    expect(body.text).toMatch(/^HTTP\/1\.1 408/);
    expect(body.ms).toBeLessThan(3000);
    // An SSE stream or a socket outlives the request timeout: only receiving the request is bounded.
    const u = await signup(s.url);
    const w = await initialized(s.wsUrl, u.token);
    await new Promise((r) => setTimeout(r, 1500)); // two request timeouts: what is under test
    w.send({ id: '1', type: 'subscribe', payload: { query: '{ me { id } }' } });
    expect((await w.next('next', '1')).payload.data.me.id).toBe(u.id);
  });
});

describe('WebSocket limits', () => {
  it('should close with 4408 a socket that sends no connection_init in time', async () => {
    const s = await createTestServer({ WS_CONNECTION_INIT_TIMEOUT: '300ms' });
    const r = raw(s.wsUrl);
    await r.opened;
    const started = Date.now();
    const { code } = await r.closed;
    expect(code).toBe(4408);
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('should refuse the 51st operation on one socket, and accept another once one ends', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const w = await initialized(s.wsUrl, u.token);
    for (let i = 1; i <= 50; i++) w.send({ id: `s${i}`, type: 'subscribe', payload: { query: GROUP_EVENTS } });
    w.send({ id: 's51', type: 'subscribe', payload: { query: GROUP_EVENTS } });
    const err = await w.next('error', 's51');
    expect(err.payload[0].extensions.code).toBe('RATE_LIMITED');
    expect(w.messages.filter((m) => m.type === 'error')).toEqual([]);
    w.send({ id: 's1', type: 'complete' });
    await running(s, 'groupEvent', 49);
    w.send({ id: 's52', type: 'subscribe', payload: { query: GROUP_EVENTS } });
    await running(s, 'groupEvent', 50);
    // s52 is live: a public group created now reaches it.
    await buildGroup(s.url, u, { name: 'limits' });
    const next = await w.next('next', 's52');
    expect(next.payload.data.groupEvent.kind).toBe('CREATED');
  });

  it("should close a user's 21st socket with 1013 and keep the first 20", async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const other = await signup(s.url);
    const sockets = [];
    for (let i = 0; i < 20; i++) sockets.push(await initialized(s.wsUrl, u.token));
    const extra = raw(s.wsUrl);
    await extra.opened;
    extra.send({ type: 'connection_init', payload: { token: u.token } });
    expect(await extra.closed).toEqual({ code: 1013, reason: 'Too many connections' });
    // Others are not affected, and a slot frees up when one closes.
    await initialized(s.wsUrl, other.token);
    sockets[0].socket.close(1000);
    await sockets[0].closed;
    // Acknowledged once the server has counted the close (until then it refuses with 1013).
    await eventually(async () => {
      const r = raw(s.wsUrl);
      await r.opened;
      r.send({ type: 'connection_init', payload: { token: u.token } });
      return Promise.race([r.next('connection_ack').then(() => true), r.closed.then(() => false)]);
    });
    expect(sockets.slice(1).every((r) => r.socket.readyState === WebSocket.OPEN)).toBe(true);
  });

  it('should ping idle sockets to keep them alive', async () => {
    const s = await createTestServer({ WS_KEEPALIVE: '200ms' });
    const u = await signup(s.url);
    const w = await initialized(s.wsUrl, u.token);
    let pings = 0;
    w.socket.on('ping', () => pings++);
    await eventually(() => pings >= 2);
    expect(w.socket.readyState).toBe(WebSocket.OPEN);
  });

  it("should send a busy socket's keep-alive ping with a frame, and still cut a socket that stops answering", async () => {
    // 1 s: four slices of 250 ms; a ping waits up to half a round for a frame to go with.
    const s = await createTestServer({ WS_KEEPALIVE: '1s' });
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const live = await initialized(s.wsUrl, u.token);
    const mute = await muteAfterInit(s.wsUrl, u.token);
    for (const r of [live, mute]) {
      r.send({ id: 'm', type: 'subscribe', payload: { query: 'subscription { messageAdded { id } }' } });
      await r.sync();
    }
    // A ping read with a frame in one chunk: ws emits both before any microtask runs.
    let pings = 0;
    let carried = 0;
    let justPinged = false;
    live.socket.on('ping', () => {
      pings++;
      justPinged = true;
      queueMicrotask(() => (justPinged = false));
    });
    live.socket.on('message', () => {
      if (justPinged) carried++;
      justPinged = false;
    });
    let sending = true;
    const sends = (async () => {
      for (let i = 0; sending; i++) {
        await request(s.url, SendMessageDocument, { input: { groupId: lobby, content: `tick ${i}` } }, u.token);
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    try {
      // Frames every 40 ms: the mute socket is cut all the same (its pongs are what count).
      expect((await mute.closed).code).toBe(1006);
      await eventually(() => carried >= 3, 15_000);
      expect(live.socket.readyState).toBe(WebSocket.OPEN);
      // A ping sent alone is read in a chunk of its own, before the next frame: carried this way,
      // each arrives with one (sent at once, as before, none of them did in the check of this test).
      expect(carried).toBeGreaterThanOrEqual(pings / 2);
    } finally {
      sending = false;
      await sends;
    }
  });

  it('should spread a keep-alive round over its interval, each socket pinged once a round', async () => {
    // 1 s: four slices of 250 ms. Pinged all at once, 5,000 sockets held the event loop ~50 ms.
    const s = await createTestServer({ WS_KEEPALIVE: '1s' });
    const u = await signup(s.url);
    const pingsAt: number[][] = [];
    for (let i = 0; i < 8; i++) {
      const w = await initialized(s.wsUrl, u.token);
      const mine: number[] = [];
      pingsAt.push(mine);
      w.socket.on('ping', () => mine.push(Date.now()));
    }
    await eventually(() => pingsAt.every((p) => p.length >= 2), 10_000);
    const firsts = pingsAt.map((p) => p[0]);
    // Eight sockets dealt over four slices: their first pings span three turns (750 ms), not one.
    expect(Math.max(...firsts) - Math.min(...firsts)).toBeGreaterThanOrEqual(400);
    // Once a round each: a second ping a round (1 s) after the first, not a slice (250 ms) after.
    for (const p of pingsAt) expect(p[1] - p[0]).toBeGreaterThan(700);
  });
});

describe('origin checks', () => {
  let s: TestServer;
  let u: TestUser;
  beforeEach(async () => {
    // Written with capitals, a default port and a trailing slash, as an operator may: a browser's
    // Origin has none of them.
    s = await createTestServer({ CORS_ORIGINS: 'https://app.example, https://Admin.Example:443/, Capacitor://LocalHost' });
    u = await signup(s.url);
  });

  it('should answer CORS for an allowed origin and refuse any other over HTTP', async () => {
    const pre = await fetch(s.url, {
      method: 'OPTIONS',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get('access-control-allow-origin')).toBe('https://app.example');
    expect(pre.headers.get('access-control-allow-headers')).toMatch(/authorization/);

    const good = await fetch(s.url, { method: 'POST', headers: { origin: 'https://admin.example', 'content-type': 'application/json', authorization: `Bearer ${u.token}` }, body: JSON.stringify({ query: ME }) });
    expect(good.status).toBe(200);
    expect(good.headers.get('access-control-allow-origin')).toBe('https://admin.example');
    expect(((await good.json()) as any).data.me.id).toBe(u.id);
    // An app's own scheme (a Capacitor WebView's page), as its WebView sends it.
    const app = await fetch(s.url, { method: 'POST', headers: { origin: 'capacitor://localhost', 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ __typename }' }) });
    expect([app.status, app.headers.get('access-control-allow-origin')]).toEqual([200, 'capacitor://localhost']);

    const before = await snapshot(s.env.DATABASE_URL!);
    const bad = await fetch(s.url, {
      method: 'POST',
      headers: { origin: 'https://evil.example', 'content-type': 'application/json', authorization: `Bearer ${u.token}` },
      body: JSON.stringify({ query: 'mutation { createGroup(name: "csrf") { id } }' }),
    });
    expect([bad.status, bad.headers.get('vary')]).toEqual([403, 'Origin']);
    expect(bad.headers.get('access-control-allow-origin')).toBeNull();
    expect(((await bad.json()) as any).errors[0].extensions.code).toBe('FORBIDDEN');
    const badPre = await fetch(s.url, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' } });
    expect(badPre.status).toBe(403);
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
  });

  it("should say Vary: Origin on every answer, and allow the headers a page's preflight asks for", async () => {
    // An answer without Origin (an <img> of an attachment link) is cached by the browser and served
    // to a later fetch() of the same URL from an allowed page: it must say that it depends on Origin.
    const plain = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ __typename }' }) });
    expect([plain.status, plain.headers.get('vary'), plain.headers.get('access-control-allow-origin')]).toEqual([200, 'Origin', null]);
    // Apollo Client's own headers, and any other a client library adds: the token authorizes, not them.
    const asked = 'authorization, content-type, apollographql-client-name, apollographql-client-version';
    const pre = await fetch(s.url, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': asked } });
    expect([pre.status, pre.headers.get('access-control-allow-headers'), pre.headers.get('access-control-allow-credentials')]).toEqual([204, asked, null]);
    expect(pre.headers.get('vary')).toBe('Origin, Access-Control-Request-Headers');
    // A list that is not header names gets the default list back.
    const odd = await fetch(s.url, { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, bad header' } });
    expect(odd.headers.get('access-control-allow-headers')).toMatch(/^authorization, content-type,/);
    // The download's file name is readable by the page.
    const good = await fetch(s.url, { method: 'POST', headers: { origin: 'https://app.example', 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ __typename }' }) });
    expect(good.headers.get('access-control-expose-headers')).toMatch(/content-disposition/);
  });

  it("should answer Access-Control-Allow-Origin: * with or without an Origin when every origin is allowed", async () => {
    const open = await createTestServer({ CORS_ORIGINS: '*' });
    for (const origin of [undefined, 'https://anywhere.example']) {
      const r = await fetch(open.url, { method: 'POST', headers: { 'content-type': 'application/json', ...(origin ? { origin } : {}) }, body: JSON.stringify({ query: '{ __typename }' }) });
      expect([r.status, r.headers.get('access-control-allow-origin'), r.headers.get('vary')]).toEqual([200, '*', null]);
    }
  });

  it('should refuse a WebSocket upgrade from an origin not allowed', async () => {
    const bad = raw(s.wsUrl, { origin: 'https://evil.example' });
    await expect(bad.opened).rejects.toThrow(/403/);
    const good = raw(s.wsUrl, { origin: 'https://app.example' });
    await good.opened;
    good.send({ type: 'connection_init', payload: { token: u.token } });
    await good.next('connection_ack');
  });
});

describe('rate limits', () => {
  it('should answer RATE_LIMITED with retryAfter once a user sends too many messages, and not to others', async () => {
    const s = await createTestServer({ RATE_LIMIT_SEND_MESSAGE: '3/1m' });
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const lobby = await lobbyOf(s.url, a.token);
    for (let i = 0; i < 3; i++) await request(s.url, SendMessageDocument, { input: { groupId: lobby, content: `m${i}` } }, a.token);
    const before = await snapshot(s.env.DATABASE_URL!);
    const r = await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'too many' } }, a.token);
    expect(codeOf(r)).toBe('RATE_LIMITED');
    expect(r.errors![0].extensions!.retryAfter).toBeGreaterThanOrEqual(1);
    expect(r.errors![0].extensions!.retryAfter).toBeLessThanOrEqual(60);
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    // Over the socket too: the limit is per user, not per transport.
    const w = await initialized(s.wsUrl, a.token);
    w.send({ id: 'm', type: 'subscribe', payload: { query: SEND, variables: { input: { groupId: lobby, content: 'via ws' } } } });
    const next = await w.next('next', 'm');
    expect(next.payload.errors[0].extensions.code).toBe('RATE_LIMITED');
    await request(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'b is fine' } }, b.token);
  });

  it("should let a send's retry cost nothing (it writes nothing): under the limit no point, past it the first message; a new key or another message under it refused as before", async () => {
    const s = await createTestServer({ RATE_LIMIT_SEND_MESSAGE: '2/1m' });
    const a = await signup(s.url);
    const lobby = await lobbyOf(s.url, a.token);
    const first = (await request(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'kept', clientMessageId: 'k-1' } }, a.token)).sendMessage;
    // Under the limit, a retry costs nothing either: the second message still fits.
    for (let i = 0; i < 3; i++) expect((await request(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'kept', clientMessageId: 'k-1' } }, a.token)).sendMessage.id).toBe(first.id);
    await request(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'second' } }, a.token);
    const before = await snapshot(s.env.DATABASE_URL!);
    const retry = await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'kept', clientMessageId: 'k-1' } }, a.token);
    expect([retry.errors, retry.data?.sendMessage.id]).toEqual([undefined, first.id]);
    // Over the socket too.
    const w = await initialized(s.wsUrl, a.token);
    w.send({ id: 'r', type: 'subscribe', payload: { query: SEND, variables: { input: { groupId: lobby, content: 'kept', clientMessageId: 'k-1' } } } });
    expect((await w.next('next', 'r')).payload).toMatchObject({ data: { sendMessage: { id: first.id } } });
    expect(codeOf(await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'new', clientMessageId: 'k-2' } }, a.token))).toBe('RATE_LIMITED');
    expect(codeOf(await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'not the same', clientMessageId: 'k-1' } }, a.token))).toBe('CONFLICT');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
  });

  it("should give back the point of a retry that raced its first send into the database (found it stored only as its own insert failed)", async () => {
    const s = await createTestServer({ RATE_LIMIT_SEND_MESSAGE: '2/1m' });
    const a = await signup(s.url);
    const lobby = await lobbyOf(s.url, a.token);
    const input = { groupId: lobby, content: 'once', clientMessageId: 'race-1' };
    const first = (await request(s.url, SendMessageDocument, { input }, a.token)).sendMessage;
    // The retry's lookup misses it (as while the first was still in flight): its insert then finds it.
    const miss = jest.spyOn(messageRepository, 'byClientId').mockResolvedValueOnce(null);
    try {
      expect((await request(s.url, SendMessageDocument, { input }, a.token)).sendMessage.id).toBe(first.id);
    } finally {
      miss.mockRestore();
    }
    await request(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'second' } }, a.token);
    expect(codeOf(await attempt(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'third' } }, a.token))).toBe('RATE_LIMITED');
  });

  it('should answer copies sent together with their first for what they ask, not RATE_LIMITED by the point the first held while under way', async () => {
    const s = await createTestServer({ RATE_LIMIT_FRIEND_REQUEST: '3/1h', RATE_LIMIT_GROUP_MEMBERSHIP: '5/1h', RATE_LIMIT_SEND_MESSAGE: '2/1m' });
    const [a, b, c, d] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const FRIEND = 'mutation($u: ID!) { sendFriendRequest(userId: $u) { id } }';
    await ok(gql(s.url, FRIEND, { u: b.id }, a.token));
    // Two points left of three: 30 copies sent at once are CONFLICT but the first, which alone spends.
    const copies = await Promise.all(Array.from({ length: 30 }, () => gql(s.url, FRIEND, { u: c.id }, a.token)));
    expect(copies.map(codeOf).sort()).toEqual([...Array(29).fill('CONFLICT'), undefined]);
    await ok(gql(s.url, FRIEND, { u: d.id }, a.token));
    expect(codeOf(await gql(s.url, FRIEND, { u: (await signup(s.url)).id }, a.token))).toBe('RATE_LIMITED');
    // Leaving a group four times at once with two points left: one leaves, the others are not members.
    const group = (await ok(gql(s.url, 'mutation { createGroup(name: "twice") { id } }', {}, b.token))).createGroup.id;
    const JOIN = 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }';
    const LEAVE = 'mutation($g: ID!) { leaveGroup(groupId: $g) }';
    await ok(gql(s.url, JOIN, { g: group }, d.token));
    await ok(gql(s.url, LEAVE, { g: group }, d.token));
    await ok(gql(s.url, JOIN, { g: group }, d.token));
    const leaves = await Promise.all([0, 1, 2, 3].map(() => gql(s.url, LEAVE, { g: group }, d.token)));
    expect(leaves.map(codeOf).sort()).toEqual(['FORBIDDEN', 'FORBIDDEN', 'FORBIDDEN', undefined]);
    // A send's copies at its last point: each gets the first message, none RATE_LIMITED.
    const lobby = await lobbyOf(s.url, a.token);
    await request(s.url, SendMessageDocument, { input: { groupId: lobby, content: 'one' } }, a.token);
    const input = { groupId: lobby, content: 'two', clientMessageId: 'dup-1' };
    const sent = await Promise.all([0, 1, 2, 3, 4].map(() => attempt(s.url, SendMessageDocument, { input }, a.token)));
    expect(sent.map((r) => r.errors?.[0].extensions?.code)).toEqual([undefined, undefined, undefined, undefined, undefined]);
    expect(new Set(sent.map((r) => r.data!.sendMessage.id)).size).toBe(1);
  });

  it('should limit signups per address, a taken name counted, a bad input not', async () => {
    const s = await createTestServer({ RATE_LIMIT_SIGNUP: '3/1h' });
    const taken = await signup(s.url);
    // Bad input (a bad name, a short password) spends nothing of the limit; asking for a taken name
    // does (it tells anyone, without a token, whether a name is held).
    const refused = [{ ...buildUser(), username: 'a b' }, { ...buildUser(), password: 'short' }, { ...buildUser(), username: taken.username.toUpperCase() }];
    const codes = [];
    for (const input of refused) codes.push(codeOf(await attempt(s.url, SignupDocument, input)));
    expect(codes).toEqual(['BAD_USER_INPUT', 'BAD_USER_INPUT', 'CONFLICT']);
    await signup(s.url);
    const before = await snapshot(s.env.DATABASE_URL!);
    const r = await attempt(s.url, SignupDocument, buildUser());
    expect(codeOf(r)).toBe('RATE_LIMITED');
    expect(r.errors![0].extensions!.retryAfter).toBeGreaterThan(60);
    // Past it, before the signup looks at what it asks: a bad name, a taken one.
    for (const input of refused) expect(codeOf(await attempt(s.url, SignupDocument, input))).toBe('RATE_LIMITED');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
  });

  it('should limit login attempts per address, successful ones included', async () => {
    const s = await createTestServer({ RATE_LIMIT_LOGIN: '3/1h' });
    const u = await signup(s.url);
    for (let i = 0; i < 3; i++) await login(s.url, u);
    const r = await attempt(s.url, LoginDocument, { username: u.username, password: u.password });
    expect(codeOf(r)).toBe('RATE_LIMITED');
    expect(r.errors![0].extensions!.retryAfter).toBeGreaterThan(0);
    expect(r.data?.login).toBeFalsy();
  });

  it('should refuse operations on a socket that sends too many messages, then close it', async () => {
    const s = await createTestServer({ RATE_LIMIT_WS_MESSAGES: '5/1m' });
    const u = await signup(s.url);
    const w = await initialized(s.wsUrl, u.token); // message 1
    for (let i = 2; i <= 5; i++) w.send({ id: `q${i}`, type: 'subscribe', payload: { query: ME } });
    for (let i = 2; i <= 5; i++) expect((await w.next('next', `q${i}`)).payload.data.me.id).toBe(u.id);
    w.send({ id: 'q6', type: 'subscribe', payload: { query: ME } });
    const err = await w.next('error', 'q6');
    expect(err.payload[0].extensions.code).toBe('RATE_LIMITED');
    expect(err.payload[0].extensions.retryAfter).toBeGreaterThan(0);
    for (let i = 7; i <= 11; i++) w.send({ type: 'ping' });
    expect((await w.closed).code).toBe(1008);
  });
});

describeRedis('rate limits across instances', () => {
  /** Two instances with these rates, a user, the lobby and a Redis client of the test's own. */
  async function twoInstances(overrides: Overrides) {
    const a = await createTestServer(overrides);
    const b = await createTestServer(overrides, { clean: false });
    const u = await signup(a.url);
    return { a, b, u, lobby: await lobbyOf(a.url, u.token), redis: new Redis(a.env.REDIS_URL!) };
  }

  it('should count sendMessage and signup in Redis, so a second instance sees the first one’s count', async () => {
    const overrides = { RATE_LIMIT_SEND_MESSAGE: '3/1m', RATE_LIMIT_SIGNUP: '3/1h' };
    const a = await createTestServer(overrides);
    const b = await createTestServer(overrides, { clean: false });
    const u = await signup(a.url);
    const lobby = await lobbyOf(a.url, u.token);
    await request(a.url, SendMessageDocument, { input: { groupId: lobby, content: '1' } }, u.token);
    await request(b.url, SendMessageDocument, { input: { groupId: lobby, content: '2' } }, u.token);
    await request(a.url, SendMessageDocument, { input: { groupId: lobby, content: '3' } }, u.token);
    expect(codeOf(await attempt(b.url, SendMessageDocument, { input: { groupId: lobby, content: '4' } }, u.token))).toBe('RATE_LIMITED');
    expect(codeOf(await attempt(a.url, SendMessageDocument, { input: { groupId: lobby, content: '5' } }, u.token))).toBe('RATE_LIMITED');

    await signup(b.url);
    await signup(a.url); // the third signup from this address
    expect(codeOf(await attempt(b.url, SignupDocument, buildUser()))).toBe('RATE_LIMITED');
  });

  it('should spend no point of a limit on a refused call, on either instance, and refuse the call past the limit', async () => {
    const overrides = { RATE_LIMIT_CREATE_GROUP: '3/1h', RATE_LIMIT_FRIEND_REQUEST: '2/1h', RATE_LIMIT_EDIT: '2/1m', RATE_LIMIT_SEND_MESSAGE: '2/1m' };
    const a = await createTestServer(overrides);
    const b = await createTestServer(overrides, { clean: false });
    const [u, v, w] = [await signup(a.url), await signup(a.url), await signup(a.url)];
    const lobby = await lobbyOf(a.url, u.token);
    const CREATE = 'mutation($n: String!) { createGroup(name: $n) { id } }';
    const FRIEND = 'mutation($u: ID!) { sendFriendRequest(userId: $u) { id } }';
    const EDIT = 'mutation($m: ID!, $c: String!) { editMessage(messageId: $m, content: $c) { id } }';
    const unknown = '00000000-0000-4000-8000-000000000000';
    // Refused for what they ask, on both instances, well past each limit: bad names, oneself, a message that isn't there.
    for (let i = 0; i < 5; i++) {
      const on = i % 2 ? b : a;
      expect(codeOf(await gql(on.url, CREATE, { n: '   ' }, u.token))).toBe('BAD_USER_INPUT');
      expect(codeOf(await gql(on.url, FRIEND, { u: u.id }, u.token))).toBe('BAD_USER_INPUT');
      expect(codeOf(await gql(on.url, EDIT, { m: unknown, c: 'x' }, u.token))).toBe('NOT_FOUND');
      expect(codeOf(await gql(on.url, SEND, { input: { groupId: unknown, content: 'x' } }, u.token))).toBe('NOT_FOUND');
    }
    // Every point is left: three groups, two requests, two edits, each limit's last call on the other instance.
    for (const [i, on] of [a, b, a].entries()) await ok(gql(on.url, CREATE, { n: `g${i}` }, u.token));
    expect(codeOf(await gql(b.url, CREATE, { n: 'one too many' }, u.token))).toBe('RATE_LIMITED');
    await ok(gql(a.url, FRIEND, { u: v.id }, u.token));
    await ok(gql(b.url, FRIEND, { u: w.id }, u.token));
    expect(codeOf(await gql(a.url, FRIEND, { u: (await signup(a.url)).id }, u.token))).toBe('RATE_LIMITED');
    const m = (await ok(gql(a.url, SEND, { input: { groupId: lobby, content: 'draft' } }, u.token))).sendMessage.id;
    await ok(gql(b.url, SEND, { input: { groupId: lobby, content: 'second' } }, u.token));
    expect(codeOf(await gql(a.url, SEND, { input: { groupId: lobby, content: 'third' } }, u.token))).toBe('RATE_LIMITED');
    await ok(gql(a.url, EDIT, { m, c: 'one' }, u.token));
    await ok(gql(b.url, EDIT, { m, c: 'two' }, u.token));
    expect(codeOf(await gql(a.url, EDIT, { m, c: 'three' }, u.token))).toBe('RATE_LIMITED');
  });

  it('should lease a sender\'s points from Redis in blocks, never letting more through than the limit across instances', async () => {
    // 40 points: the first send leases 40/16 = 2 (one spent); below 32 left, one point per send.
    const { a, b, u, lobby, redis } = await twoInstances({ RATE_LIMIT_SEND_MESSAGE: '40/1m' });
    try {
      const counted = async () => Number(await redis.get(redisName(`rl:send-message:${u.id}`)));
      await request(a.url, SendMessageDocument, { input: { groupId: lobby, content: 'a1' } }, u.token);
      expect(await counted()).toBe(2);
      // The leased point: spent on this instance, no Redis count.
      await request(a.url, SendMessageDocument, { input: { groupId: lobby, content: 'a2' } }, u.token);
      expect(await counted()).toBe(2);
      let sent = 2;
      for (const url of [b.url, a.url]) {
        for (;;) {
          const r = await attempt(url, SendMessageDocument, { input: { groupId: lobby, content: `m${sent}` } }, u.token);
          if (codeOf(r) === 'RATE_LIMITED') break;
          expect(r.errors).toBeUndefined();
          sent++;
        }
      }
      expect(await counted()).toBe(40);
      expect(sent).toBe(40);
    } finally {
      redis.disconnect();
    }
  });

  it('should let a sender\'s first send of a window through before Redis counts it, lease behind it, and stay within one send per instance of a large limit', async () => {
    // 64 points: a first send goes ahead; its lease (64/16 = 4, that send one of them) is taken behind it.
    const { a, b, u, lobby, redis } = await twoInstances({ RATE_LIMIT_SEND_MESSAGE: '64/1m' });
    const users = [u, ...(await Promise.all(Array.from({ length: 7 }, () => signup(a.url))))];
    const leaseKeys: number[] = [];
    const monitor = await monitorRedis(a.env.REDIS_URL!, ({ source, args }) => {
      // EVAL the first time Redis meets the script, EVALSHA after; the key count follows either way.
      if (source !== 'lua' && /^eval(sha)?$/i.test(args[0]) && users.some((u) => args.includes(redisName(`rl:send-message:${u.id}`)))) leaseKeys.push(Number(args[2]));
    });
    try {
      const counted = async (id: string) => Number(await redis.get(redisName(`rl:send-message:${id}`)));
      // Eight first sends at once: answered, then counted in Redis by fewer scripts than senders.
      await Promise.all(users.map((u) => request(a.url, SendMessageDocument, { input: { groupId: lobby, content: 'first' } }, u.token)));
      await eventually(async () => (expect(await Promise.all(users.map((u) => counted(u.id)))).toEqual(users.map(() => 4)), true));
      expect(leaseKeys.reduce((n, k) => n + k, 0)).toBe(users.length);
      expect(leaseKeys.length).toBeLessThan(users.length);
      // Its next three sends spend the lease here: no Redis count.
      for (let i = 0; i < 3; i++) await request(a.url, SendMessageDocument, { input: { groupId: lobby, content: `a${i}` } }, u.token);
      expect(await counted(u.id)).toBe(4);
      // Until refused on both instances: the 64 points, and at most one send ahead on b (a's went first).
      let sent = 4;
      for (const url of [b.url, a.url, b.url]) {
        for (;;) {
          const r = await attempt(url, SendMessageDocument, { input: { groupId: lobby, content: `m${sent}` } }, u.token);
          if (codeOf(r) === 'RATE_LIMITED') break;
          expect(r.errors).toBeUndefined();
          sent++;
        }
      }
      expect(sent).toBe(64);
      expect(await counted(u.id)).toBe(64);
      // Refused now: each later send asks Redis first, and none goes ahead.
      expect(codeOf(await attempt(a.url, SendMessageDocument, { input: { groupId: lobby, content: 'late' } }, u.token))).toBe('RATE_LIMITED');
      const rows = await gql(a.url, 'query($g: ID) { history(conversation: { groupId: $g }, last: 100) { edges { node { sender { id } } } } }', { g: lobby }, u.token);
      expect(rows.data.history.edges.filter((e: { node: { sender: { id: string } } }) => e.node.sender.id === u.id)).toHaveLength(64);
    } finally {
      monitor.close();
      redis.disconnect();
    }
  });

  it('should let a first send go ahead on each instance even when the window is used up, one over the limit each at most', async () => {
    const { a, b, u, lobby, redis } = await twoInstances({ RATE_LIMIT_SEND_MESSAGE: '64/1m' });
    try {
      // Another instance used the whole window already.
      await redis.set(redisName(`rl:send-message:${u.id}`), 64, 'PX', 60_000);
      const results = [];
      for (const url of [a.url, b.url, a.url, b.url]) results.push(codeOf(await attempt(url, SendMessageDocument, { input: { groupId: lobby, content: 'x' } }, u.token)) ?? 'SENT');
      // Each instance's first went ahead (its lease came back empty); every later one was asked of Redis.
      expect(results).toEqual(['SENT', 'SENT', 'RATE_LIMITED', 'RATE_LIMITED']);
      expect(Number(await redis.get(redisName(`rl:send-message:${u.id}`)))).toBe(64);
    } finally {
      redis.disconnect();
    }
  });
});
