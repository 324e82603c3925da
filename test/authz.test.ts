import { randomUUID } from 'node:crypto';
import { print } from 'graphql';
import { codeOf, gql, ok, running, subscribe, wsClient, type GqlResult } from './helpers/graphql';
import { buildProject, buildGroup, befriend, signup, type TestUser } from './helpers/factories';
import { SendMessageDocument } from '../generated/client/graphql';
import { createTestServer, type TestServer } from './helpers/server';
import { snapshot } from './helpers/db';

/**
 * The authorization sweep: every operation of the contract, aimed by a user with no rights
 * (eve) at what belongs to others (alice's private group, her direct conversation with bob,
 * her project). Each answer carries the exact code the service decides (FORBIDDEN or NOT_FOUND), or is an empty or null result; nothing
 * changes, and no answer or event carries any of the secrets below.
 */
const SECRET = {
  group: 'zq-private-group',
  groupMessage: 'zq-group-message',
  direct: 'zq-direct-message',
  project: 'zq-project-title',
  projectMessage: 'zq-project-message',
  projectPrivate: 'zq-project-private',
  renamed: 'zq-renamed',
};
const SECRETS = Object.values(SECRET);

const SEND = print(SendMessageDocument);
const FILE = { fileName: 'notes.txt', base64: Buffer.from('zq-file-body').toString('base64') };

interface World {
  s: TestServer;
  alice: TestUser;
  bob: TestUser;
  carol: TestUser;
  eve: TestUser;
  privateGroup: string;
  publicGroup: string;
  project: string;
  pendingRequest: string;
  attachments: { group: string; direct: string; project: string };
}

async function world(): Promise<World> {
  const s = await createTestServer();
  const [alice, bob, carol, eve] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
  const as = (u: TestUser, q: string, v: Record<string, unknown> = {}) => ok(gql(s.url, q, v, u.token));
  await befriend(s.url, alice, bob);
  const pending = await as(alice, 'mutation($u: ID!) { sendFriendRequest(userId: $u) { id } }', { u: carol.id });
  const privateGroup = (await buildGroup(s.url, alice, { name: SECRET.group, isPrivate: true, members: [bob] })).id;
  const publicGroup = (await buildGroup(s.url, alice, { name: 'open-to-all' })).id;
  const project = (await buildProject(s.url, alice, { title: SECRET.project, participants: [bob] })).id;
  await as(alice, 'mutation($p: ID!, $u: ID!) { designateCoach(projectId: $p, userId: $u) { id } }', { p: project, u: bob.id });
  const g = await as(alice, SEND, { input: { groupId: privateGroup, content: SECRET.groupMessage, attachment: FILE } });
  const d = await as(alice, SEND, { input: { toUserId: bob.id, content: SECRET.direct, attachment: FILE } });
  const p = await as(alice, SEND, { input: { projectId: project, content: SECRET.projectMessage, attachment: FILE } });
  await as(alice, SEND, { input: { projectId: project, toUserId: bob.id, content: SECRET.projectPrivate } });
  return {
    s,
    alice,
    bob,
    carol,
    eve,
    privateGroup,
    publicGroup,
    project,
    pendingRequest: pending.sendFriendRequest.id,
    attachments: { group: g.sendMessage.attachment.id, direct: d.sendMessage.attachment.id, project: p.sendMessage.attachment.id },
  };
}

function leaks(r: GqlResult | string): string[] {
  const text = typeof r === 'string' ? r : JSON.stringify({ data: r.data, errors: r.errors });
  return [...SECRETS, 'zq-file-body', Buffer.from('zq-file-body').toString('base64')].filter((x) => text.includes(x));
}

describe('authorization sweep', () => {
  let w: World;
  beforeEach(async () => {
    w = await world();
  });

  it('should refuse every query aimed at what eve has no right to, telling her nothing', async () => {
    const { s, eve, alice, bob } = w;
    const q = (doc: string, v: Record<string, unknown> = {}) => gql(s.url, doc, v, eve.token);
    const MSG = '{ totalCount edges { node { id content attachment { id base64 } sender { id } } } }';
    const denied: [string, GqlResult, string][] = [
      ['history of a private group', await q(`query($g: ID) { history(conversation: { groupId: $g }) ${MSG} }`, { g: w.privateGroup }), 'NOT_FOUND'],
      ['history of a public group eve is not in', await q(`query($g: ID) { history(conversation: { groupId: $g }) ${MSG} }`, { g: w.publicGroup }), 'FORBIDDEN'],
      ['history with a non-friend', await q(`query($u: ID) { history(conversation: { userId: $u }) ${MSG} }`, { u: alice.id }), 'FORBIDDEN'],
      ['history of a project', await q(`query($p: ID) { history(conversation: { projectId: $p }) ${MSG} }`, { p: w.project }), 'NOT_FOUND'],
      ['history of a private project thread', await q(`query($p: ID, $u: ID) { history(conversation: { projectId: $p, userId: $u }) ${MSG} }`, { p: w.project, u: bob.id }), 'NOT_FOUND'],
    ];
    for (const [what, r, code] of denied) {
      expect([what, codeOf(r)]).toEqual([what, code]);
      expect([what, leaks(r)]).toEqual([what, []]);
    }
    // A private group answers exactly like an id that does not exist: its existence is not given away.
    const ghost = await q(`query($g: ID) { history(conversation: { groupId: $g }) ${MSG} }`, { g: randomUUID() });
    expect(codeOf(ghost)).toBe(codeOf(denied[0][1]));

    // projectActions is the viewer's own inbox: narrowed to a project she is not in, it is empty (not an error), like an unknown id.
    const inbox = await ok(q('query($p: ID) { projectActions(projectId: $p) { totalCount edges { node { id message } } } }', { p: w.project }));
    expect(inbox.projectActions).toEqual({ totalCount: 0, edges: [] });
    expect(await ok(q('query($p: ID) { projectActions(projectId: $p) { totalCount edges { node { id } } } }', { p: randomUUID() }))).toEqual(inbox);

    // Nullable lookups: null, like an unknown id.
    const lookups = await ok(
      q('query($g: ID!, $p: ID!) { group(id: $g) { id name members { edges { node { id } } } } project(id: $p) { id title participants { id } } }', { g: w.privateGroup, p: w.project }),
    );
    expect(lookups).toEqual({ group: null, project: null });

    // Lists: the private group, the project and their members are absent.
    const lists = await q(
      '{ groups(first: 100) { totalCount edges { node { id name isPrivate } } } projects { id title } projectActions { totalCount edges { node { id message projectId } } } friends { id } friendRequests { id from { id } to { id } } }',
    );
    expect(lists.errors).toBeUndefined();
    expect(lists.data.groups.edges.map((e: any) => e.node.id)).not.toContain(w.privateGroup);
    expect(lists.data.groups.edges.map((e: any) => e.node.id)).toContain(w.publicGroup);
    expect(lists.data.projects).toEqual([]);
    expect(lists.data.projectActions.totalCount).toBe(0);
    expect(lists.data.friends).toEqual([]);
    expect(lists.data.friendRequests).toEqual([]);
    expect(leaks(lists)).toEqual([]);

    // Public by design (the user directory and presence): profiles only, no conversations, groups or projects.
    const pub = await q('query($u: ID!) { user(id: $u) { id username displayName status } users(first: 50) { totalCount edges { node { id username } } } userStatus(userId: $u) { status user { id } } onlineUsers { totalCount } me { id } }', { u: alice.id });
    expect(pub.errors).toBeUndefined();
    expect(pub.data.user.id).toBe(alice.id);
    expect(leaks(pub)).toEqual([]);
  });

  it('should refuse every mutation aimed at what eve has no right to, and change nothing', async () => {
    const { s, eve, alice, bob, carol } = w;
    const m = (doc: string, v: Record<string, unknown> = {}) => gql(s.url, doc, v, eve.token);
    const before = await snapshot(s.env.DATABASE_URL!);
    const attempts: [string, Promise<GqlResult>, string][] = [
      ['sendMessage to a private group', m(SEND, { input: { groupId: w.privateGroup, content: 'x' } }), 'NOT_FOUND'],
      ['sendMessage to a public group eve is not in', m(SEND, { input: { groupId: w.publicGroup, content: 'x' } }), 'FORBIDDEN'],
      ['sendMessage to a non-friend', m(SEND, { input: { toUserId: alice.id, content: 'x' } }), 'FORBIDDEN'],
      ['sendMessage to a project', m(SEND, { input: { projectId: w.project, content: 'x' } }), 'NOT_FOUND'],
      ['sendMessage privately inside a project', m(SEND, { input: { projectId: w.project, toUserId: bob.id, content: 'x' } }), 'NOT_FOUND'],
      ['renameGroup (private)', m('mutation($g: ID!) { renameGroup(groupId: $g, name: "pwned") { id } }', { g: w.privateGroup }), 'NOT_FOUND'],
      ['renameGroup (public)', m('mutation($g: ID!) { renameGroup(groupId: $g, name: "pwned") { id } }', { g: w.publicGroup }), 'FORBIDDEN'],
      ['deleteGroup (private)', m('mutation($g: ID!) { deleteGroup(groupId: $g) }', { g: w.privateGroup }), 'NOT_FOUND'],
      ['deleteGroup (public)', m('mutation($g: ID!) { deleteGroup(groupId: $g) }', { g: w.publicGroup }), 'FORBIDDEN'],
      ['joinGroup (private)', m('mutation($g: ID!) { joinGroup(groupId: $g) { id name } }', { g: w.privateGroup }), 'NOT_FOUND'],
      ['addGroupMember to a private group', m('mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }', { g: w.privateGroup, u: eve.id }), 'NOT_FOUND'],
      ['addGroupMember to a public group', m('mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }', { g: w.publicGroup, u: carol.id }), 'FORBIDDEN'],
      ['leaveGroup (private)', m('mutation($g: ID!) { leaveGroup(groupId: $g) }', { g: w.privateGroup }), 'NOT_FOUND'],
      ['leaveGroup (public, not a member)', m('mutation($g: ID!) { leaveGroup(groupId: $g) }', { g: w.publicGroup }), 'FORBIDDEN'],
      ["acceptFriendRequest of someone else's request", m('mutation($r: ID!) { acceptFriendRequest(requestId: $r) { id } }', { r: w.pendingRequest }), 'NOT_FOUND'],
      ["declineFriendRequest of someone else's request", m('mutation($r: ID!) { declineFriendRequest(requestId: $r) { id } }', { r: w.pendingRequest }), 'NOT_FOUND'],
      ['removeFriend of a non-friend', m('mutation($u: ID!) { removeFriend(userId: $u) }', { u: alice.id }), 'NOT_FOUND'],
      ['renameProject', m('mutation($p: ID!) { renameProject(projectId: $p, title: "pwned") { id } }', { p: w.project }), 'FORBIDDEN'],
      ['deleteProject', m('mutation($p: ID!) { deleteProject(projectId: $p) }', { p: w.project }), 'FORBIDDEN'],
      ['addProjectParticipant (herself)', m('mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p: w.project, u: eve.id }), 'FORBIDDEN'],
      ['removeProjectParticipant', m('mutation($p: ID!, $u: ID!) { removeProjectParticipant(projectId: $p, userId: $u) { id } }', { p: w.project, u: bob.id }), 'FORBIDDEN'],
      ['leaveProject', m('mutation($p: ID!) { leaveProject(projectId: $p) }', { p: w.project }), 'FORBIDDEN'],
      ['designateCoach (herself)', m('mutation($p: ID!, $u: ID!) { designateCoach(projectId: $p, userId: $u) { id } }', { p: w.project, u: eve.id }), 'FORBIDDEN'],
      ['withdrawCoach', m('mutation($p: ID!, $u: ID!) { withdrawCoach(projectId: $p, userId: $u) { id } }', { p: w.project, u: bob.id }), 'FORBIDDEN'],
    ];
    for (const [what, p, code] of attempts) {
      const r = await p;
      expect([what, codeOf(r), r.data ? Object.values(r.data).filter((v) => v !== null) : []]).toEqual([what, code, []]);
      expect([what, leaks(r)]).toEqual([what, []]);
    }
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    // The owners still have everything.
    const still = await ok(gql(s.url, 'query($g: ID!, $p: ID!) { group(id: $g) { name memberCount } project(id: $p) { title participants { id } } }', { g: w.privateGroup, p: w.project }, alice.token));
    expect(still.group).toEqual({ name: SECRET.group, memberCount: 2 });
    expect(still.project.title).toBe(SECRET.project);
  });

  it("should refuse to download others' attachments (404 whether or not they exist) and ask for a token first", async () => {
    const { s, eve, bob } = w;
    const base = s.url.replace(/\/graphql$/, '');
    for (const [what, id] of Object.entries(w.attachments)) {
      const res = await fetch(`${base}/attachments/${id}`, { headers: { authorization: `Bearer ${eve.token}` } });
      const text = await res.text();
      expect([what, res.status, JSON.parse(text).errors[0].extensions.code]).toEqual([what, 404, 'NOT_FOUND']);
      expect(leaks(text)).toEqual([]);
      const anonymous = await fetch(`${base}/attachments/${id}`);
      expect([what, anonymous.status, ((await anonymous.json()) as any).errors[0].message]).toEqual([what, 401, expect.stringMatching(/^Send your bearer token/)]);
      // A token sent and refused is told so, not asked for.
      const stale = await fetch(`${base}/attachments/${id}`, { headers: { authorization: 'Bearer not-a-token' } });
      expect([what, stale.status, ((await stale.json()) as any).errors[0].message]).toEqual([what, 401, expect.stringMatching(/invalid, expired or revoked/)]);
      // A member does get it (so the 404s above are about rights, not a broken route).
      const mine = await fetch(`${base}/attachments/${id}`, { headers: { authorization: `Bearer ${bob.token}` } });
      expect([what, mine.status, await mine.text()]).toEqual([what, 200, 'zq-file-body']);
    }
    const ghost = await fetch(`${base}/attachments/${randomUUID()}`, { headers: { authorization: `Bearer ${eve.token}` } });
    expect(ghost.status).toBe(404);
    // A malformed escape in the id is no attachment either (it used to throw outside any handler).
    const malformed = await fetch(`${base}/attachments/%E0%A4%A`, { headers: { authorization: `Bearer ${eve.token}` } });
    expect(malformed.status).toBe(404);
  });

  it('should deliver eve no event of what she has no right to, and refuse her targeted subscriptions', async () => {
    const { s, eve, alice, bob } = w;
    const MSG_SUB = 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { id content group { id name } project { id title } recipient { id } attachment { id } } }';
    const evePipe = wsClient(s.wsUrl, eve.token);
    const bobPipe = wsClient(s.wsUrl, bob.token);
    await Promise.all([evePipe.connected, bobPipe.connected]);
    const eveAll = subscribe(evePipe, MSG_SUB);
    const eveGroups = subscribe(evePipe, 'subscription { groupEvent { kind groupId group { id name } user { id } } }');
    const eveProjects = subscribe(evePipe, 'subscription { projectAction { id kind message projectId project { id title } } }');
    // Each with the code the service decides: a private group or a project she is not in is not found; a public group or a non-friend is forbidden.
    const targeted: [ReturnType<typeof subscribe>, string][] = [
      [subscribe(evePipe, MSG_SUB, { c: { groupId: w.privateGroup } }), 'NOT_FOUND'],
      [subscribe(evePipe, MSG_SUB, { c: { groupId: w.publicGroup } }), 'FORBIDDEN'],
      [subscribe(evePipe, MSG_SUB, { c: { projectId: w.project } }), 'NOT_FOUND'],
      [subscribe(evePipe, MSG_SUB, { c: { userId: alice.id } }), 'FORBIDDEN'],
      [subscribe(evePipe, 'subscription($p: ID) { projectAction(projectId: $p) { id message } }', { p: w.project }), 'NOT_FOUND'],
    ];
    // Bob, a member, is the control: what eve must not get does happen.
    const bobAll = subscribe(bobPipe, MSG_SUB);
    const bobProjects = subscribe(bobPipe, 'subscription { projectAction { id kind } }');
    await Promise.all(targeted.map(([t]) => t.done));
    for (const [t, expected] of targeted) {
      const code = (t.errors[0] as any)?.[0]?.extensions?.code ?? (t.errors[0] as any)?.extensions?.code;
      expect(code).toBe(expected);
      expect(t.values).toEqual([]);
    }
    await running(s, 'messageAdded', 2);
    await running(s, 'groupEvent', 1);
    await running(s, 'projectAction', 2);

    const as = (u: TestUser, q: string, v: Record<string, unknown> = {}) => ok(gql(s.url, q, v, u.token));
    await as(alice, SEND, { input: { groupId: w.privateGroup, content: SECRET.groupMessage } });
    await as(alice, SEND, { input: { toUserId: bob.id, content: SECRET.direct } });
    await as(alice, SEND, { input: { projectId: w.project, content: SECRET.projectMessage } });
    await as(alice, SEND, { input: { projectId: w.project, toUserId: bob.id, content: SECRET.projectPrivate } });
    await as(alice, `mutation($g: ID!) { renameGroup(groupId: $g, name: "${SECRET.renamed}") { id } }`, { g: w.privateGroup });
    await as(alice, 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }', { g: w.privateGroup, u: w.carol.id });
    await as(alice, `mutation($p: ID!) { renameProject(projectId: $p, title: "${SECRET.renamed}") { id } }`, { p: w.project });
    await as(alice, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p: w.project, u: w.carol.id });

    await bobAll.nth(4);
    await bobProjects.nth(1);
    // Then one event of each kind that is for eve: once each arrives, anything sent before it to her would have too.
    await as(alice, 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }', { g: w.publicGroup, u: eve.id });
    await as(alice, SEND, { input: { groupId: w.publicGroup, content: 'for eve too' } });
    const open = await buildProject(s.url, alice, { title: 'open-project', participants: [eve] });
    await Promise.all([eveAll.nth(1), eveGroups.nth(1), eveProjects.nth(1)]);
    expect(eveAll.values).toEqual([{ messageAdded: expect.objectContaining({ content: 'for eve too' }) }]);
    expect(eveGroups.values).toEqual([{ groupEvent: expect.objectContaining({ groupId: w.publicGroup, user: { id: eve.id } }) }]);
    expect(eveProjects.values).toEqual([{ projectAction: expect.objectContaining({ projectId: open.id }) }]);
    expect(leaks(JSON.stringify([eveAll, eveGroups, eveProjects, ...targeted.map(([t]) => t)].map((x) => [x.values, x.errors])))).toEqual([]);
  });
});
