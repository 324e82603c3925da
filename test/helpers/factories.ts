import { print } from 'graphql';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import {
  AcceptFriendRequestDocument,
  AddGroupMemberDocument,
  AddProjectParticipantDocument,
  CreateGroupDocument,
  CreateProjectDocument,
  GroupsDocument,
  SendFriendRequestDocument,
  type CreateGroupMutation,
  type CreateProjectMutation,
} from '../../generated/client/graphql';
import { gql, ok, wsClient } from './graphql';

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

/** One of the typed documents of operations/ over HTTP: its data, or a thrown error naming what went wrong. */
export function request<TData, TVars extends Record<string, unknown>>(url: string, doc: TypedDocumentNode<TData, TVars>, variables: TVars, token?: string): Promise<TData> {
  return ok<TData>(gql(url, print(doc), variables, token));
}

/** A public group owned by `owner` with `members` added; its id (buildGroup, by name). */
export async function groupWith(url: string, owner: TestUser, name: string, members: TestUser[]): Promise<string> {
  return (await buildGroup(url, owner, { name, members })).id;
}

/** Sends a message (SendMessageInput); its id, createdAt and conversationId. */
export async function sendMessage(url: string, token: string, input: Record<string, unknown>): Promise<{ id: string; createdAt: string; conversationId: string }> {
  const r = await ok(gql(url, 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { id createdAt conversationId } }', { input }, token));
  return r.sendMessage;
}

/** The lobby's id, as a member sees it. */
export async function lobbyOf(url: string, token: string): Promise<string> {
  const r = await request(url, GroupsDocument, { first: 100 }, token);
  return r.groups.edges.find((e) => e.node.isLobby)!.node.id;
}

/** Makes `a` and `b` friends through the API: `a` asks, `b` accepts. Returns the request's id. */
export async function befriend(url: string, a: TestUser, b: TestUser): Promise<string> {
  const sent = await request(url, SendFriendRequestDocument, { userId: b.id }, a.token);
  await request(url, AcceptFriendRequestDocument, { requestId: sent.sendFriendRequest.id }, b.token);
  return sent.sendFriendRequest.id;
}

/** A group owned by `owner`, through the API, with `members` added by the owner. */
export async function buildGroup(
  url: string,
  owner: TestUser,
  opts: { name?: string; isPrivate?: boolean; members?: TestUser[] } = {},
): Promise<CreateGroupMutation['createGroup']> {
  seq++;
  const { createGroup } = await request(url, CreateGroupDocument, { name: opts.name ?? `group ${process.pid} ${seq}`, isPrivate: opts.isPrivate ?? false }, owner.token);
  for (const m of opts.members ?? []) await request(url, AddGroupMemberDocument, { groupId: createGroup.id, userId: m.id }, owner.token);
  return createGroup;
}

/** A project owned by `owner` with `participants` added by the owner, through the API. */
export async function buildProject(url: string, owner: TestUser, opts: { title?: string; participants?: TestUser[] } = {}): Promise<CreateProjectMutation['createProject']> {
  seq++;
  const { createProject } = await request(url, CreateProjectDocument, { title: opts.title ?? `project ${process.pid} ${seq}` }, owner.token);
  for (const p of opts.participants ?? []) await request(url, AddProjectParticipantDocument, { projectId: createProject.id, userId: p.id }, owner.token);
  return createProject;
}

/**
 * A user signed up now with one live socket on each of `servers` (each `{ wsUrl }`). As a control in
 * presence tests: closing its sockets when the user under test's close starts the same grace period,
 * so once its OFFLINE arrives, any of the other's due by then would have.
 */
export async function buildConnectedUser(url: string, servers: { wsUrl: string }[]): Promise<{ user: TestUser; close(): Promise<void> }> {
  const user = await signup(url);
  const sockets = servers.map((x) => wsClient(x.wsUrl, user.token));
  await Promise.all(sockets.map((w) => w.connected));
  return { user, close: async () => void (await Promise.all(sockets.map((w) => w.dispose()))) };
}
