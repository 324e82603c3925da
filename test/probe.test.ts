import { codeOf, gql } from './helpers/graphql';
import { signup } from './helpers/factories';
import { createTestServer } from './helpers/server';

const LOGIN = 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }';

describe('client address behind a proxy', () => {
  it('should key limits on the address the proxy appended, not on one the client wrote into X-Forwarded-For', async () => {
    const s = await createTestServer({ TRUST_PROXY: 'true', LOGIN_MAX_FAILURES_PER_USER_IP: '3' });
    const u = await signup(s.url);
    // A proxy appends the address it saw: the client controls every entry before it.
    const codes: (string | undefined)[] = [];
    for (let i = 0; i < 5; i++) {
      const headers = { 'x-forwarded-for': `10.0.0.${i}, 203.0.113.9` };
      codes.push(codeOf(await gql(s.url, LOGIN, { u: u.username, p: `guess-number-${i}` }, undefined, headers)));
    }
    expect(codes).toEqual(['UNAUTHENTICATED', 'UNAUTHENTICATED', 'UNAUTHENTICATED', 'RATE_LIMITED', 'RATE_LIMITED']);
    // The owner, seen by the proxy at another address, still gets in whatever the header claims before it.
    const owner = await gql(s.url, LOGIN, { u: u.username, p: u.password }, undefined, { 'x-forwarded-for': '203.0.113.9, 198.51.100.7' });
    expect(owner.errors).toBeUndefined();
  });
});
