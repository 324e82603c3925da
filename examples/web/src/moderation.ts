/**
 * The group moderation card of the details pane: members with their roles and what the viewer's
 * role lets them do to each (owner: roles and ownership; owner and admins: remove, ban), the
 * banned users, an invitation by username and the slow mode. Rules stay on the server: a button
 * shown by mistake only gets its refusal as a toast.
 */
import {
  AcceptGroupInviteDocument,
  BanFromGroupDocument,
  GroupRolesDocument,
  InviteToGroupDocument,
  RemoveGroupMemberDocument,
  SetGroupRoleDocument,
  SetSlowModeDocument,
  UnbanFromGroupDocument,
  type GroupRole,
} from '../../../generated/client/graphql';
import { request } from './api';
import { avatar, button, el, errorText, toast } from './ui';

type Find = (username: string) => Promise<{ id: string }>;

/** The card for one group, or null for a viewer who moderates nothing there. `changed` re-renders the pane. */
export async function moderationCard(groupId: string, me: string, findUser: Find, changed: () => void): Promise<HTMLElement | null> {
  const { group } = await request(GroupRolesDocument, { id: groupId, first: 50 });
  if (!group || (group.myRole !== 'OWNER' && group.myRole !== 'ADMIN')) return null;
  const owner = group.myRole === 'OWNER';
  const act = (f: () => Promise<unknown>) => async () => {
    await f();
    changed();
  };
  const rows = group.members.edges.map(({ role, node: u }) => {
    const actions: HTMLElement[] = [];
    const mine = u.id === me;
    if (owner && !mine && role !== 'OWNER') {
      const to: GroupRole = role === 'ADMIN' ? 'MEMBER' : 'ADMIN';
      actions.push(button(role === 'ADMIN' ? 'Demote' : 'Make admin', act(() => request(SetGroupRoleDocument, { groupId, userId: u.id, role: to }))));
      actions.push(
        button('Make owner', async () => {
          if (!confirm(`Hand #${group.name} over to @${u.username}? You become an admin.`)) return;
          await act(() => request(SetGroupRoleDocument, { groupId, userId: u.id, role: 'OWNER' }))();
        }),
      );
    }
    // An admin acts on members only; the owner on anyone but themselves.
    if (!mine && role !== 'OWNER' && (owner || role === 'MEMBER')) {
      actions.push(button('Remove', act(() => request(RemoveGroupMemberDocument, { groupId, userId: u.id })), { class: 'danger' }));
      actions.push(button('Ban', act(() => request(BanFromGroupDocument, { groupId, userId: u.id })), { class: 'danger' }));
    }
    return el('li', { 'data-user': u.username, 'data-role': role ?? '' }, avatar(u.username), el('span', { class: 'name' }, `@${u.username}`), el('span', { class: `role ${(role ?? '').toLowerCase()}` }, (role ?? '').toLowerCase()), el('span', { class: 'actions' }, ...actions));
  });
  const banned = group.bannedUsers.map((u) => el('li', { 'data-user': u.username }, el('span', { class: 'name' }, `@${u.username}`), el('span', { class: 'actions' }, button('Unban', act(() => request(UnbanFromGroupDocument, { groupId, userId: u.id }))))));
  const slow = el('input', { type: 'number', min: '0', max: '21600', value: String(group.slowModeSeconds), 'aria-label': 'Slow mode, seconds between messages (0: off)' });
  const slowForm = el('form', { class: 'inline-form', id: 'slow-mode' }, el('label', {}, 'Slow mode (s) ', slow), el('button', {}, 'Set'));
  slowForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    act(() => request(SetSlowModeDocument, { groupId, seconds: Number(slow.value) }))().catch((e) => toast(errorText(e), 'error'));
  });
  const invite = el('input', { placeholder: 'Invite by username', required: true, 'aria-label': 'Invite by username' });
  const inviteForm = el('form', { class: 'inline-form', id: 'invite-member' }, invite, el('button', {}, 'Invite'));
  inviteForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    findUser(invite.value)
      .then((u) => request(InviteToGroupDocument, { groupId, userId: u.id }))
      .then(() => {
        toast(`Invited @${invite.value.trim().replace(/^@/, '')}`);
        inviteForm.reset();
      })
      .catch((e) => toast(errorText(e), 'error'));
  });
  return el(
    'section',
    { class: 'moderation' },
    el('h3', {}, `Moderation (you are ${group.myRole.toLowerCase()})`),
    el('ul', { class: 'members moderation-members' }, ...rows),
    banned.length ? el('h4', {}, 'Banned') : null,
    banned.length ? el('ul', { class: 'members moderation-banned' }, ...banned) : null,
    group.isLobby ? null : inviteForm,
    slowForm,
  );
}

/**
 * What a groupEvent about the viewer means to them: an invitation to accept (a toast that accepts
 * when clicked), or a removal or ban (a toast, and the group is left on screen). Other events: nothing.
 */
export function moderationNotice(
  e: { kind: string; groupId: string; group?: { name: string } | null; user?: { id: string } | null },
  me: string,
  on: { accepted(groupId: string): Promise<void>; gone(groupId: string): Promise<void> },
): void {
  if (e.user?.id !== me) return;
  const name = e.group ? `#${e.group.name}` : 'a group';
  if (e.kind === 'INVITED') {
    toast(`You are invited to ${name}: click to join`, 'info', () => {
      request(AcceptGroupInviteDocument, { groupId: e.groupId })
        .then(() => on.accepted(e.groupId))
        .catch((err) => toast(errorText(err), 'error'));
    });
  } else if (e.kind === 'MEMBER_REMOVED' || e.kind === 'MEMBER_BANNED') {
    toast(e.kind === 'MEMBER_BANNED' ? `You were banned from ${name}` : `You were removed from ${name}`, 'error');
    void on.gone(e.groupId);
  }
}
