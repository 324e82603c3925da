/**
 * What a team needs on its first day (issue 30), kept apart from main.ts: a thread pane (replies
 * to one message, live), the red @ badge of unread mentions on the sidebar, a search box, and the
 * conversation's pinned messages. main.ts calls in at a few points (see `TeamHooks`).
 */
import {
  MentionBadgesDocument,
  MentionBadgeUpdatesDocument,
  MessageAddedDocument,
  PinMessageDocument,
  PinnedMessagesDocument,
  ReplyCountsDocument,
  SearchMessagesDocument,
  SendMessageDocument,
  ThreadDocument,
  ThreadUpdatesDocument,
  UnpinMessageDocument,
  type ConversationInput,
  type MessagePartsFragment,
} from '../../../generated/client/graphql';
import { request, subscribe } from './api';
import { $, button, el, errorText, newKey, timeEl, toast } from './ui';

type Msg = Pick<MessagePartsFragment, 'id' | 'content' | 'createdAt' | 'deletedAt' | 'sender'> & Partial<Pick<MessagePartsFragment, 'group' | 'project' | 'recipient'>>;

/** What main.ts lends: opening a conversation a search hit is in, and the viewer. */
export interface TeamHooks {
  me(): string;
  openConversation(kind: 'group' | 'direct' | 'project', id: string): Promise<void>;
}

let hooks: TeamHooks;
/** The open conversation as the API names it. */
let input: ConversationInput | null = null;
const replyCounts = new Map<string, number>();
/** Messages shown with a reply link, so a live count can open their thread. */
const shown = new Map<string, Msg>();
const mentionCounts = new Map<string, number>();
let thread: { root: Msg; stop: () => void } | null = null;
/** The last reply not known to have arrived: its clientMessageId and what it sent. */
let unsentReply: { key: string; what: string } | null = null;

const nameOf = (p: { username: string; displayName?: string | null }) => p.displayName || p.username;

/** Sets up the search box, the pinned list's button and the thread pane; subscribes to their live updates. */
export function initTeam(h: TeamHooks): void {
  hooks = h;
  mountSearch();
  mountPins();
  mountThreadPane();
  subscribe(ThreadUpdatesDocument, {}, ({ messageEvent: e }) => {
    if (e.kind !== 'THREAD_UPDATED') return;
    replyCounts.set(e.message.id, e.message.replyCount);
    renderReplyLink(e.message.id);
  });
  subscribe(MentionBadgeUpdatesDocument, {}, ({ conversationUpdated: c }) => {
    mentionCounts.set(c.id, c.unreadMentionCount);
    decorateSidebar();
  });
  request(MentionBadgesDocument, {})
    .then(({ conversations }) => {
      for (const e of conversations.edges) mentionCounts.set(e.node.id, e.node.unreadMentionCount);
      decorateSidebar();
    })
    .catch((e) => toast(errorText(e), 'error'));
}

/** A conversation was opened: its pins and the reply counts of its page; the thread pane closes. */
export function teamOpened(conversation: ConversationInput, pageSize: number): void {
  input = conversation;
  closeThread();
  $('pins').hidden = true;
  // A group not joined yet answers FORBIDDEN: main.ts offers to join it, and there is nothing to count.
  request(ReplyCountsDocument, { conversation, last: pageSize })
    .then(({ history }) => {
      for (const e of history.edges) {
        replyCounts.set(e.node.id, e.node.replyCount);
        renderReplyLink(e.node.id);
      }
    })
    .catch(() => undefined);
}

// --- threads ---------------------------------------------------------------------------------------

/** The actions a message gains: reply in its thread, pin. */
export function teamActions(m: Msg): HTMLButtonElement[] {
  return [button('Reply', () => openThread(m), { class: 'reply-in-thread' }), button('Pin', () => pin(m.id), { class: 'pin-message' })];
}

/** "N replies" under a message with a thread (filled in when its count is known). */
export function replyLink(m: Msg): HTMLSpanElement {
  shown.set(m.id, m);
  const span = el('span', { class: 'replies', 'data-replies': m.id });
  fillReplyLink(span, m);
  return span;
}

function fillReplyLink(span: HTMLElement, m: Msg): void {
  const n = replyCounts.get(m.id) ?? 0;
  span.replaceChildren(n ? button(`${n} ${n === 1 ? 'reply' : 'replies'}`, () => openThread(m), { class: 'link open-thread' }) : '');
}

function renderReplyLink(id: string): void {
  const span = document.querySelector<HTMLElement>(`[data-replies="${id}"]`);
  const m = shown.get(id);
  if (span && m) fillReplyLink(span, m);
}

function mountThreadPane(): void {
  const pane = el(
    'aside',
    { id: 'thread-pane', class: 'thread-pane', hidden: true, 'aria-label': 'Thread' },
    el('header', {}, el('h3', {}, 'Thread'), button('Close', () => closeThread(), { class: 'ghost', id: 'thread-close' })),
    el('p', { id: 'thread-root', class: 'thread-root' }),
    el('ol', { id: 'thread-replies', class: 'thread-replies' }),
    el('form', { id: 'thread-composer', class: 'composer-row' }, el('input', { id: 'thread-message', placeholder: 'Reply in thread', 'aria-label': 'Reply', autocomplete: 'off', maxlength: '4000' }), el('button', { id: 'thread-send', class: 'primary' }, 'Reply')),
  );
  $('composer').before(pane);
  $('thread-composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const field = $<HTMLInputElement>('thread-message');
    const send = $<HTMLButtonElement>('thread-send');
    const content = field.value.trim();
    if (!content || !thread || !input || send.disabled) return;
    // A send names a direct conversation's other user `toUserId` (a conversation's input, `userId`: an
    // outside probe's replies in a direct conversation were refused, and lost).
    const to = input.userId ? { toUserId: input.userId } : input.groupId ? { groupId: input.groupId } : { projectId: input.projectId };
    // As the main composer: one reply in flight, and the same reply sent again keeps its key, so a
    // lost answer's retry is the first reply (a double Enter stored it twice: an outside probe).
    const what = JSON.stringify([to, thread.root.id, content]);
    const key = unsentReply?.what === what ? unsentReply.key : newKey();
    unsentReply = { key, what };
    send.disabled = true;
    request(SendMessageDocument, { input: { ...to, content, parentId: thread.root.id, clientMessageId: key } })
      .then(({ sendMessage }) => {
        if (unsentReply?.key === key) unsentReply = null;
        // Cleared once sent, and only if it still holds what was sent: a failed reply keeps its text.
        if (field.value.trim() === content) field.value = '';
        addReply(sendMessage);
      })
      .catch((e) => toast(errorText(e), 'error'))
      .finally(() => (send.disabled = false));
  });
}

function replyEl(m: Msg): HTMLLIElement {
  return el('li', { class: 'reply', 'data-id': m.id }, el('span', { class: 'sender' }, nameOf(m.sender)), ' ', timeEl(m.createdAt, false), el('div', { class: 'text' }, m.deletedAt ? 'This message was deleted' : (m.content ?? '')));
}

function addReply(m: Msg): void {
  if (document.querySelector(`#thread-replies li[data-id="${m.id}"]`)) return;
  $('thread-replies').append(replyEl(m));
}

async function openThread(root: Msg): Promise<void> {
  if (!input) return;
  closeThread();
  const stop = subscribe(MessageAddedDocument, { conversation: { ...input, threadId: root.id } }, ({ messageAdded }) => addReply(messageAdded));
  thread = { root, stop };
  $('thread-root').textContent = `${nameOf(root.sender)}: ${root.content ?? ''}`;
  $('thread-replies').replaceChildren();
  $('thread-pane').hidden = false;
  const { thread: page } = await request(ThreadDocument, { messageId: root.id, last: 50 });
  for (const e of page.edges) addReply(e.node);
  $('thread-message').focus();
}

function closeThread(): void {
  thread?.stop();
  thread = null;
  const pane = document.getElementById('thread-pane');
  if (pane) pane.hidden = true;
}

// --- mentions --------------------------------------------------------------------------------------

/** The red @ badge on each conversation of the sidebar with unread mentions (main.ts re-renders the lists, then calls this). */
export function decorateSidebar(): void {
  for (const b of document.querySelectorAll('.mention-badge')) b.remove();
  for (const [id, n] of mentionCounts) {
    if (!n) continue;
    const [kind, ref] = [id.slice(0, 2), id.slice(2)];
    const selectors = [`#recent li[data-conversation="${id}"] > button`];
    if (kind === 'g:') selectors.push(`#groups li[data-group="${ref}"] > button`);
    if (kind === 'p:') selectors.push(`#projects li[data-project="${ref}"] > button`);
    for (const b of document.querySelectorAll(selectors.join(', '))) b.append(el('span', { class: 'mention-badge', title: `${n} unread mention${n === 1 ? '' : 's'}` }, `@${n > 99 ? '99+' : n}`));
  }
}

// --- search ----------------------------------------------------------------------------------------

function mountSearch(): void {
  const form = el('form', { id: 'search-form', class: 'inline-form search', role: 'search' }, el('input', { id: 'search', type: 'search', placeholder: 'Search messages', 'aria-label': 'Search messages', maxlength: '200' }), el('button', {}, 'Search'));
  const results = el('ul', { id: 'search-results', class: 'conv-list search-results', hidden: true });
  $('sidebar').prepend(el('section', {}, form, results));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const query = $<HTMLInputElement>('search').value.trim();
    if (!query) return void (results.hidden = true);
    request(SearchMessagesDocument, { query, first: 10 })
      .then(({ searchMessages }) => {
        results.hidden = false;
        results.replaceChildren(
          ...(searchMessages.edges.length
            ? searchMessages.edges.map(({ node }) => {
                const snippet = el('span', { class: 'snippet' });
                // The server escapes the text and marks the matches: <mark> is all the HTML there is.
                snippet.innerHTML = node.snippet;
                const b = el('button', { type: 'button' }, el('span', { class: 'name' }, nameOf(node.message.sender)), snippet);
                b.addEventListener('click', () => void openHit(node.message));
                return el('li', { class: 'hit', 'data-id': node.message.id }, b);
              })
            : [el('li', { class: 'empty' }, 'No message matches.')]),
        );
      })
      .catch((e) => toast(errorText(e), 'error'));
  });
}

function openHit(m: MessagePartsFragment): Promise<void> {
  if (m.group) return hooks.openConversation('group', m.group.id);
  if (m.project) return hooks.openConversation('project', m.project.id);
  return hooks.openConversation('direct', m.sender.id === hooks.me() ? m.recipient!.id : m.sender.id);
}

// --- pins ------------------------------------------------------------------------------------------

function mountPins(): void {
  const toggle = el('button', { id: 'pins-toggle', type: 'button', class: 'ghost', 'aria-expanded': 'false' }, 'Pinned');
  $('details-toggle').before(toggle);
  $('details').after(el('div', { id: 'pins', class: 'details pins', hidden: true }));
  toggle.addEventListener('click', () => {
    const pins = $('pins');
    pins.hidden = !pins.hidden;
    toggle.setAttribute('aria-expanded', String(!pins.hidden));
    if (!pins.hidden) void renderPins();
  });
}

async function renderPins(): Promise<void> {
  if (!input) return;
  const { conversation } = await request(PinnedMessagesDocument, { conversation: input });
  const list = conversation?.pinnedMessages ?? [];
  $('pins').replaceChildren(
    el('h3', {}, 'Pinned messages'),
    list.length
      ? el('ul', { class: 'pin-list' }, ...list.map((m) => el('li', { 'data-id': m.id }, el('span', { class: 'text' }, m.content ?? ''), ' ', button('Unpin', () => unpin(m.id), { class: 'link unpin' }))))
      : el('p', { class: 'muted' }, 'Nothing pinned yet.'),
  );
}

async function pin(id: string): Promise<void> {
  await request(PinMessageDocument, { messageId: id });
  toast('Pinned');
  $('pins').hidden = false;
  $('pins-toggle').setAttribute('aria-expanded', 'true');
  await renderPins();
}

async function unpin(id: string): Promise<void> {
  await request(UnpinMessageDocument, { messageId: id });
  await renderPins();
}
