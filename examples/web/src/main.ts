/**
 * Parley web demo: a small chat app over the typed documents generated from operations/*.graphql.
 * Plain DOM; HTTP for queries and mutations, graphql-ws for messageAdded, messageEvent (edits,
 * deletions, reactions), conversationUpdated (the recent list and unread counts), typing,
 * readReceipt, sessionEvent, presenceChanged, groupEvent, projectAction and friendEvent (friends
 * and requests).
 * Served by Parley at /demo outside production.
 *
 * A conversation is a group, a direct thread with a friend, or a project, keyed
 * "group:<id>", "direct:<userId>" or "project:<id>".
 */
import {
  AcceptFriendRequestDocument,
  AddGroupMemberDocument,
  AddProjectParticipantDocument,
  AddReactionDocument,
  ConversationDocument,
  ConversationsDocument,
  ConversationUpdatedDocument,
  CreateGroupDocument,
  CreateProjectDocument,
  DeclineFriendRequestDocument,
  DeleteAccountDocument,
  DeleteGroupDocument,
  DeleteMessageDocument,
  DeleteProjectDocument,
  DesignateCoachDocument,
  EditMessageDocument,
  FriendRequestsDocument,
  FriendsDocument,
  GroupDocument,
  GroupEventDocument,
  GroupsDocument,
  HistoryDocument,
  JoinGroupDocument,
  LeaveGroupDocument,
  LeaveProjectDocument,
  LoginDocument,
  LogoutDocument,
  MarkReadDocument,
  MeDocument,
  MessageAddedDocument,
  MessageEventDocument,
  OnlineUsersDocument,
  PresenceChangedDocument,
  ProjectActionDocument,
  ProjectActionsDocument,
  ProjectsDocument,
  ReadReceiptDocument,
  ReadReceiptsDocument,
  RemoveFriendDocument,
  RemoveProjectParticipantDocument,
  RemoveReactionDocument,
  RenameGroupDocument,
  RenameProjectDocument,
  SendFriendRequestDocument,
  SendMessageDocument,
  SessionEventDocument,
  FriendEventDocument,
  SetTypingDocument,
  SignupDocument,
  TypingDocument,
  UpdateProfileDocument,
  UsersDocument,
  WithdrawCoachDocument,
  type ConversationInput,
  type ConversationPartsFragment,
  type FriendRequestPartsFragment,
  type GroupPartsFragment,
  type MessagePartsFragment,
  type PresenceStatus,
  type ProjectActionPartsFragment,
  type ProjectPartsFragment,
  type SendMessageInput,
} from '../../../generated/client/graphql';
import { ApiError, connect, disconnect, request, saveSession, session, subscribe, whenSignedOut } from './api';
import { attachmentEl, readFile, type PickedFile } from './attachments';
import { showSafety } from './safety';
import { moderationCard, moderationNotice } from './moderation';
import { decorateSidebar, initTeam, replyLink, teamActions, teamOpened } from './team';
import { $, avatar, badge, button, dayLabel, el, errorText, formValue, lockIcon, newKey, refill, reactionIcon, REACTIONS, sizeText, timeEl, toast } from './ui';

type Kind = 'group' | 'direct' | 'project';
interface Conv {
  key: string;
  kind: Kind;
  id: string;
}
type Msg = MessagePartsFragment;
interface Person {
  id: string;
  username: string;
  displayName?: string | null;
  status?: PresenceStatus;
  lastSeenAt?: string | null;
}
interface Thread {
  items: Msg[];
  start: string | null;
  hasOlder: boolean;
  /** While a page of it loads (the newest, or an older one): changes to messages not in it yet (the page may come from before them). */
  patches?: Map<string, Partial<Msg>>;
}

/** Messages per history page. */
const PAGE = 30;
/** How often a keystroke refreshes "typing" (the server lets about one through per 2 s and lapses it after 6 s). */
const TYPING_EVERY_MS = 2000;
/** Rows in the recent list. */
const RECENT = 8;

const groups = new Map<string, GroupPartsFragment>();
const projects = new Map<string, ProjectPartsFragment>();
const friends = new Map<string, Person>();
/** Everyone the viewer has a direct thread with or can start one with, by id. */
const peers = new Map<string, Person>();
const people = new Map<string, Person>();
/** Unread counts by conversation key, as the server counts them (conversations, conversationUpdated). */
const unread = new Map<string, number>();
/** The recent list's rows by conversation key, and conversation key by the API's conversation id. */
const rows = new Map<string, ConversationPartsFragment>();
const keyById = new Map<string, string>();
/** Per conversation key: how far each other member has read (user id -> message id). */
const receipts = new Map<string, Map<string, string>>();
/** Per conversation key: who is typing (user id -> name). */
const typers = new Map<string, Map<string, string>>();
const threads = new Map<string, Thread>();
const inbox = new Map<string, ProjectActionPartsFragment>();
let requests: FriendRequestPartsFragment[] = [];
let seenRequests: Set<string> | null = null;
let current: Conv | null = null;
let pending: PickedFile | null = null;
let unseenInbox = 0;

const me = () => session!.userId;
const nameOf = (p: { username: string; displayName?: string | null }) => p.displayName || p.username;
const conv = (kind: Kind, id: string): Conv => ({ key: `${kind}:${id}`, kind, id });

function conversationInput(c: Conv): ConversationInput {
  return c.kind === 'group' ? { groupId: c.id } : c.kind === 'project' ? { projectId: c.id } : { userId: c.id };
}

/** The conversation a message belongs to, as the viewer sees it. */
function convOf(m: Msg): Conv {
  if (m.group) return conv('group', m.group.id);
  if (m.project) return conv('project', m.project.id);
  return conv('direct', m.sender.id === me() ? m.recipient!.id : m.sender.id);
}

/** A recent-list row's conversation. */
function rowConv(r: ConversationPartsFragment): Conv {
  return conv(r.kind.toLowerCase() as Kind, r.group?.id ?? r.project?.id ?? r.peer!.id);
}

function titleOf(c: Conv): string {
  if (c.kind === 'group') return groups.get(c.id)?.name ?? 'Group';
  if (c.kind === 'project') return projects.get(c.id)?.title ?? 'Project';
  const p = peers.get(c.id);
  return p ? nameOf(p) : 'Direct message';
}

// --- sign in / out -----------------------------------------------------------------------------

$('auth-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const mode = ((ev as SubmitEvent).submitter as HTMLButtonElement | null)?.value ?? 'login';
  const username = formValue('username');
  const password = $<HTMLInputElement>('password').value;
  $('auth-error').textContent = '';
  try {
    const payload = mode === 'signup' ? (await request(SignupDocument, { username, password })).signup : (await request(LoginDocument, { username, password })).login;
    saveSession({ token: payload.token, userId: payload.user.id, username: payload.user.username });
    await start();
  } catch (e) {
    $('auth-error').textContent = errorText(e);
  }
});

$('logout').addEventListener('click', async () => {
  await request(LogoutDocument).catch(() => undefined);
  signOut();
});

function signOut(): void {
  saveSession(null);
  disconnect();
  location.reload();
}
whenSignedOut(signOut);

$('profile-toggle').addEventListener('click', () => {
  const form = $('profile');
  form.hidden = !form.hidden;
  $('profile-toggle').setAttribute('aria-expanded', String(!form.hidden));
});

$('profile').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const { updateProfile } = await request(UpdateProfileDocument, { displayName: formValue('display-name') });
    $('whoami').textContent = nameOf(updateProfile);
    $('profile').hidden = true;
    toast('Profile saved');
  } catch (e) {
    toast(errorText(e), 'error');
  }
});

$('delete-account').addEventListener('click', async () => {
  if (!confirm('Delete your account? Your messages stay, your name goes.')) return;
  try {
    await request(DeleteAccountDocument, { password: $<HTMLInputElement>('delete-password').value });
    signOut();
  } catch (e) {
    toast(errorText(e), 'error');
  }
});

// --- layout: one pane at a time on a phone -----------------------------------------------------

type View = 'list' | 'chat' | 'side';
function setView(v: View): void {
  $('app').dataset.view = v;
  for (const b of document.querySelectorAll<HTMLButtonElement>('#tabbar button')) b.classList.toggle('current', b.dataset.view === v);
  if (v === 'side') {
    unseenInbox = 0;
    renderBadges();
  }
  if (v === 'chat' && current && unread.has(current.key) && inSight()) {
    markRead(current);
    renderLists();
  }
}
for (const b of document.querySelectorAll<HTMLButtonElement>('#tabbar button')) b.addEventListener('click', () => setView(b.dataset.view as View));
$('back').addEventListener('click', () => setView('list'));

function renderBadges(): void {
  const total = [...unread.values()].reduce((a, b) => a + b, 0);
  const incoming = requests.filter((r) => r.to.id === me()).length;
  $('tab-list-badge').replaceChildren(badge(total) ?? '');
  $('tab-side-badge').replaceChildren(badge(incoming + unseenInbox) ?? '');
  $('requests-badge').replaceChildren(badge(incoming) ?? '');
  $('inbox-badge').replaceChildren(badge(unseenInbox) ?? '');
  document.title = total ? `(${total}) Parley` : 'Parley';
}

// --- the conversation list ---------------------------------------------------------------------

function convItem(c: Conv, label: Node[], sub: string, attrs: Record<string, string> = {}): HTMLLIElement {
  const b = el('button', { type: 'button' }, ...label, el('span', { class: 'sub' }, sub), badge(unread.get(c.key) ?? 0));
  b.addEventListener('click', () => void open(c));
  return el('li', { 'data-key': c.key, class: c.key === current?.key ? 'current' : '', ...attrs }, b);
}

function renderGroups(): void {
  const sorted = [...groups.values()].sort((a, b) => Number(b.isLobby) - Number(a.isLobby) || a.name.localeCompare(b.name));
  $('groups').replaceChildren(
    ...sorted.map((g) =>
      convItem(conv('group', g.id), [el('span', { class: 'hash', 'aria-hidden': 'true' }, g.isPrivate ? lockIcon() : '#'), el('span', { class: 'name' }, g.name)], g.isLobby ? 'everyone' : g.isPrivate ? 'private' : `${g.memberCount} in`, { 'data-group': g.id }),
    ),
  );
}

function renderDirects(): void {
  const list = [...peers.values()].sort((a, b) => (a.status === b.status ? nameOf(a).localeCompare(nameOf(b)) : a.status === 'ONLINE' ? -1 : 1));
  $('directs').replaceChildren(
    ...(list.length
      ? list.map((p) => convItem(conv('direct', p.id), [avatar(nameOf(p), p.status), el('span', { class: 'name' }, nameOf(p))], p.status === 'ONLINE' ? 'online' : '', { 'data-user': p.username }))
      : [el('li', { class: 'empty' }, 'Add a friend to message them.')]),
  );
}

const ROLE_LABEL: Record<string, string> = { OWNER: 'owner', COACH: 'coach', PARTICIPANT: 'participant' };

function renderProjects(): void {
  const list = [...projects.values()];
  $('projects').replaceChildren(
    ...(list.length
      ? list.map((p) => convItem(conv('project', p.id), [el('span', { class: 'hash', 'aria-hidden': 'true' }, '◆'), el('span', { class: 'name' }, p.title)], ROLE_LABEL[p.viewerRole ?? ''] ?? '', { 'data-project': p.id }))
      : [el('li', { class: 'empty' }, 'No projects yet.')]),
  );
}

function preview(m: Msg | null | undefined): string {
  if (!m) return 'No messages yet';
  const text = m.deletedAt ? 'message deleted' : (m.content ?? m.attachment?.fileName ?? '');
  return m.sender.id === me() ? `You: ${text}` : text;
}

/** The conversations with the newest activity, each with its last message. */
function renderRecent(): void {
  const list = [...rows.values()].sort((a, b) => b.updatedAt.localeCompare(a.updatedAt)).slice(0, RECENT);
  $('recent').replaceChildren(
    ...(list.length
      ? list.map((r) => {
          const icon = r.kind === 'DIRECT' ? avatar(r.title) : el('span', { class: 'hash', 'aria-hidden': 'true' }, r.kind === 'GROUP' ? '#' : '◆');
          return convItem(rowConv(r), [icon, el('span', { class: 'line' }, el('span', { class: 'name' }, r.title), el('span', { class: 'preview' }, preview(r.lastMessage)))], '', { 'data-conversation': r.id });
        })
      : [el('li', { class: 'empty' }, 'No conversations yet.')]),
  );
}

function renderLists(): void {
  renderRecent();
  renderGroups();
  renderDirects();
  renderProjects();
  renderBadges();
  decorateSidebar();
}

async function loadGroups(): Promise<void> {
  const { groups: page } = await request(GroupsDocument, { first: 100 });
  groups.clear();
  for (const { node } of page.edges) groups.set(node.id, node);
  renderGroups();
}

async function loadConversations(): Promise<void> {
  const { conversations } = await request(ConversationsDocument, { first: 50 });
  rows.clear();
  for (const { node } of conversations.edges) noteRow(node);
  // A count not on the page: of a conversation gone since (its group deleted, the viewer removed,
  // unfriended: an outside probe saw the title keep "(2)"), or of one past the first 50, asked alone
  // (dropping every count past the page lost live ones: a verification probe).
  const past = [...unread.keys()].filter((key) => !rows.has(key));
  await Promise.all(
    past.map(async (key) => {
      const [kind, id] = key.split(':') as [Kind, string];
      const found = conversations.pageInfo.hasNextPage ? await request(ConversationDocument, { conversation: conversationInput(conv(kind, id)) }).catch(() => null) : null;
      if (rows.has(key)) return; // told meanwhile (conversationUpdated), newer than this answer
      if (found?.conversation?.unreadCount) unread.set(key, found.conversation.unreadCount);
      else unread.delete(key);
    }),
  );
  renderLists();
}

/** Keeps a row and its unread count; the open conversation, when in sight, is marked read instead. */
function noteRow(r: ConversationPartsFragment): void {
  const c = rowConv(r);
  rows.set(c.key, r);
  keyById.set(r.id, c.key);
  if (r.peer && !peers.has(r.peer.id)) peers.set(r.peer.id, r.peer);
  if (c.key === current?.key && inSight()) {
    if (r.unreadCount) markRead(c);
  } else if (r.unreadCount) unread.set(c.key, r.unreadCount);
  else unread.delete(c.key);
}

/** The open conversation is in sight: the tab is visible and, on a phone, its pane is the one shown. */
const inSight = () => document.visibilityState === 'visible' && ($('app').dataset.view === 'chat' || !matchMedia('(max-width: 760px)').matches);

/** Moves the viewer's read marker to the newest message (the server never moves it back). */
function markRead(c: Conv): void {
  unread.delete(c.key);
  void request(MarkReadDocument, { conversation: conversationInput(c) }).catch(() => undefined);
}

document.addEventListener('visibilitychange', () => {
  if (!current || !unread.has(current.key) || !inSight()) return;
  markRead(current);
  renderLists();
});

async function loadProjects(): Promise<void> {
  const { projects: list } = await request(ProjectsDocument);
  projects.clear();
  for (const p of list) projects.set(p.id, p);
  renderProjects();
}

$('new-group-toggle').addEventListener('click', () => toggleForm('new-group', 'new-group-name'));
$('new-project-toggle').addEventListener('click', () => toggleForm('new-project', 'new-project-title'));
function toggleForm(id: string, input: string): void {
  $(id).hidden = !$(id).hidden;
  if (!$(id).hidden) $(input).focus();
}

$('new-group').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const { createGroup } = await request(CreateGroupDocument, { name: formValue('new-group-name'), isPrivate: $<HTMLInputElement>('new-group-private').checked });
    groups.set(createGroup.id, createGroup);
    $<HTMLFormElement>('new-group').reset();
    $('new-group').hidden = true;
    await open(conv('group', createGroup.id));
  } catch (e) {
    toast(errorText(e), 'error');
  }
});

$('new-project').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const { createProject } = await request(CreateProjectDocument, { title: formValue('new-project-title') });
    projects.set(createProject.id, createProject);
    $<HTMLFormElement>('new-project').reset();
    $('new-project').hidden = true;
    await open(conv('project', createProject.id), true);
  } catch (e) {
    toast(errorText(e), 'error');
  }
});

// --- a conversation ----------------------------------------------------------------------------

async function open(c: Conv, showDetails = false): Promise<void> {
  setTyping(false);
  current = c;
  sessionStorage.setItem('parley:open', c.key);
  unread.delete(c.key);
  renderLists();
  setView('chat');
  $('join-prompt').hidden = true;
  $('composer').hidden = false;
  renderHeading();
  void showSafety(conversationInput(c), c.kind === 'direct' ? c.id : null, () => current === c, () => void loadConversations().then(loadFriends).then(openLobby));
  renderSendTo();
  renderTyping();
  $('details').hidden = !showDetails;
  $('details-toggle').setAttribute('aria-expanded', String(showDetails));
  if (showDetails) void renderDetails();
  $('messages').replaceChildren();
  $('load-older').hidden = true;
  teamOpened(conversationInput(c), PAGE);
  // What arrives while the page loads is kept here and laid over the page: a page read before a
  // message was stored replaced it, lost until the conversation was opened again (an outside probe).
  const arriving: Thread = { items: [], start: null, hasOlder: false, patches: new Map() };
  threads.set(c.key, arriving);
  try {
    const input = conversationInput(c);
    const [{ history }, { conversation: row }, { readReceipts }] = await Promise.all([
      request(HistoryDocument, { conversation: input, last: PAGE }),
      request(ConversationDocument, { conversation: input }),
      request(ReadReceiptsDocument, { conversation: input }),
    ]);
    if (current !== c) return;
    if (row) keyById.set(row.id, c.key);
    receipts.set(c.key, new Map(readReceipts.filter((r) => r.user.id !== me()).map((r) => [r.user.id, r.lastReadMessageId])));
    const page = history.edges.map((e) => e.node);
    const items = [...page, ...arriving.items.filter((m) => !page.some((x) => x.id === m.id))].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    const t: Thread = { items: items.map((m) => ({ ...m, ...arriving.patches!.get(m.id) })), start: history.pageInfo.startCursor, hasOlder: history.pageInfo.hasPreviousPage };
    threads.set(c.key, t);
    renderThread(t, 'bottom');
    markRead(c);
  } catch (e) {
    if (threads.get(c.key) === arriving) threads.delete(c.key);
    if (current !== c) return;
    // A public group the viewer hasn't joined yet: offer to join it.
    if (e instanceof ApiError && e.code === 'FORBIDDEN' && c.kind === 'group') return showJoin(c);
    $('messages').replaceChildren(el('li', { class: 'notice error' }, errorText(e)));
  }
  // Ready to type, unless the reader went to another field while the history loaded: taking the
  // focus from it would send what they type next to the composer.
  const busy = document.activeElement instanceof HTMLInputElement || document.activeElement instanceof HTMLTextAreaElement;
  if (matchMedia('(min-width: 761px)').matches && !busy) $('message').focus();
}

function renderHeading(): void {
  if (!current) return;
  const c = current;
  $('chat-title').textContent = (c.kind === 'group' ? '# ' : '') + titleOf(c);
  let sub = '';
  if (c.kind === 'group') {
    const g = groups.get(c.id);
    sub = g ? (g.isLobby ? 'Everyone is here' : `${g.memberCount} member${g.memberCount === 1 ? '' : 's'} · ${g.isPrivate ? 'private' : 'public'} · by @${g.owner.username}`) : '';
  } else if (c.kind === 'project') {
    const p = projects.get(c.id);
    sub = p ? `${p.participants.length + 1} members · you are ${ROLE_LABEL[p.viewerRole ?? ''] ?? 'a member'}` : '';
  } else {
    const p = peers.get(c.id);
    sub = p ? `@${p.username} · ${p.status === 'ONLINE' ? 'online' : p.lastSeenAt ? `last seen ${dayLabel(new Date(p.lastSeenAt)).toLowerCase()}` : 'offline'}` : '';
  }
  $('chat-sub').textContent = sub;
  $('details-toggle').hidden = false;
}

function showJoin(c: Conv): void {
  const g = groups.get(c.id);
  $('composer').hidden = true;
  $('join-prompt').hidden = false;
  $('join-prompt').replaceChildren(
    el('p', {}, `You are not in ${g ? `#${g.name}` : 'this group'} yet.`),
    button(
      'Join group',
      async () => {
        const { joinGroup } = await request(JoinGroupDocument, { groupId: c.id });
        groups.set(joinGroup.id, joinGroup);
        await open(c);
      },
      { class: 'primary', id: 'join-group' },
    ),
  );
}

/** Day separators, and a sender's run of messages shown under one name. */
function messageEls(items: Msg[], prev?: Msg): HTMLLIElement[] {
  const out: HTMLLIElement[] = [];
  for (const m of items) {
    const d = new Date(m.createdAt);
    if (!prev || new Date(prev.createdAt).toDateString() !== d.toDateString()) {
      out.push(el('li', { class: 'day' }, el('span', {}, dayLabel(d))));
      prev = undefined;
    }
    const continued = !!prev && prev.sender.id === m.sender.id && d.getTime() - new Date(prev.createdAt).getTime() < 5 * 60_000;
    out.push(messageEl(m, continued));
    prev = m;
  }
  return out;
}

function messageEl(m: Msg, continued: boolean): HTMLLIElement {
  const mine = m.sender.id === me();
  const who = nameOf(m.sender);
  const privateTo = m.project && m.recipient ? el('span', { class: 'private' }, mine ? `private to @${m.recipient.username}` : 'private to you') : null;
  return el(
    'li',
    { class: `msg${mine ? ' mine' : ''}${continued ? ' cont' : ''}`, 'data-id': m.id },
    continued ? el('span', { class: 'avatar-space' }) : avatar(who),
    el(
      'div',
      { class: 'body' },
      continued ? null : el('div', { class: 'meta' }, el('span', { class: 'sender' }, who), timeEl(m.createdAt, false), privateTo),
      m.deletedAt ? el('div', { class: 'text deleted' }, 'This message was deleted') : m.content ? el('div', { class: 'text' }, m.content) : null,
      m.attachment ? el('div', { class: 'attachment' }, attachmentEl(m.attachment)) : null,
      continued && privateTo ? privateTo : null,
      footEl(m, mine),
      replyLink(m),
    ),
    m.deletedAt ? null : actionsEl(m, mine),
  );
}

/** Reactions with their counts (the viewer's own highlighted), "edited", and the read tick on the viewer's own. */
function footEl(m: Msg, mine: boolean): HTMLDivElement | null {
  const chips = m.reactions
    .filter((r) => r.count > 0)
    .map((r) => {
      const b = button('', () => react(m, r.emoji), { class: `reaction${r.reactedByMe ? ' mine' : ''}`, 'data-emoji': r.emoji, 'aria-pressed': String(r.reactedByMe), 'aria-label': `${r.emoji} ${r.count}` });
      b.replaceChildren(reactionIcon(r.emoji), el('span', { class: 'count' }, String(r.count)));
      return b;
    });
  if (!chips.length && !m.editedAt && !mine) return null;
  return el('div', { class: 'foot' }, ...chips, m.editedAt && !m.deletedAt ? el('span', { class: 'edited' }, 'edited') : null, mine ? el('span', { class: 'tick' }, '✓') : null);
}

/** Shown on hover: the reactions for anyone, edit and delete on the viewer's own messages. */
function actionsEl(m: Msg, mine: boolean): HTMLDivElement {
  const reacts = REACTIONS.map((emoji) => {
    const b = button('', () => react(m, emoji), { 'data-emoji': emoji, 'aria-label': `React ${emoji}` });
    b.append(reactionIcon(emoji));
    return b;
  });
  // A project's private message has no thread and is not pinned for everyone.
  const team = m.project && m.recipient ? [] : teamActions(m);
  return el('div', { class: 'msg-actions' }, ...reacts, ...team, mine && m.content ? button('Edit', () => startEdit(m), { class: 'edit-message' }) : null, mine ? button('Delete', () => removeMessage(m), { class: 'delete-message' }) : null);
}

async function react(m: Msg, emoji: string): Promise<void> {
  const remove = m.reactions.some((r) => r.emoji === emoji && r.reactedByMe);
  const { reactions } = remove ? (await request(RemoveReactionDocument, { messageId: m.id, emoji })).removeReaction : (await request(AddReactionDocument, { messageId: m.id, emoji })).addReaction;
  patchMessage(convOf(m).key, m.id, { reactions });
}

/** Swaps the text for a one-line form: Enter saves, Escape gives up. */
function startEdit(m: Msg): void {
  const text = $('messages').querySelector(`li.msg[data-id="${CSS.escape(m.id)}"] .text`);
  if (!text) return;
  const key = convOf(m).key;
  const input = el('input', { class: 'edit-input', value: m.content ?? '', maxlength: '4000', 'aria-label': 'Edit the message' });
  const form = el('form', { class: 'edit' }, input, el('button', { class: 'primary' }, 'Save'));
  const done = () => patchMessage(key, m.id, {});
  input.addEventListener('keydown', (ev) => ev.key === 'Escape' && done());
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const content = input.value.trim();
    if (!content || content === m.content) return done();
    try {
      const { editMessage } = await request(EditMessageDocument, { messageId: m.id, content });
      patchMessage(key, m.id, editMessage);
    } catch (e) {
      toast(errorText(e), 'error');
    }
  });
  text.replaceWith(form);
  input.focus();
}

async function removeMessage(m: Msg): Promise<void> {
  if (!confirm('Delete this message for everyone?')) return;
  await request(DeleteMessageDocument, { messageId: m.id });
  patchMessage(convOf(m).key, m.id, { deletedAt: new Date().toISOString(), content: null, attachment: null });
}

/** An edit, a deletion or new reaction counts: in the thread, the recent list and on screen. */
function patchMessage(key: string, id: string, patch: Partial<Msg>): void {
  const row = rows.get(key);
  if (row?.lastMessage?.id === id) {
    rows.set(key, { ...row, lastMessage: { ...row.lastMessage, ...patch } });
    renderRecent();
  }
  const t = threads.get(key);
  const i = t?.items.findIndex((x) => x.id === id) ?? -1;
  if (t?.patches) t.patches.set(id, { ...t.patches.get(id), ...patch });
  if (!t || i < 0) return;
  const m = (t.items[i] = { ...t.items[i], ...patch });
  if (key !== current?.key) return;
  const li = $('messages').querySelector<HTMLLIElement>(`li.msg[data-id="${CSS.escape(id)}"]`);
  li?.replaceWith(messageEl(m, li.classList.contains('cont')));
  renderTicks();
}

/** ✓ on the viewer's messages, ✓✓ once another member's read marker has reached them. */
function renderTicks(): void {
  const t = current && threads.get(current.key);
  if (!t) return;
  const at = new Map(t.items.map((m, i) => [m.id, i]));
  const readTo = Math.max(-1, ...[...(receipts.get(current!.key)?.values() ?? [])].map((id) => at.get(id) ?? -1));
  for (const tick of $('messages').querySelectorAll<HTMLElement>('li.msg.mine .tick')) {
    const read = (at.get(tick.closest('li')!.dataset.id!) ?? Infinity) <= readTo;
    tick.classList.toggle('read', read);
    tick.textContent = read ? '✓✓' : '✓';
    tick.title = read ? 'Read' : 'Sent';
  }
}

function renderTyping(): void {
  const names = [...((current && typers.get(current.key)?.values()) || [])];
  $('typing').textContent = names.length === 0 ? '' : names.length === 1 ? `${names[0]} is typing…` : names.length === 2 ? `${names[0]} and ${names[1]} are typing…` : 'Several people are typing…';
}

const scroller = () => $('scroller');
const nearBottom = () => scroller().scrollHeight - scroller().scrollTop - scroller().clientHeight < 120;

function renderThread(t: Thread, keep: 'bottom' | 'position'): void {
  const s = scroller();
  const fromBottom = s.scrollHeight - s.scrollTop;
  $('messages').replaceChildren(
    ...(t.items.length ? messageEls(t.items) : [el('li', { class: 'notice' }, current?.kind === 'direct' ? 'Say hello: this is the start of your conversation.' : 'No messages yet.')]),
  );
  $('load-older').hidden = !t.hasOlder;
  if (keep === 'bottom') s.scrollTop = s.scrollHeight;
  else s.scrollTop = s.scrollHeight - fromBottom;
  // Images take their height when they load: stay at the bottom if that is where the reader is.
  for (const img of $('messages').querySelectorAll('img')) img.addEventListener('load', () => keep === 'bottom' && (s.scrollTop = s.scrollHeight), { once: true });
  renderTicks();
}

function addToThread(m: Msg): void {
  const t = threads.get(convOf(m).key);
  if (!t || t.items.some((x) => x.id === m.id)) return;
  const last = t.items.at(-1);
  if (last && last.createdAt > m.createdAt) {
    t.items.push(m);
    t.items.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    if (current?.key === convOf(m).key) renderThread(t, 'position');
    return;
  }
  t.items.push(m);
  if (current?.key !== convOf(m).key) return;
  const stick = nearBottom() || m.sender.id === me();
  if (t.items.length === 1) $('messages').replaceChildren();
  const els = messageEls([m], last);
  $('messages').append(...els);
  renderTicks();
  const s = scroller();
  if (stick) {
    s.scrollTop = s.scrollHeight;
    for (const img of els[els.length - 1].querySelectorAll('img')) img.addEventListener('load', () => (s.scrollTop = s.scrollHeight), { once: true });
  }
}

$('load-older').addEventListener('click', async () => {
  if (!current) return;
  const c = current;
  const t = threads.get(c.key);
  // One page at a time (a second click asked for the same page again, shown twice), and changes to
  // its messages on its way kept and laid over it, as open() does (they were lost: an outside probe).
  if (!t?.start || t.patches) return;
  const patches = (t.patches = new Map<string, Partial<Msg>>());
  try {
    const { history } = await request(HistoryDocument, { conversation: conversationInput(c), last: PAGE, before: t.start });
    if (current !== c) return;
    t.items = [...history.edges.map((e) => ({ ...e.node, ...patches.get(e.node.id) })), ...t.items];
    t.start = history.pageInfo.startCursor ?? t.start;
    t.hasOlder = history.pageInfo.hasPreviousPage;
    renderThread(t, 'position');
  } catch (e) {
    toast(errorText(e), 'error');
  } finally {
    if (t.patches === patches) delete t.patches;
  }
});

// --- composing ---------------------------------------------------------------------------------

/** In a project, a message goes to everyone or privately to one member. */
function renderSendTo(): void {
  const select = $<HTMLSelectElement>('send-to');
  const p = current?.kind === 'project' ? projects.get(current.id) : undefined;
  select.hidden = !p;
  if (!p) return;
  const members = [p.owner, ...p.participants].filter((u) => u.id !== me());
  select.replaceChildren(el('option', { value: '' }, 'Everyone'), ...members.map((u) => el('option', { value: u.id }, `@${u.username} only`)));
}

$<HTMLInputElement>('file').addEventListener('change', async (ev) => {
  const input = ev.target as HTMLInputElement;
  const file = input.files?.[0];
  input.value = '';
  if (!file) return;
  // Refused here, before it is read and sent: past the server's body limit the answer was a raw
  // "Request body exceeds 7158443 bytes." after the whole upload (an outside probe).
  if (file.size > ATTACHMENT_MAX_BYTES) return toast(`${file.name} is too large to send: ${file.size.toLocaleString('en')} bytes, over the ${sizeText(ATTACHMENT_MAX_BYTES)} (${ATTACHMENT_MAX_BYTES.toLocaleString('en')} bytes) a file may be.`, 'error');
  try {
    pending = await readFile(file);
  } catch (e) {
    return toast(errorText(e), 'error');
  }
  const p = pending;
  const remove = button('×', () => clearPending(), { class: 'icon', 'aria-label': 'Remove the attachment' });
  const ext = p.fileName.slice(p.fileName.lastIndexOf('.') + 1).toUpperCase();
  $('pending').replaceChildren(p.previewUrl ? el('img', { src: p.previewUrl, alt: '' }) : el('span', { class: 'file-icon' }, ext), el('span', {}, p.fileName), remove);
  $('pending').hidden = false;
  $('message').focus();
});

/** The server's default ATTACHMENT_MAX_BYTES (a server set lower still answers PAYLOAD_TOO_LARGE). */
const ATTACHMENT_MAX_BYTES = 5 * 1024 * 1024;

function clearPending(): void {
  if (pending?.previewUrl) URL.revokeObjectURL(pending.previewUrl);
  pending = null;
  $('pending').hidden = true;
  $('pending').replaceChildren();
}

/** Tells the others "typing" at most every TYPING_EVERY_MS while keys are pressed, and "stopped" once. */
let typingIn: Conv | null = null;
let typingSentAt = 0;
function setTyping(typing: boolean): void {
  const c = typing ? current : typingIn;
  if (!c || (typing && typingIn === c && Date.now() - typingSentAt < TYPING_EVERY_MS)) return;
  typingIn = typing ? c : null;
  typingSentAt = typing ? Date.now() : 0;
  void request(SetTypingDocument, { conversation: conversationInput(c), typing }).catch(() => undefined);
}
$('message').addEventListener('input', () => setTyping($<HTMLInputElement>('message').value.trim() !== ''));
$('message').addEventListener('blur', () => setTyping(false));

/** The last send not known to have arrived: its key, what it sent and to whom. */
let unsent: { key: string; what: string; file: PickedFile | null } | null = null;

$('composer').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  setTyping(false);
  const input = $<HTMLInputElement>('message');
  const content = input.value.trim();
  if (!current || (!content && !pending)) return;
  const c = current;
  const to = $<HTMLSelectElement>('send-to').value;
  const target: Partial<SendMessageInput> = c.kind === 'group' ? { groupId: c.id } : c.kind === 'direct' ? { toUserId: c.id } : { projectId: c.id, ...(to ? { toUserId: to } : {}) };
  const send = $<HTMLButtonElement>('send');
  const file = pending;
  // The same send again (its answer lost, then sent once more) keeps its clientMessageId, so the
  // server returns the first message: a new key each time stored it twice (an outside probe).
  const what = JSON.stringify([target, content]);
  const key = unsent && unsent.what === what && unsent.file === file ? unsent.key : newKey();
  unsent = { key, what, file };
  send.disabled = true;
  try {
    const { sendMessage } = await request(SendMessageDocument, {
      input: { ...target, content: content || undefined, attachment: file ? { fileName: file.fileName, base64: file.base64 } : undefined, clientMessageId: key },
    });
    if (unsent?.key === key) unsent = null;
    // Only what was sent is cleared: the next text or file may already be waiting.
    if (input.value.trim() === content) input.value = '';
    if (pending === file) clearPending();
    addToThread(sendMessage);
  } catch (e) {
    toast(errorText(e), 'error');
  } finally {
    send.disabled = false;
  }
});

// --- details: members, roles and settings of the open conversation ----------------------------

$('details-toggle').addEventListener('click', () => {
  const d = $('details');
  d.hidden = !d.hidden;
  $('details-toggle').setAttribute('aria-expanded', String(!d.hidden));
  if (!d.hidden) void renderDetails();
});

/** Finds a user by exact username (the search is a prefix match). */
async function userByName(raw: string): Promise<{ id: string; username: string }> {
  const name = raw.trim().replace(/^@/, '');
  const { users } = await request(UsersDocument, { search: name, first: 20 });
  const user = users.edges.find((e) => e.node.username.toLowerCase() === name.toLowerCase())?.node;
  if (!user) throw new Error(`No user @${name}`);
  return user;
}

/** A one-field form that runs `action` with its value. */
function miniForm(id: string, placeholder: string, label: string, action: (value: string) => Promise<unknown>, value = ''): HTMLFormElement {
  const input = el('input', { placeholder, required: true, value, id: `${id}-input`, 'aria-label': placeholder });
  const form = el('form', { class: 'inline-form', id }, input, el('button', {}, label));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await action(input.value.trim());
      form.reset();
    } catch (e) {
      toast(errorText(e), 'error');
    }
  });
  return form;
}

function memberRow(u: { id: string; username: string }, role: string, ...actions: HTMLElement[]): HTMLLIElement {
  return el('li', { 'data-user': u.username, 'data-role': role }, avatar(u.username), el('span', { class: 'name' }, `@${u.username}`), el('span', { class: `role ${role.toLowerCase()}` }, role.toLowerCase()), el('span', { class: 'actions' }, ...actions));
}

async function renderDetails(): Promise<void> {
  const c = current;
  if (!c || $('details').hidden) return;
  const box = $('details');
  if (c.kind === 'project') {
    const p = projects.get(c.id);
    if (!p) return void box.replaceChildren();
    const role = p.viewerRole;
    const coachIds = new Set(p.coaches.map((u) => u.id));
    const after = (f: () => Promise<unknown>) => async () => {
      await f();
      await loadProjects();
      void renderDetails();
      renderHeading();
      renderSendTo();
    };
    const rows = [
      memberRow(p.owner, 'Owner'),
      ...p.participants.map((u) => {
        const isCoach = coachIds.has(u.id);
        const actions: HTMLElement[] = [];
        if (role === 'OWNER') {
          actions.push(
            isCoach
              ? button('Withdraw coach', after(() => request(WithdrawCoachDocument, { projectId: p.id, userId: u.id })))
              : button('Make coach', after(() => request(DesignateCoachDocument, { projectId: p.id, userId: u.id }))),
          );
        }
        if (role === 'OWNER' || (role === 'COACH' && !isCoach && u.id !== me())) actions.push(button('Remove', after(() => request(RemoveProjectParticipantDocument, { projectId: p.id, userId: u.id })), { class: 'danger' }));
        return memberRow(u, isCoach ? 'Coach' : 'Participant', ...actions);
      }),
    ];
    refill(box,
      el('h3', {}, 'Members'),
      el('ul', { class: 'members' }, ...rows),
      role === 'OWNER' || role === 'COACH'
        ? miniForm('add-participant', 'Add a participant by username', 'Add', async (name) => after(async () => request(AddProjectParticipantDocument, { projectId: p.id, userId: (await userByName(name)).id }))())
        : null,
      role === 'OWNER' ? miniForm('rename-project', 'New title', 'Rename', (title) => after(() => request(RenameProjectDocument, { projectId: p.id, title }))(), p.title) : null,
      el(
        'div',
        { class: 'row' },
        button('Leave project', async () => {
          if (!confirm(`Leave ${p.title}?`)) return;
          await request(LeaveProjectDocument, { projectId: p.id });
          await loadProjects();
          await openLobby();
        }),
        role === 'OWNER'
          ? button(
              'Delete project',
              async () => {
                if (!confirm(`Delete ${p.title} for everyone?`)) return;
                await request(DeleteProjectDocument, { projectId: p.id });
                await loadProjects();
                await openLobby();
              },
              { class: 'danger' },
            )
          : null,
      ),
    );
    return;
  }
  if (c.kind === 'group') {
    const { group } = await request(GroupDocument, { id: c.id, membersFirst: 50 }).catch(() => ({ group: null }));
    if (!group || current !== c) return;
    groups.set(group.id, group);
    const owner = group.owner.id === me();
    const after = (f: () => Promise<unknown>) => async () => {
      await f();
      void renderDetails();
    };
    refill(box,
      el('h3', {}, `Members (${group.members.totalCount})`),
      el('ul', { class: 'members' }, ...group.members.edges.map(({ node: u }) => memberRow(u, u.id === group.owner.id && !group.isLobby ? 'Owner' : 'Member'))),
      await moderationCard(group.id, me(), userByName, () => void renderDetails()).catch(() => null),
      owner && !group.isLobby ? miniForm('add-member', 'Add a member by username', 'Add', async (name) => after(async () => request(AddGroupMemberDocument, { groupId: group.id, userId: (await userByName(name)).id }))()) : null,
      owner && !group.isLobby ? miniForm('rename-group', 'New name', 'Rename', (name) => after(() => request(RenameGroupDocument, { groupId: group.id, name }))(), group.name) : null,
      group.isLobby
        ? el('p', { class: 'muted' }, 'Everyone is in the lobby: a message here reaches all.')
        : el(
            'div',
            { class: 'row' },
            button('Leave group', async () => {
              await request(LeaveGroupDocument, { groupId: group.id });
              await Promise.all([loadGroups(), loadConversations()]);
              await openLobby();
            }),
            owner
              ? button(
                  'Delete group',
                  async () => {
                    if (!confirm(`Delete #${group.name} for everyone?`)) return;
                    await request(DeleteGroupDocument, { groupId: group.id });
                    groups.delete(group.id);
                    await loadConversations();
                    await openLobby();
                  },
                  { class: 'danger' },
                )
              : null,
          ),
    );
    return;
  }
  const p = peers.get(c.id);
  if (!p) return void box.replaceChildren();
  refill(box,
    el('ul', { class: 'members' }, memberRow(p, friends.has(p.id) ? 'Friend' : 'Contact')),
    friends.has(p.id)
      ? el(
          'div',
          { class: 'row' },
          button(
            'Remove friend',
            async () => {
              if (!confirm(`Remove @${p.username} from your friends?`)) return;
              await request(RemoveFriendDocument, { userId: p.id });
              await loadConversations();
              await loadFriends();
            },
            { class: 'danger' },
          ),
        )
      : null,
  );
}

async function openLobby(): Promise<void> {
  const lobby = [...groups.values()].find((g) => g.isLobby);
  if (lobby) await open(conv('group', lobby.id));
}

// --- friends -----------------------------------------------------------------------------------

function person(p: Person, extra: Node[] = [], attrs: Record<string, string> = {}): HTMLLIElement {
  return el('li', { 'data-user': p.username, 'data-status': p.status ?? 'OFFLINE', 'data-id': p.id, ...attrs }, avatar(nameOf(p), p.status ?? 'OFFLINE'), el('span', { class: 'name' }, nameOf(p), nameOf(p) !== p.username ? el('small', { class: 'muted' }, ` @${p.username}`) : null), el('span', { class: 'actions' }, ...extra));
}

function renderFriends(): void {
  $('requests').replaceChildren(
    ...requests.map((r) => {
      const incoming = r.to.id === me();
      const other = incoming ? r.from : r.to;
      const actions = incoming
        ? [
            button('Accept', async () => {
              await request(AcceptFriendRequestDocument, { requestId: r.id });
              await loadFriends();
            }, { class: 'primary' }),
            button('Decline', async () => {
              await request(DeclineFriendRequestDocument, { requestId: r.id });
              await loadFriends();
            }),
          ]
        : [el('span', { class: 'muted' }, 'pending')];
      return el('li', { class: `request ${incoming ? 'incoming' : 'outgoing'}`, 'data-user': other.username }, avatar(other.username), el('span', { class: 'name' }, incoming ? `@${other.username} wants to be friends` : `to @${other.username}`), el('span', { class: 'actions' }, ...actions));
    }),
  );
  const list = [...friends.values()].sort((a, b) => nameOf(a).localeCompare(nameOf(b)));
  $('friends').replaceChildren(
    ...(list.length
      ? list.map((f) => {
          const item = person(f, [button('Message', () => open(conv('direct', f.id)))]);
          return item;
        })
      : [el('li', { class: 'empty' }, 'No friends yet.')]),
  );
  renderBadges();
}

/** Friends and requests, read again at each friendEvent; says what is new since the last look. */
let friendsLoads = 0;
async function loadFriends(): Promise<void> {
  const load = ++friendsLoads;
  const [{ friends: list }, { friendRequests }] = await Promise.all([request(FriendsDocument), request(FriendRequestsDocument)]);
  // A load that started before an accept must not bring the request back.
  if (load !== friendsLoads) return;
  const awaited = new Set(requests.filter((r) => r.from.id === me()).map((r) => r.to.id));
  friends.clear();
  for (const f of list) {
    friends.set(f.id, f);
    peers.set(f.id, { ...peers.get(f.id), ...f });
  }
  // A peer no longer a friend and without a direct conversation the server lists (unfriended,
  // blocked) leaves the lists: they kept it until a reload.
  for (const id of [...peers.keys()]) if (!friends.has(id) && !rows.has(`direct:${id}`)) peers.delete(id);
  if (seenRequests) {
    for (const r of friendRequests) if (!seenRequests.has(r.id) && r.to.id === me()) toast(`@${r.from.username} wants to be your friend`, 'info', () => setView('side'));
    for (const f of list) if (awaited.has(f.id)) toast(`@${f.username} accepted: you are friends now`, 'info', () => void open(conv('direct', f.id)));
  }
  seenRequests = new Set([...(seenRequests ?? []), ...friendRequests.map((r) => r.id)]);
  requests = friendRequests;
  renderFriends();
  renderDirects();
}

$('add-friend').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const user = await userByName(formValue('friend-username'));
    await request(SendFriendRequestDocument, { userId: user.id });
    $<HTMLFormElement>('add-friend').reset();
    await loadFriends();
  } catch (e) {
    toast(errorText(e), 'error');
  }
});

// --- presence ----------------------------------------------------------------------------------

function renderPeople(): void {
  const online = [...people.values()].filter((p) => p.status === 'ONLINE').sort((a, b) => nameOf(a).localeCompare(nameOf(b)));
  const offline = [...people.values()].filter((p) => p.status !== 'ONLINE').sort((a, b) => nameOf(a).localeCompare(nameOf(b)));
  $('people').replaceChildren(
    ...[...online, ...offline].map((p) =>
      person(
        p,
        p.id === me()
          ? [el('span', { class: 'muted' }, 'you')]
          : p.status !== 'ONLINE' && p.lastSeenAt
            ? [el('span', { class: 'muted' }, 'seen ', timeEl(p.lastSeenAt))]
            : friends.has(p.id)
              ? [button('Message', () => open(conv('direct', p.id)))]
              : [],
      ),
    ),
  );
  $('online-count').textContent = `${online.length} online`;
}

async function loadOnline(): Promise<void> {
  const { onlineUsers } = await request(OnlineUsersDocument, { first: 100 });
  const now = new Set(onlineUsers.edges.map((e) => e.node.id));
  // After a reconnect: who went offline meanwhile is not in the page (an outside probe: still listed online).
  if (!onlineUsers.pageInfo.hasNextPage) for (const p of people.values()) if (p.status === 'ONLINE' && !now.has(p.id)) people.set(p.id, { ...p, status: 'OFFLINE' as PresenceStatus });
  for (const { node } of onlineUsers.edges) people.set(node.id, node);
  renderPeople();
}

// --- project inbox -----------------------------------------------------------------------------

function renderInbox(): void {
  // Newest on top, whichever order the connection returns.
  const list = [...inbox.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id));
  $('notifications').replaceChildren(
    ...(list.length
      ? list.map((a) => {
          const li = el('li', { 'data-id': a.id, 'data-kind': a.kind }, el('span', { class: 'what' }, a.message), el('span', { class: 'muted' }, a.project ? `${a.project.title} · ` : '', timeEl(a.createdAt)));
          if (projects.has(a.projectId)) {
            li.classList.add('clickable');
            li.addEventListener('click', () => void open(conv('project', a.projectId)));
          }
          return li;
        })
      : [el('li', { class: 'empty' }, 'Project news shows up here.')]),
  );
}

async function loadInbox(): Promise<void> {
  const { projectActions } = await request(ProjectActionsDocument, { last: 30 });
  for (const { node } of projectActions.edges) inbox.set(node.id, node);
  renderInbox();
}

async function onProjectAction(a: ProjectActionPartsFragment): Promise<void> {
  if (inbox.has(a.id)) return;
  inbox.set(a.id, a);
  // On a phone the inbox is a tab away: count it; on a wide screen it is in sight: light it up.
  if ($('app').dataset.view !== 'side' && matchMedia('(max-width: 760px)').matches) unseenInbox++;
  await loadProjects().catch(() => undefined);
  if (!projects.has(a.projectId)) void loadConversations().catch(() => undefined);
  renderInbox();
  const item = document.querySelector(`#notifications li[data-id="${CSS.escape(a.id)}"]`);
  item?.classList.add('fresh');
  setTimeout(() => item?.classList.remove('fresh'), 4000);
  renderBadges();
  // What the viewer did is in the inbox; only others' doings are worth a toast.
  if (a.actor?.id !== me()) toast(a.message, 'info', projects.has(a.projectId) ? () => void open(conv('project', a.projectId)) : undefined);
  if (current?.kind === 'project' && current.id === a.projectId) {
    if (!projects.has(a.projectId)) return openLobby();
    renderHeading();
    renderSendTo();
    void renderDetails();
  }
}

// --- live events -------------------------------------------------------------------------------

function onMessage(m: Msg): void {
  const c = convOf(m);
  if (c.kind === 'direct' && !peers.has(c.id)) peers.set(c.id, m.sender.id === me() ? { id: c.id, username: m.recipient!.username } : m.sender);
  keyById.set(m.conversationId, c.key);
  addToThread(m);
  if (typers.get(c.key)?.delete(m.sender.id) && c.key === current?.key) renderTyping();
  // Sending moves the sender's marker to their message, and no readReceipt tells it (an outside
  // probe: a reply from another client left the viewer's message at ✓).
  if (m.sender.id !== me()) onReceipt({ conversationId: m.conversationId, lastReadMessageId: m.id, user: m.sender });
  // Unread counts come with conversationUpdated.
  if (c.key === current?.key || m.sender.id === me()) return;
  if (c.kind !== 'group' || !groups.get(c.id)?.isLobby) {
    const where = c.kind === 'direct' ? '' : ` in ${titleOf(c)}`;
    toast(`${nameOf(m.sender)}${where}: ${m.content ?? m.attachment?.fileName ?? ''}`, 'info', () => void open(c));
  }
}

function onConversation(r: ConversationPartsFragment): void {
  noteRow(r);
  renderLists();
}

function onTyping(e: { conversationId: string; typing: boolean; user: { id: string; username: string; displayName?: string | null } }): void {
  const key = keyById.get(e.conversationId);
  if (!key) return;
  const who = typers.get(key) ?? new Map<string, string>();
  if (e.typing) who.set(e.user.id, nameOf(e.user));
  else who.delete(e.user.id);
  typers.set(key, who);
  if (key === current?.key) renderTyping();
}

function onReceipt(r: { conversationId: string; lastReadMessageId: string; user: { id: string } }): void {
  const key = keyById.get(r.conversationId);
  if (!key || r.user.id === me()) return;
  receipts.set(key, (receipts.get(key) ?? new Map<string, string>()).set(r.user.id, r.lastReadMessageId));
  if (key === current?.key) renderTicks();
}

function onPresence(p: { status: PresenceStatus; lastSeenAt?: string | null; user: { id: string; username: string; displayName?: string | null } }): void {
  const who = { ...people.get(p.user.id), ...p.user, status: p.status, lastSeenAt: p.lastSeenAt };
  people.set(p.user.id, who);
  for (const map of [friends, peers]) if (map.has(p.user.id)) map.set(p.user.id, { ...map.get(p.user.id)!, status: p.status, lastSeenAt: p.lastSeenAt });
  renderPeople();
  renderDirects();
  renderFriends();
  if (current?.kind === 'direct' && current.id === p.user.id) renderHeading();
}

async function onGroupEvent(e: { kind: string; groupId: string; group?: GroupPartsFragment | null; user?: { id: string } | null }): Promise<void> {
  moderationNotice(e, me(), {
    accepted: async (id) => {
      await loadGroups();
      await open(conv('group', id));
    },
    gone: async (id) => void (current?.key === `group:${id}` && (await openLobby())),
  });
  // Its row leaves the recent list (it stayed until a reload: an outside probe).
  const out = e.kind === 'DELETED' || (e.user?.id === me() && ['MEMBER_LEFT', 'MEMBER_REMOVED', 'MEMBER_BANNED'].includes(e.kind));
  if (out) void loadConversations().catch(() => undefined);
  if (e.kind === 'DELETED') {
    const g = groups.get(e.groupId);
    groups.delete(e.groupId);
    threads.delete(`group:${e.groupId}`);
    if (current?.key === `group:${e.groupId}`) {
      toast(`#${g?.name ?? 'The group'} was deleted`);
      await openLobby();
    }
  } else if (e.group) groups.set(e.group.id, e.group);
  else await loadGroups();
  renderGroups();
  if (current?.key === `group:${e.groupId}`) {
    renderHeading();
    void renderDetails();
  }
}

/** After a reconnect: whatever was missed while the socket was down. */
function catchUp(): void {
  void Promise.all([loadGroups(), loadProjects(), loadFriends(), loadOnline(), loadInbox(), loadConversations()]).then(() => current && open(current));
}

// --- start -------------------------------------------------------------------------------------

async function start(): Promise<void> {
  if (!session) return;
  $('auth').hidden = true;
  $('app').hidden = false;
  $('account').hidden = false;
  $('tabbar').hidden = false;
  $('whoami').replaceChildren(avatar(session.username, 'ONLINE'), el('span', {}, `@${session.username}`));
  connect(catchUp);
  subscribe(MessageAddedDocument, {}, ({ messageAdded }) => onMessage(messageAdded));
  subscribe(MessageEventDocument, {}, ({ messageEvent: e }) => patchMessage(convOf(e.message).key, e.message.id, e.message));
  subscribe(ConversationUpdatedDocument, {}, ({ conversationUpdated }) => onConversation(conversationUpdated));
  subscribe(TypingDocument, {}, ({ typing }) => onTyping(typing));
  subscribe(ReadReceiptDocument, {}, ({ readReceipt }) => onReceipt(readReceipt));
  subscribe(SessionEventDocument, {}, ({ sessionEvent }) => sessionEvent.kind === 'NEW_LOGIN' && toast('Your account was signed in elsewhere', 'error'));
  // A friendship's end (unfriended, a block) takes its direct conversation out of the recent list too.
  subscribe(FriendEventDocument, {}, () => void loadConversations().then(loadFriends).catch(() => undefined));
  subscribe(PresenceChangedDocument, {}, ({ presenceChanged }) => onPresence(presenceChanged));
  subscribe(GroupEventDocument, {}, ({ groupEvent }) => void onGroupEvent(groupEvent));
  subscribe(ProjectActionDocument, {}, ({ projectAction }) => void onProjectAction(projectAction));
  initTeam({ me, openConversation: (kind, id) => open(conv(kind, id)) });
  const [{ me: profile }] = await Promise.all([request(MeDocument), loadGroups(), loadProjects(), loadFriends(), loadOnline(), loadInbox(), loadConversations()]);
  if (profile) {
    $('whoami').replaceChildren(avatar(nameOf(profile), 'ONLINE'), el('span', {}, nameOf(profile)));
    $<HTMLInputElement>('display-name').value = profile.displayName ?? '';
  }
  // Back where the reader was after a reload, else the lobby.
  const last = sessionStorage.getItem('parley:open');
  const [kind, id] = (last ?? '').split(':') as [Kind, string];
  if ((kind === 'group' && groups.has(id)) || (kind === 'project' && projects.has(id)) || (kind === 'direct' && peers.has(id))) await open(conv(kind, id));
  else await openLobby();
}

void start().catch((e) => ($('auth-error').textContent = errorText(e)));
