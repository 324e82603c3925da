import { gql, ok } from './graphql';

let seq = 0;

export interface TestUser {
  id: string;
  username: string;
  password: string;
  token: string;
}

/** A unique, valid username and password. */
export function buildUser(overrides: Partial<{ username: string; password: string; displayName: string }> = {}) {
  seq++;
  return { username: `user_${process.pid}_${seq}`, password: `password-${seq}-secret`, ...overrides };
}

export const SIGNUP = /* GraphQL */ `
  mutation Signup($username: String!, $password: String!, $displayName: String) {
    signup(username: $username, password: $password, displayName: $displayName) {
      token
      expiresAt
      user { id username displayName status createdAt }
    }
  }
`;

/** Signs a new user up through the API. */
export async function signup(url: string, overrides: Parameters<typeof buildUser>[0] = {}): Promise<TestUser> {
  const input = buildUser(overrides);
  const data = await ok(gql(url, SIGNUP, input));
  return { id: data.signup.user.id, username: input.username, password: input.password, token: data.signup.token };
}

/** The lobby's id, as a member sees it. */
export async function lobbyOf(url: string, token: string): Promise<string> {
  const r = await ok(gql(url, '{ groups(first: 100) { edges { node { id isLobby } } } }', {}, token));
  return r.groups.edges.find((e: any) => e.node.isLobby).node.id;
}
