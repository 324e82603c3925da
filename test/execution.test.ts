import { createHook } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { createSchema } from '../src/graphql/schema';
import { UnauthenticatedError } from '../src/shared/errors';
import { gql, ok } from './helpers/graphql';
import { createTestServer } from './helpers/server';
import { signup } from './helpers/factories';
import { initialized } from './helpers/raw-socket';
import { RateLimit } from '../src/shared/ratelimit';

/** A response as a client compares it: body and status, without the per-request id. */
async function answer(url: string, query: string, variables: Record<string, unknown>, token?: string) {
  const r = await gql(url, query, variables, token);
  const errors = r.errors?.map((e) => ({ ...e, extensions: { ...e.extensions, requestId: undefined } }));
  return JSON.parse(JSON.stringify({ status: r.status, data: r.data, errors }));
}

describe('query execution', () => {
  // HTTP queries are compiled (graphql-jit) from a document's second use on; the first runs on graphql-js.
  it('should answer a repeated query exactly as its first time, errors with their codes, paths and locations included', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const g = (await ok(gql(s.url, 'mutation { createGroup(name: "Same") { id } }', {}, u.token))).createGroup.id;
    await ok(gql(s.url, 'mutation($g: ID!) { sendMessage(input: { groupId: $g, content: "one" }) { id } }', { g }, u.token));
    const cases: [string, string, Record<string, unknown>, string | undefined][] = [
      [
        'refused fields next to answered ones, through fragments and aliases',
        `query Mixed($id: ID!) { me { ...Who } found: group(id: $id) { ...G } again: group(id: $id) { id name } }
         fragment Who on User { id username } fragment G on Group { id name isLobby }`,
        { id: g },
        undefined,
      ],
      [
        'a page with nested fields and a refusal that nulls the whole answer',
        `query Page($g: ID!, $other: ID!) { me { id } mine: history(conversation: { groupId: $g }, last: 5) { edges { cursor node { id content createdAt sender { id username displayName } } } pageInfo { hasPreviousPage } }
         theirs: history(conversation: { groupId: $other }) { edges { node { id } } } }`,
        { g, other: randomUUID() },
        u.token,
      ],
      ['a page as its member reads it', 'query($g: ID!) { history(conversation: { groupId: $g }, first: 5) { edges { node { content sender { username } } } } }', { g }, u.token],
      ['an upper-case id in a variable', 'query($g: ID!) { group(id: $g) { id } history(conversation: { groupId: $g }) { edges { node { content } } } }', { g: g.toUpperCase() }, u.token],
      ['an upper-case id in the document', `{ group(id: "${g.toUpperCase()}") { id } history(conversation: { groupId: "${g.toUpperCase()}" }) { edges { node { content } } } }`, {}, u.token],
      ['a variable of the wrong type', 'query($n: Int) { groups(first: $n) { totalCount } }', { n: 'many' }, u.token],
    ];
    for (const [name, query, variables, token] of cases) {
      const first = await answer(s.url, query, variables, token);
      for (let i = 0; i < 3; i++) expect([name, await answer(s.url, query, variables, token)]).toEqual([name, first]);
      if (first.errors) for (const e of first.errors) expect([name, e.extensions.code]).toEqual([name, expect.stringMatching(/^[A-Z_]+$/)]);
    }
    const mixed = await answer(s.url, cases[0][1], { id: g });
    expect(mixed.data).toEqual({ me: null, found: null, again: null });
    expect(mixed.errors.map((e: any) => [e.path, e.extensions.code, e.locations.length])).toEqual([
      [['found'], 'UNAUTHENTICATED', 1],
      [['again'], 'UNAUTHENTICATED', 1],
    ]);
    const upper = await answer(s.url, cases[3][1], cases[3][2], u.token);
    expect(upper.data).toEqual({ group: { id: g }, history: { edges: [{ node: { content: 'one' } }] } });
    const page = await answer(s.url, cases[1][1], cases[1][2], u.token);
    expect([page.data ?? null, page.errors.map((e: any) => [e.path, e.extensions.code])]).toEqual([null, [[['theirs'], 'NOT_FOUND']]]);
  });

  // Over a WebSocket too: queries and one-field mutations run compiled from a document's second use.
  it('should answer a repeated query or mutation over a WebSocket exactly as its first time', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const g = (await ok(gql(s.url, 'mutation { createGroup(name: "Same") { id } }', {}, u.token))).createGroup.id;
    const m = (await ok(gql(s.url, 'mutation($g: ID!) { sendMessage(input: { groupId: $g, content: "one" }) { id } }', { g }, u.token))).sendMessage.id;
    const ws = await initialized(s.wsUrl, u.token);
    let n = 0;
    const viaSocket = async (query: string, variables: Record<string, unknown>) => {
      const id = String(++n);
      ws.send({ id, type: 'subscribe', payload: { query, variables } });
      const next = await ws.next('next', id);
      await ws.next('complete', id);
      return next.payload;
    };
    const cases: [string, string, Record<string, unknown>][] = [
      [
        'a page with nested fields and a refusal that nulls the whole answer',
        `query Page($g: ID!, $other: ID!) { me { id } mine: history(conversation: { groupId: $g }, last: 5) { edges { cursor node { id content createdAt sender { id username } } } }
         theirs: history(conversation: { groupId: $other }) { edges { node { id } } } }`,
        { g, other: randomUUID() },
      ],
      ['fragments and an upper-case id', 'query($g: ID!) { group(id: $g) { ...G } } fragment G on Group { id name }', { g: g.toUpperCase() }],
      ['a variable of the wrong type', 'query($n: Int) { groups(first: $n) { totalCount } }', { n: 'many' }],
      ['a mutation', 'mutation($g: ID!) { setTyping(conversation: { groupId: $g }) }', { g }],
      ['a mutation refused by its service', 'mutation($g: ID!, $m: ID) { markRead(conversation: { groupId: $g }, messageId: $m) { unreadCount } }', { g, m: randomUUID() }],
      ['a mutation that succeeds', 'mutation($g: ID!, $m: ID) { markRead(conversation: { groupId: $g }, messageId: $m) { id unreadCount lastReadMessageId } }', { g, m }],
    ];
    for (const [name, query, variables] of cases) {
      const first = await viaSocket(query, variables);
      for (let i = 0; i < 3; i++) expect([name, await viaSocket(query, variables)]).toEqual([name, first]);
      // The same answer as over HTTP (whose own repeats are checked above).
      const http = await gql(s.url, query, variables, u.token);
      expect([name, JSON.parse(JSON.stringify(first.errors?.map((e: any) => [e.message, e.path, e.extensions.code]) ?? null))]).toEqual([
        name,
        JSON.parse(JSON.stringify(http.errors?.map((e) => [e.message, e.path, e.extensions?.code]) ?? null)),
      ]);
    }
    expect((await viaSocket(cases[4][1], cases[4][2])).errors.map((e: any) => e.extensions.code)).toEqual(['BAD_USER_INPUT']);
    expect((await viaSocket(cases[5][1], cases[5][2])).data.markRead).toEqual({ id: `g:${g}`, unreadCount: 0, lastReadMessageId: m });
  });
});

describe('root resolvers', () => {
  /** Promises made while `run` runs and until its promise settles. */
  async function promisesOf(run: () => unknown): Promise<number> {
    let made = 0;
    const hook = createHook({ init: (_id, type) => void (type === 'PROMISE' && made++) }).enable();
    try {
      await run();
    } finally {
      hook.disable();
    }
    return made;
  }

  it("should run a mutation's method after @Authorized()'s check, without type-graphql's promise per middleware and argument", async () => {
    const schema = await createSchema();
    const resolve = schema.getMutationType()!.getFields().sendMessage.resolve!;
    const input = { groupId: randomUUID(), content: 'hi' };
    const sent: unknown[] = [];
    const context = {
      viewer: { userId: 'u1', sessionId: 's1', tokenHash: 'h1' },
      services: {
        // Revoked while an operation runs: refused from the next root field (see authChecker).
        auth: { revokedSince: (hash: string) => hash === 'revoked' },
        // The real limit, counted in this process: its spend wraps the send (a refused one gives its point back).
        rates: { sendMessage: new RateLimit('sendMessage', { points: 100, duration: 10 }) },
        messages: { send: (_em: unknown, me: string, i: unknown) => (sent.push([me, i]), Promise.resolve({ id: 'm1' })) },
      },
    };
    // The method's own (async, awaiting the limit), the stubs' and this test's: 7; through
    // type-graphql's middleware chain and argument conversion, 24.
    expect(await promisesOf(() => resolve(undefined, { input }, context, {} as never))).toBeLessThanOrEqual(8);
    // The input as graphql coerced it, to the method as it was given.
    expect(sent).toEqual([['u1', input]]);
    // Without a viewer: refused before the method runs, with the check's own error.
    expect(() => resolve(undefined, { input }, { ...context, viewer: null }, {} as never)).toThrow(UnauthenticatedError);
    expect(() => resolve(undefined, { input }, { ...context, viewer: { ...context.viewer, tokenHash: 'revoked' } }, {} as never)).toThrow(UnauthenticatedError);
    expect(sent).toHaveLength(1);
  });
});
