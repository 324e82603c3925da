import { createTestServer, type TestServer } from './helpers/server';
import { buildGroup, signup, type TestUser } from './helpers/factories';

/** One raw POST: status, content type and body text exactly as a client gets them. */
async function post(s: TestServer, body: unknown, token?: string, headers: Record<string, string> = {}) {
  const res = await fetch(s.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
}

/** Ids and instants differ between two sends of one mutation; the rest must not. */
const normalized = (text: string) =>
  text.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<id>').replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/g, '<at>');

/**
 * An operation Apollo answered twice is answered the third time without Apollo's pipeline
 * (src/graphql/fast-path.ts): the client must not be able to tell which path answered.
 */
describe('HTTP fast path', () => {
  let s: TestServer;
  let ada: TestUser;
  let bo: TestUser;
  let group: string;
  beforeEach(async () => {
    s = await createTestServer();
    [ada, bo] = [await signup(s.url), await signup(s.url)];
    group = (await buildGroup(s.url, ada, { name: 'Fast', isPrivate: true })).id;
  });

  const cases: [string, () => { body: Record<string, unknown>; token?: string; headers?: Record<string, string> }][] = [
    ['a query', () => ({ body: { query: '{ __typename }' } })],
    ['an authenticated query with variables', () => ({ body: { query: 'query($g: ID!) { history(conversation: { groupId: $g }, last: 5) { edges { node { content sender { username } } } } }', variables: { g: group } }, token: ada.token })],
    ['a query refused by the service', () => ({ body: { query: 'query($g: ID!) { history(conversation: { groupId: $g }, last: 5) { edges { node { id } } } }', variables: { g: group } }, token: bo.token })],
    ['a query without the token it needs', () => ({ body: { query: '{ me { id } }' } })],
    ['a named operation among several', () => ({ body: { query: 'query A { __typename } query B { me { username } }', operationName: 'B' }, token: ada.token })],
    ['the heartbeat mutation', () => ({ body: { query: 'mutation { heartbeat { status } }' }, token: ada.token })],
    ['a mutation that succeeds', () => ({ body: { query: 'mutation($g: ID!) { sendMessage(input: { groupId: $g, content: "hi" }) { id content createdAt sender { id } } }', variables: { g: group } }, token: ada.token })],
    // Multi-byte text: the length the fast path declares is in bytes, not characters.
    ['a mutation answering text outside ASCII', () => ({ body: { query: 'mutation($g: ID!, $c: String!) { sendMessage(input: { groupId: $g, content: $c }) { content } }', variables: { g: group, c: 'héllo 👋 世界' } }, token: ada.token })],
    ['a mutation refused as bad input', () => ({ body: { query: 'mutation($g: ID!) { sendMessage(input: { groupId: $g, content: "   " }) { id } }', variables: { g: group } }, token: ada.token })],
    ['a mutation refused as forbidden', () => ({ body: { query: 'mutation($g: ID!) { renameGroup(groupId: $g, name: "Mine") { id } }', variables: { g: group } }, token: bo.token })],
    ['the graphql-response+json media type', () => ({ body: { query: '{ me { id } }' }, headers: { accept: 'application/graphql-response+json, application/json;q=0.9' } })],
  ];

  it.each(cases)('should answer %s the same way on the fast path as through Apollo', async (_name, make) => {
    const { body, token, headers } = make();
    const served = s.fastPath.served;
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await post(s, body, token, headers));
    // Apollo answered the first two (the second compiled it); the third came back the fast way.
    expect(s.fastPath.served - served).toBe(1);
    const [first, , third] = answers;
    expect({ ...third, body: normalized(third.body) }).toEqual({ ...first, body: normalized(first.body) });
  });

  it('should leave to Apollo what it has not seen, variables that do not coerce, extensions and a bad token', async () => {
    const query = 'query($n: Int!) { onlineUsers(first: $n) { totalCount } }';
    for (let i = 0; i < 2; i++) expect((await post(s, { query, variables: { n: 5 } }, ada.token)).status).toBe(200);
    const served = s.fastPath.served;
    const wrong = await post(s, { query, variables: { n: 'five' } }, ada.token);
    expect(wrong.status).toBe(400);
    expect(JSON.parse(wrong.body).errors[0].extensions.code).toBe('BAD_USER_INPUT');
    const badToken = await post(s, { query, variables: { n: 5 } }, 'not-a-token');
    expect(badToken.status).toBe(401);
    expect(JSON.parse(badToken.body).errors[0].extensions.code).toBe('UNAUTHENTICATED');
    expect((await post(s, { query, variables: { n: 5 }, extensions: {} }, ada.token)).status).toBe(200);
    expect(s.fastPath.served).toBe(served);
    // And the known, well-formed request is still served the fast way.
    expect(JSON.parse((await post(s, { query, variables: { n: 5 } }, ada.token)).body).data.onlineUsers.totalCount).toBeGreaterThanOrEqual(1);
    expect(s.fastPath.served).toBe(served + 1);
  });

  it('should still count every operation in the metrics', async () => {
    const scrape = async () => (await (await fetch(s.url.replace('/graphql', '/metrics'))).text()).split('\n').filter((l) => l.startsWith('parley_graphql_operations_total') && l.includes('operation="Beat"'));
    const count = async () => (await scrape()).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
    const before = await count();
    const served = s.fastPath.served;
    for (let i = 0; i < 4; i++) await post(s, { query: 'mutation Beat { heartbeat { status } }' }, ada.token);
    expect(s.fastPath.served - served).toBe(2);
    expect((await count()) - before).toBe(4);
  });
});
