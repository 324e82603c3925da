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

/** Makes two users friends through the API (a request and its acceptance). */
export async function befriend(url: string, a: TestUser, b: TestUser): Promise<void> {
  const r = await ok(gql(url, 'mutation($id: ID!) { sendFriendRequest(userId: $id) { id } }', { id: b.id }, a.token));
  await ok(gql(url, 'mutation($id: ID!) { acceptFriendRequest(requestId: $id) { id } }', { id: r.sendFriendRequest.id }, b.token));
}

/** A group owned by `owner` with `members` added; its id. */
export async function groupWith(url: string, owner: TestUser, name: string, members: TestUser[]): Promise<string> {
  const id = (await ok(gql(url, 'mutation($n: String!) { createGroup(name: $n) { id } }', { n: name }, owner.token))).createGroup.id;
  for (const m of members) await ok(gql(url, 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }', { g: id, u: m.id }, owner.token));
  return id;
}

/** Sends a message (SendMessageInput); its id, createdAt and conversationId. */
export async function sendMessage(url: string, token: string, input: Record<string, unknown>): Promise<{ id: string; createdAt: string; conversationId: string }> {
  const r = await ok(gql(url, 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { id createdAt conversationId } }', { input }, token));
  return r.sendMessage;
}

/** The lobby's id, as a member sees it. */
export async function lobbyOf(url: string, token: string): Promise<string> {
  const r = await ok(gql(url, '{ groups(first: 100) { edges { node { id isLobby } } } }', {}, token));
  return r.groups.edges.find((e: any) => e.node.isLobby).node.id;
}
