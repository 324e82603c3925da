import { print } from 'graphql';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import {
  AcceptFriendRequestDocument,
  AddGroupMemberDocument,
  AddProjectParticipantDocument,
  CreateGroupDocument,
  CreateProjectDocument,
  GroupsDocument,
  LoginDocument,
  SendFriendRequestDocument,
  SendMessageDocument,
  SignupDocument,
  type CreateGroupMutation,
  type CreateProjectMutation,
  type SendMessageInput,
  type SendMessageMutation,
} from '../../generated/client/graphql';
import { gql, ok, wsClient, type GqlResult } from './graphql';

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

/** Signs a new user up through the API. */
export async function signup(url: string, overrides: Parameters<typeof buildUser>[0] = {}): Promise<TestUser> {
  const input = buildUser(overrides);
  const data = await request(url, SignupDocument, input);
  return { id: data.signup.user.id, username: input.username, password: input.password, token: data.signup.token };
}

/** A new session of `user` (a login): its token. */
export async function login(url: string, user: { username: string; password: string }): Promise<string> {
  return (await request(url, LoginDocument, { username: user.username, password: user.password })).login.token;
}

/** One of the typed documents of operations/ over HTTP, as it is answered (errors included); `headers` as gql() takes them. */
export function attempt<TData, TVars extends Record<string, unknown>>(
  url: string,
  doc: TypedDocumentNode<TData, TVars>,
  variables: TVars,
  token?: string,
  headers?: Record<string, string>,
): Promise<GqlResult<TData>> {
  return gql<TData>(url, print(doc), variables, token, headers);
}

/** One of the typed documents of operations/ over HTTP: its data, or a thrown error naming what went wrong. */
export function request<TData, TVars extends Record<string, unknown>>(
  url: string,
  doc: TypedDocumentNode<TData, TVars>,
  variables: TVars,
  token?: string,
  headers?: Record<string, string>,
): Promise<TData> {
  return ok<TData>(attempt(url, doc, variables, token, headers));
}

/** A public group owned by `owner` with `members` added; its id (buildGroup, by name). */
export async function groupWith(url: string, owner: TestUser, name: string, members: TestUser[]): Promise<string> {
  return (await buildGroup(url, owner, { name, members })).id;
}

/** Sends a message through the API: the message as SendMessage answers it. */
export async function sendMessage(url: string, token: string, input: SendMessageInput): Promise<SendMessageMutation['sendMessage']> {
  return (await request(url, SendMessageDocument, { input }, token)).sendMessage;
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
