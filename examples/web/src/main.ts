/**
 * Parley web demo: plain DOM over the typed documents generated from operations/*.graphql.
 * HTTP for queries and mutations, graphql-ws for messageAdded, presenceChanged, groupEvent and
 * projectAction. Served by Parley at /demo outside production.
 */
import { print } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import {
  AcceptFriendRequestDocument,
  CreateGroupDocument,
  FriendRequestsDocument,
  FriendsDocument,
  GroupEventDocument,
  GroupsDocument,
  HistoryDocument,
  JoinGroupDocument,
  LoginDocument,
  LogoutDocument,
  MessageAddedDocument,
  OnlineUsersDocument,
  PresenceChangedDocument,
  ProjectActionDocument,
  ProjectActionsDocument,
  SendFriendRequestDocument,
  SendMessageDocument,
  SignupDocument,
  UsersDocument,
  type MessagePartsFragment,
  type PresenceStatus,
} from '../../../generated/client/graphql';

const HTTP_URL = new URL('/graphql', location.href).href;
const WS_URL = HTTP_URL.replace(/^http/, 'ws');

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

interface Session {
  token: string;
  userId: string;
  username: string;
}

let session: Session | null = JSON.parse(sessionStorage.getItem('parley') ?? 'null');
let ws: Client | null = null;
let currentGroup: { id: string; name: string } | null = null;
const unread = new Map<string, number>();
const people = new Map<string, { username: string; status: PresenceStatus }>();

class ApiError extends Error {
  constructor(message: string, readonly code?: string) {
    super(message);
  }
}

/** One operation over HTTP with the session's token; throws the first GraphQL error. */
async function request<R, V>(doc: TypedDocumentNode<R, V>, variables?: V): Promise<R> {
  const res = await fetch(HTTP_URL, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(session ? { authorization: `Bearer ${session.token}` } : {}) },
    body: JSON.stringify({ query: print(doc), variables }),
  });
  const body = await res.json();
  if (body.errors?.length) {
    if (body.errors[0].extensions?.code === 'UNAUTHENTICATED' && session) signOut();
    throw new ApiError(body.errors[0].message, body.errors[0].extensions?.code);
  }
  return body.data as R;
}

/** A subscription over the one graphql-ws connection; returns its stop function. */
function subscribe<R, V>(doc: TypedDocumentNode<R, V>, variables: V, onData: (data: R) => void, onError?: (e: unknown) => void): () => void {
  return ws!.subscribe<R>(
    { query: print(doc), variables: variables as Record<string, unknown> },
    { next: (r) => r.data && onData(r.data as R), error: (e) => (onError ?? ((x) => console.warn('subscription failed', x)))(e), complete: () => undefined },
  );
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  node.append(...children);
  return node;
}

function showError(id: string, e: unknown): void {
  $(id).textContent = e instanceof Error ? e.message : String(e);
}

// --- sign in / out -----------------------------------------------------------------------------

$('auth-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const mode = ((ev as SubmitEvent).submitter as HTMLButtonElement | null)?.value ?? 'login';
  const username = $<HTMLInputElement>('username').value.trim();
  const password = $<HTMLInputElement>('password').value;
  $('auth-error').textContent = '';
  try {
    const payload = mode === 'signup' ? (await request(SignupDocument, { username, password })).signup : (await request(LoginDocument, { username, password })).login;
    session = { token: payload.token, userId: payload.user.id, username: payload.user.username };
    sessionStorage.setItem('parley', JSON.stringify(session));
    await start();
  } catch (e) {
    showError('auth-error', e);
  }
});

$('logout').addEventListener('click', async () => {
  await request(LogoutDocument).catch(() => undefined);
  signOut();
});

function signOut(): void {
  session = null;
  sessionStorage.removeItem('parley');
  void ws?.dispose();
  ws = null;
  location.reload();
}

// --- groups and chat ---------------------------------------------------------------------------

async function loadGroups(): Promise<void> {
  const { groups } = await request(GroupsDocument, { first: 100 });
  const list = $('groups');
  list.replaceChildren();
  for (const { node: g } of groups.edges) {
    const n = unread.get(g.id) ?? 0;
    const button = el('button', { type: 'button' }, g.isLobby ? `# ${g.name} (lobby)` : `# ${g.name}`, ...(n ? [' ', el('span', { class: 'badge' }, String(n))] : []));
    button.addEventListener('click', () => void openGroup(g));
    list.append(el('li', { 'data-group': g.id, class: g.id === currentGroup?.id ? 'current' : '' }, button));
  }
  if (!currentGroup) {
    const lobby = groups.edges.find((e) => e.node.isLobby)?.node;
    if (lobby) await openGroup(lobby);
  }
}

async function openGroup(g: { id: string; name: string }): Promise<void> {
  currentGroup = { id: g.id, name: g.name };
  unread.delete(g.id);
  $('chat-title').textContent = g.name;
  // Joining is idempotent for members; it lets the demo open any public group it lists.
  await request(JoinGroupDocument, { groupId: g.id }).catch(() => undefined);
  const { history } = await request(HistoryDocument, { conversation: { groupId: g.id }, last: 50 });
  $('messages').replaceChildren(...history.edges.map((e) => messageItem(e.node)));
  scrollChat();
  void loadGroups();
}

function messageItem(m: MessagePartsFragment): HTMLLIElement {
  const who = m.sender.displayName || `@${m.sender.username}`;
  const time = new Date(m.createdAt).toLocaleTimeString();
  return el('li', { 'data-id': m.id }, el('span', { class: 'sender' }, who), m.content ?? '', m.attachment ? ` [${m.attachment.fileName}]` : '', el('time', {}, time));
}

function scrollChat(): void {
  const list = $('messages');
  list.scrollTop = list.scrollHeight;
}

$('composer').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $<HTMLInputElement>('message');
  if (!currentGroup || !input.value.trim()) return;
  $('chat-error').textContent = '';
  try {
    // The clientMessageId makes a retried send safe: the server returns the first message.
    await request(SendMessageDocument, { input: { groupId: currentGroup.id, content: input.value, clientMessageId: crypto.randomUUID() } });
    input.value = '';
  } catch (e) {
    showError('chat-error', e);
  }
});

$('new-group').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $<HTMLInputElement>('new-group-name');
  try {
    const { createGroup } = await request(CreateGroupDocument, { name: input.value.trim() });
    input.value = '';
    await openGroup(createGroup);
  } catch (e) {
    showError('chat-error', e);
  }
});

// --- friends -----------------------------------------------------------------------------------

async function loadFriends(): Promise<void> {
  const [{ friends }, { friendRequests }] = await Promise.all([request(FriendsDocument), request(FriendRequestsDocument)]);
  $('friends').replaceChildren(...friends.map((f) => el('li', { 'data-user': f.username }, `@${f.username}`, el('span', { class: 'status' }, f.status))));
  $('requests').replaceChildren(
    ...friendRequests.map((r) => {
      const incoming = r.to.id === session!.userId;
      const item = el('li', {}, incoming ? `from @${r.from.username} ` : `to @${r.to.username} (pending)`);
      if (incoming) {
        const accept = el('button', { type: 'button' }, 'Accept');
        accept.addEventListener('click', () => void request(AcceptFriendRequestDocument, { requestId: r.id }).then(loadFriends));
        item.append(accept);
      }
      return item;
    }),
  );
}

$('refresh-friends').addEventListener('click', () => void loadFriends());

$('add-friend').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $<HTMLInputElement>('friend-username');
  const name = input.value.trim().replace(/^@/, '');
  try {
    const { users } = await request(UsersDocument, { search: name, first: 20 });
    const user = users.edges.find((e) => e.node.username === name)?.node;
    if (!user) throw new Error(`No user @${name}`);
    await request(SendFriendRequestDocument, { userId: user.id });
    input.value = '';
    await loadFriends();
  } catch (e) {
    showError('chat-error', e);
  }
});

// --- presence ----------------------------------------------------------------------------------

function renderPeople(): void {
  const sorted = [...people.entries()].sort(([, a], [, b]) => (a.status === b.status ? a.username.localeCompare(b.username) : a.status === 'ONLINE' ? -1 : 1));
  $('people').replaceChildren(
    ...sorted.map(([id, p]) => el('li', { 'data-user': p.username, 'data-status': p.status, 'data-id': id }, `@${p.username}`, el('span', { class: 'status' }, p.status))),
  );
  $('online-count').textContent = `${[...people.values()].filter((p) => p.status === 'ONLINE').length} online`;
}

async function loadOnline(): Promise<void> {
  const { onlineUsers } = await request(OnlineUsersDocument, { first: 100 });
  for (const { node } of onlineUsers.edges) people.set(node.id, { username: node.username, status: node.status });
  renderPeople();
}

// --- project notifications ---------------------------------------------------------------------

function notify(a: { id: string; kind: string; message: string; createdAt: string }): void {
  if (document.querySelector(`#notifications li[data-id="${a.id}"]`)) return;
  $('notifications').prepend(el('li', { 'data-id': a.id, 'data-kind': a.kind }, a.message, el('time', {}, new Date(a.createdAt).toLocaleTimeString())));
}

/** The inbox keeps what happened while the viewer was away; newest on top. */
async function loadNotifications(): Promise<void> {
  const { projectActions } = await request(ProjectActionsDocument, { last: 20 });
  for (const { node } of projectActions.edges) notify(node);
}

// --- start -------------------------------------------------------------------------------------

async function start(): Promise<void> {
  if (!session) return;
  $('auth').hidden = true;
  $('app').hidden = false;
  $('logout').hidden = false;
  $('whoami').textContent = `@${session.username}`;
  const token = session.token;
  ws = createClient({
    url: WS_URL,
    connectionParams: { authorization: `Bearer ${token}` },
    // A revoked token is closed with 4403: back to the sign-in form instead of retrying.
    on: { closed: (e) => (e as CloseEvent).code === 4403 && signOut() },
    shouldRetry: () => true,
  });
  subscribe(MessageAddedDocument, {}, ({ messageAdded: m }) => {
    if (m.group?.id && m.group.id === currentGroup?.id) {
      if (!document.querySelector(`#messages li[data-id="${m.id}"]`)) $('messages').append(messageItem(m));
      scrollChat();
    } else if (m.group?.id) {
      unread.set(m.group.id, (unread.get(m.group.id) ?? 0) + 1);
      void loadGroups();
    }
  });
  subscribe(PresenceChangedDocument, {}, ({ presenceChanged: p }) => {
    people.set(p.user.id, { username: p.user.username, status: p.status });
    renderPeople();
    void loadFriends();
  });
  subscribe(GroupEventDocument, {}, () => void loadGroups());
  subscribe(ProjectActionDocument, {}, ({ projectAction: a }) => notify(a));
  await Promise.all([loadGroups(), loadFriends(), loadOnline(), loadNotifications()]);
}

void start().catch((e) => showError('auth-error', e));
