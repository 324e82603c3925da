import { codeOf, gql, ok } from './helpers/graphql';
import { createTestServer } from './helpers/server';
import { befriend, buildGroup, buildProject, sendMessage, signup } from './helpers/factories';
import { snapshot } from './helpers/db';

/** Each Node type's own fields, through one fragment per type, as a Relay client refetches them. */
const NODE_FIELDS = `__typename id
  ... on User { username }
  ... on Group { name }
  ... on Message { content conversationId }
  ... on Project { title }
  ... on Conversation { kind title }
  ... on ProjectAction { action: kind projectId }`;
const NODE = `query($id: ID!) { node(id: $id) { ${NODE_FIELDS} } }`;
const NODES = `query($ids: [ID!]!) { nodes(ids: $ids) { ${NODE_FIELDS} } }`;
const NOWHERE = '00000000-0000-4000-8000-000000000000';

describe('node', () => {
  it('should refetch every Node type by its id, as its own query shows it to the viewer', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const group = await buildGroup(s.url, alice, { name: 'Node club', members: [bob] });
    const inGroup = await sendMessage(s.url, bob.token, { groupId: group.id, content: 'in the group' });
    await befriend(s.url, alice, bob);
    const direct = await sendMessage(s.url, bob.token, { toUserId: alice.id, content: 'just us' });
    const project = await buildProject(s.url, alice, { title: 'Launch', participants: [bob] });
    const inProject = await sendMessage(s.url, alice.token, { projectId: project.id, content: 'kickoff' });
    const inbox = (await ok(gql(s.url, '{ projectActions { edges { node { id kind } } } }', {}, bob.token))).projectActions.edges;
    const action = inbox[inbox.length - 1].node;

    const cases: [string, Record<string, unknown>][] = [
      [bob.id, { __typename: 'User', id: bob.id, username: bob.username }],
      [group.id, { __typename: 'Group', id: group.id, name: 'Node club' }],
      [inGroup.id, { __typename: 'Message', id: inGroup.id, content: 'in the group', conversationId: `g:${group.id}` }],
      [direct.id, { __typename: 'Message', id: direct.id, content: 'just us', conversationId: direct.conversationId }],
      [project.id, { __typename: 'Project', id: project.id, title: 'Launch' }],
      [`g:${group.id}`, { __typename: 'Conversation', id: `g:${group.id}`, kind: 'GROUP', title: 'Node club' }],
      [direct.conversationId, { __typename: 'Conversation', id: direct.conversationId, kind: 'DIRECT', title: expect.any(String) }],
      [inProject.conversationId, { __typename: 'Conversation', id: `p:${project.id}`, kind: 'PROJECT', title: 'Launch' }],
      [action.id, { __typename: 'ProjectAction', id: action.id, action: action.kind, projectId: project.id }],
    ];
    for (const [id, expected] of cases) expect([id, (await ok(gql(s.url, NODE, { id }, bob.token))).node]).toEqual([id, expected]);
    // The lobby's owner, the placeholder for no account, as `user` and `node` show it.
    const lobbyOwner = (await ok(gql(s.url, '{ groups(first: 100) { edges { node { isLobby owner { id username } } } } }', {}, bob.token))).groups.edges.find((e: any) => e.node.isLobby).node.owner;
    expect((await ok(gql(s.url, NODE, { id: lobbyOwner.id }, bob.token))).node).toEqual({ __typename: 'User', ...lobbyOwner });
    expect((await ok(gql(s.url, 'query($id: ID!) { user(id: $id) { id username } }', { id: lobbyOwner.id }, bob.token))).user).toEqual(lobbyOwner);
    // IDs in any case, as everywhere.
    expect((await ok(gql(s.url, NODE, { id: inGroup.id.toUpperCase() }, bob.token))).node.id).toBe(inGroup.id);
    expect((await ok(gql(s.url, NODE, { id: `G:${group.id.toUpperCase()}` }, bob.token))).node.id).toBe(`g:${group.id}`);

    // nodes: the same answers in the order asked, repeats and misses included.
    const ids = [inGroup.id, NOWHERE, bob.id, `g:${group.id}`, inGroup.id, 'not-an-id'];
    expect((await ok(gql(s.url, NODES, { ids }, bob.token))).nodes.map((n: { id: string } | null) => n?.id ?? null)).toEqual([
      inGroup.id,
      null,
      bob.id,
      `g:${group.id}`,
      inGroup.id,
      null,
    ]);
  });

  it('should answer null, never an error, for what the viewer may not see, exactly as for what does not exist', async () => {
    const s = await createTestServer();
    const [alice, bob, carol, eve, gone] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const secret = await buildGroup(s.url, alice, { name: 'Secret', isPrivate: true, members: [bob] });
    const inSecret = await sendMessage(s.url, alice.token, { groupId: secret.id, content: 'hidden' });
    const project = await buildProject(s.url, alice, { participants: [bob, eve] });
    const whisper = await sendMessage(s.url, alice.token, { projectId: project.id, toUserId: bob.id, content: 'between us' });
    await befriend(s.url, alice, bob);
    const direct = await sendMessage(s.url, alice.token, { toUserId: bob.id, content: 'dm' });
    const bobsAction = (await ok(gql(s.url, '{ projectActions { edges { node { id } } } }', {}, bob.token))).projectActions.edges[0].node.id;
    await ok(gql(s.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: gone.password }, gone.token));

    const hidden: [string, string][] = [
      ['a private group carol is not in', secret.id],
      ['its conversation', `g:${secret.id}`],
      ['a message in it', inSecret.id],
      ['a project carol is not in', project.id],
      ['its conversation', `p:${project.id}`],
      ["another member's private message (eve is a member)", whisper.id],
      ["someone else's direct message", direct.id],
      ["someone else's direct conversation", direct.conversationId],
      ["another user's inbox entry", bobsAction],
      ['a deleted account', gone.id],
      ['nothing', NOWHERE],
      ['a group key naming nothing', `g:${NOWHERE}`],
      ['a malformed key', `g:${secret.id}:x`],
      ['not an id', 'hello'],
    ];
    const before = await snapshot(s.env.DATABASE_URL!);
    for (const [what, id] of hidden) {
      // eve may see the project, not its private message to bob.
      const viewer = what.includes('eve') ? eve : carol;
      const r = await gql(s.url, NODE, { id }, viewer.token);
      expect([what, r.data, r.errors]).toEqual([what, { node: null }, undefined]);
    }
    const r = await gql(s.url, NODES, { ids: hidden.map(([, id]) => id) }, carol.token);
    expect([r.data, r.errors]).toEqual([{ nodes: hidden.map(() => null) }, undefined]);
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    // Yet bob, who may, sees each of his.
    for (const id of [secret.id, inSecret.id, whisper.id, direct.conversationId, bobsAction]) {
      expect((await ok(gql(s.url, NODE, { id }, bob.token))).node?.id).toBe(id);
    }
    // In one call, a project's open message and its private one are told apart for each viewer.
    const open = await sendMessage(s.url, alice.token, { projectId: project.id, content: 'for everyone' });
    const ids = [open.id, whisper.id, open.id];
    const seen = async (viewer: typeof eve) => (await ok(gql(s.url, NODES, { ids }, viewer.token))).nodes.map((n: { id: string } | null) => n?.id ?? null);
    expect(await seen(eve)).toEqual([open.id, null, open.id]);
    expect(await seen(bob)).toEqual(ids);
    expect(await seen(carol)).toEqual([null, null, null]);
  });

  it("should refetch a report for those who handle it only, null for its reporter and outsiders", async () => {
    const s = await createTestServer();
    const [owner, admin, reporter, author, outsider] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const group = await buildGroup(s.url, owner, { name: 'Reported', members: [admin, reporter, author] });
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { setGroupRole(groupId: $g, userId: $u, role: ADMIN) { id } }', { g: group.id, u: admin.id }, owner.token));
    const message = await sendMessage(s.url, author.token, { groupId: group.id, content: 'rude' });
    const report = (await ok(gql(s.url, 'mutation($m: ID!) { reportMessage(messageId: $m, reason: "spam") { id } }', { m: message.id }, reporter.token))).reportMessage;
    const REPORT_NODE = 'query($id: ID!) { node(id: $id) { __typename id ... on Report { reason status message { id } reporter { id } } } }';
    const expected = { __typename: 'Report', id: report.id, reason: 'spam', status: 'OPEN', message: { id: message.id }, reporter: { id: reporter.id } };
    for (const handler of [owner, admin]) expect((await ok(gql(s.url, REPORT_NODE, { id: report.id }, handler.token))).node).toEqual(expected);
    // The reporter, the reported author and an outsider: null, as for an id naming nothing.
    for (const other of [reporter, author, outsider]) {
      const r = await gql(s.url, REPORT_NODE, { id: report.id }, other.token);
      expect([r.data, r.errors]).toEqual([{ node: null }, undefined]);
    }
    expect((await ok(gql(s.url, NODES, { ids: [report.id, message.id] }, reporter.token))).nodes.map((n: { id: string } | null) => n?.id ?? null)).toEqual([null, message.id]);
    // Resolved, still the handlers'; an admin demoted sees it no more.
    await ok(gql(s.url, 'mutation($id: ID!) { resolveReport(reportId: $id) { id } }', { id: report.id }, admin.token));
    expect((await ok(gql(s.url, REPORT_NODE, { id: report.id }, owner.token))).node).toMatchObject({ id: report.id, status: 'RESOLVED' });
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { setGroupRole(groupId: $g, userId: $u, role: MEMBER) { id } }', { g: group.id, u: admin.id }, owner.token));
    expect((await ok(gql(s.url, REPORT_NODE, { id: report.id }, admin.token))).node).toBeNull();
  });

  it('should ask for a token, and refuse more than 100 ids', async () => {
    const s = await createTestServer();
    const alice = await signup(s.url);
    expect(codeOf(await gql(s.url, NODE, { id: alice.id }))).toBe('UNAUTHENTICATED');
    expect(codeOf(await gql(s.url, NODES, { ids: Array.from({ length: 101 }, () => alice.id) }, alice.token))).toBe('BAD_USER_INPUT');
    expect((await ok(gql(s.url, NODES, { ids: Array.from({ length: 100 }, () => alice.id) }, alice.token))).nodes).toHaveLength(100);
  });
});
