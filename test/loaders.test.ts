import pg from 'pg';
import { gql, ok } from './helpers/graphql';
import { createTestServer } from './helpers/server';
import { buildProject, groupWith, sendMessage, signup } from './helpers/factories';

const PAGE = 'query($g: ID!) { history(conversation: { groupId: $g }, last: 50) { edges { node { id group { id name } } } } }';

/** Every statement this process sends to PostgreSQL while `run` runs (the server is in-process). */
async function statementsDuring(run: () => Promise<void>): Promise<string[]> {
  const seen: string[] = [];
  const query = pg.Client.prototype.query;
  const spy = jest.spyOn(pg.Client.prototype, 'query').mockImplementation(function (this: pg.Client, ...args: any[]) {
    const text = typeof args[0] === 'string' ? args[0] : args[0]?.text;
    if (typeof text === 'string') seen.push(text);
    return (query as any).apply(this, args);
  } as any);
  try {
    await run();
  } finally {
    spy.mockRestore();
  }
  return seen;
}

describe('per-operation loaders', () => {
  it("should read a history page's group once, not once per message", async () => {
    // One pooled connection, as a busy pool is: 50 reads of the group queued behind each other
    // used to outlast the pool's acquire timeout under load (SERVICE_UNAVAILABLE on the page).
    const s = await createTestServer({ DB_POOL_MAX: '1' });
    const a = await signup(s.url);
    const b = await signup(s.url);
    const g = await groupWith(s.url, a, 'Paged', [b]);
    for (let i = 0; i < 50; i++) await sendMessage(s.url, (i % 2 ? b : a).token, { groupId: g, content: `m${i}` });

    let page: any;
    const statements = await statementsDuring(async () => {
      page = await ok(gql(s.url, PAGE, { g }, b.token));
    });
    expect(page.history.edges).toHaveLength(50);
    expect(page.history.edges.every((e: any) => e.node.group.id === g && e.node.group.name === 'Paged')).toBe(true);
    const groupReads = statements.filter((t) => /from "groups?"|from groups\b/i.test(t) && !/messages/.test(t));
    expect(groupReads).toHaveLength(1);
  });

  it('should show a private group to the user it invites through node(id) and nodes as through group(id), and hide it from anyone else', async () => {
    const s = await createTestServer();
    const [owner, invitee, outsider] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const id = (await ok(gql(s.url, 'mutation { createGroup(name: "Hidden", isPrivate: true) { id } }', {}, owner.token))).createGroup.id;
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { inviteToGroup(groupId: $g, userId: $u) }', { g: id, u: invitee.id }, owner.token));
    const read = (token: string) =>
      ok(gql(s.url, 'query($id: ID!) { group(id: $id) { id } node(id: $id) { id } nodes(ids: [$id]) { id } }', { id }, token));
    expect(await read(invitee.token)).toEqual({ group: { id }, node: { id }, nodes: [{ id }] });
    expect(await read(owner.token)).toEqual({ group: { id }, node: { id }, nodes: [{ id }] });
    expect(await read(outsider.token)).toEqual({ group: null, node: null, nodes: [null] });
  });
});

describe('the project loader', () => {
  it("should read an inbox page's projects together, not one by one, and only the viewer's", async () => {
    const s = await createTestServer({ DB_POOL_MAX: '1' });
    const [owner, member] = [await signup(s.url), await signup(s.url)];
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await buildProject(s.url, owner, { title: `P${i}`, participants: [member] })).id);
    const INBOX = 'query { projectActions(last: 20) { edges { node { kind project { id title participants { id } } } } } }';
    let page: any;
    const statements = await statementsDuring(async () => {
      page = await ok(gql(s.url, INBOX, {}, member.token));
    });
    const edges = page.projectActions.edges.map((e: any) => e.node);
    expect(edges).toHaveLength(5);
    expect(edges.map((n: any) => n.project.title).sort()).toEqual(['P0', 'P1', 'P2', 'P3', 'P4']);
    expect(edges.every((n: any) => n.project.participants.length === 1)).toBe(true);
    // Two reads for the five projects (them, their members), where each project took two before.
    expect(statements.filter((t) => /from projects p\b/.test(t))).toHaveLength(1);
    expect(statements.filter((t) => /from project_members\b/.test(t) && !/projects p\b/.test(t))).toHaveLength(1);

    // A project the viewer left reads as null in their inbox, as before.
    await ok(gql(s.url, 'mutation($p: ID!) { leaveProject(projectId: $p) }', { p: ids[0] }, member.token));
    const after = (await ok(gql(s.url, INBOX, {}, member.token))).projectActions.edges.map((e: any) => e.node);
    expect(after.filter((n: any) => n.project === null).length).toBeGreaterThanOrEqual(1);
    expect(after.filter((n: any) => n.project !== null).map((n: any) => n.project.title).sort()).toEqual(['P1', 'P2', 'P3', 'P4']);
  });
});

describe('mutes on the sidebar', () => {
  it("should read each row's mutedUntil with the row, not in a query of its own", async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const [g1, g2] = [await groupWith(s.url, a, 'Muted', []), await groupWith(s.url, a, 'Loud', [])];
    for (const g of [g1, g2]) await sendMessage(s.url, a.token, { groupId: g, content: 'hi' });
    const until = new Date(Date.now() + 3600_000).toISOString();
    await ok(gql(s.url, 'mutation($c: ConversationInput!, $u: DateTime) { muteConversation(conversation: $c, until: $u) { id } }', { c: { groupId: g1 }, u: until }, a.token));
    let page: any;
    const statements = await statementsDuring(async () => {
      page = await ok(gql(s.url, '{ conversations(first: 20) { edges { node { id mutedUntil } } } }', {}, a.token));
    });
    const byId = Object.fromEntries(page.conversations.edges.map((e: any) => [e.node.id, e.node.mutedUntil]));
    expect(byId).toMatchObject({ [`g:${g1}`]: until, [`g:${g2}`]: null });
    expect(statements.filter((t) => /muted_until > now\(\)/.test(t))).toEqual([]);
  });
});
