import { randomUUID } from 'node:crypto';
import { gql, ok } from './helpers/graphql';
import { createTestServer } from './helpers/server';
import { signup } from './helpers/factories';

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
});
