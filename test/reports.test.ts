import { codeOf, gql, listen, ok, sleep } from './helpers/graphql';
import { createTestServer, describeRedis, type TestServer } from './helpers/server';
import { befriend, buildProject, sendMessage, signup, type TestUser } from './helpers/factories';
import { snapshot, sql, whileHolding } from './helpers/db';

const REPORT = 'mutation($m: ID!, $r: String!) { reportMessage(messageId: $m, reason: $r) { id reason status message { id content } reporter { id } } }';
const RESOLVE = 'mutation($id: ID!) { resolveReport(reportId: $id) { id status } }';
const REPORTS = 'query($s: ReportStatus, $first: Int, $after: String) { reports(status: $s, first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id reason status message { id } reporter { id } } } } }';
const ADDED = 'subscription { reportAdded { id reason message { id content } reporter { id } } }';
const ADD = 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }';
const ROLE = 'mutation($g: ID!, $u: ID!, $r: GroupRole!) { setGroupRole(groupId: $g, userId: $u, role: $r) { id } }';

const run = (s: TestServer, q: string, v: Record<string, unknown>, u?: TestUser) => gql(s.url, q, v, u?.token);
const ids = async (s: TestServer, u: TestUser, status = 'OPEN') => (await ok(run(s, REPORTS, { s: status }, u))).reports.edges.map((e: { node: { id: string } }) => e.node.id);

describeRedis('reports', () => {
  let a: TestServer;
  let b: TestServer;
  beforeEach(async () => {
    a = await createTestServer({ MODERATORS: 'mod_one' });
    b = await createTestServer({ MODERATORS: 'mod_one' }, { clean: false });
  });

  /** A private group: owner, admin, two members; an outsider; the instance moderator. */
  async function setup() {
    const [owner, admin, member, author, outsider] = [await signup(a.url), await signup(a.url), await signup(a.url), await signup(a.url), await signup(a.url)];
    const mod = await signup(a.url, { username: 'mod_one' });
    const group = (await ok(run(a, 'mutation { createGroup(name: "Reported", isPrivate: true) { id } }', {}, owner))).createGroup.id;
    for (const u of [admin, member, author]) await ok(run(a, ADD, { g: group, u: u.id }, owner));
    await ok(run(a, ROLE, { g: group, u: admin.id, r: 'ADMIN' }, owner));
    const message = (await sendMessage(a.url, author.token, { groupId: group, content: 'rude words' })).id;
    return { owner, admin, member, author, outsider, mod, group, message };
  }

  it("should send a group message's report live to the owner and admins only, on every instance", async () => {
    const { owner, admin, member, author, outsider, mod, message } = await setup();
    const subs = [await listen(b, owner, ADDED), await listen(a, admin, ADDED)];
    const others = [await listen(b, member, ADDED), await listen(b, mod, ADDED), await listen(a, author, ADDED), await listen(b, outsider, ADDED)];
    const made = (await ok(run(b, REPORT, { m: message, r: '  spam  ' }, member))).reportMessage;
    expect(made).toMatchObject({ reason: 'spam', status: 'OPEN', message: { id: message, content: 'rude words' }, reporter: { id: member.id } });
    for (const s of subs) expect((await s.nth(1)).reportAdded).toMatchObject({ id: made.id, reason: 'spam', message: { id: message }, reporter: { id: member.id } });
    await sleep(200);
    for (const s of others) expect(s.values).toEqual([]);
    expect(await ids(a, owner)).toEqual([made.id]);
    expect(await ids(b, admin)).toEqual([made.id]);
    // Those who do not handle it see none (not even the reporter, nor the instance moderator).
    for (const u of [member, author, outsider, mod]) expect(await ids(a, u)).toEqual([]);
  });

  it('should take one report per user and message, from those who can see it, with a reason of 1 to 500 characters', async () => {
    const { owner, member, author, outsider, admin, message } = await setup();
    const before = await snapshot(a.env.DATABASE_URL!);
    const refusals: [TestUser | undefined, string, string, string][] = [
      [outsider, message, 'spam', 'NOT_FOUND'],
      [member, '00000000-0000-4000-8000-000000000000', 'spam', 'NOT_FOUND'],
      [member, 'not-an-id', 'spam', 'NOT_FOUND'],
      [member, message, '', 'BAD_USER_INPUT'],
      [member, message, '   ', 'BAD_USER_INPUT'],
      [member, message, 'x'.repeat(501), 'BAD_USER_INPUT'],
      [author, message, 'my own', 'BAD_USER_INPUT'],
      [undefined, message, 'spam', 'UNAUTHENTICATED'],
    ];
    for (const [who, m, r, code] of refusals) expect([r.slice(0, 10), codeOf(await run(b, REPORT, { m, r }, who))]).toEqual([r.slice(0, 10), code]);
    // Told about the reason, not about a message.
    const long = await run(b, REPORT, { m: message, r: 'x'.repeat(501) }, member);
    expect(long.errors?.[0]).toMatchObject({ message: "'reason' is at most 500 characters.", extensions: { code: 'BAD_USER_INPUT', field: 'reason' } });
    expect(await snapshot(a.env.DATABASE_URL!)).toEqual(before);
    // Characters as a reader counts them: 501 emoji are too many, 500 (1,000 UTF-16 units) are not.
    expect(codeOf(await run(b, REPORT, { m: message, r: '🚩'.repeat(501) }, member))).toBe('BAD_USER_INPUT');
    await ok(run(a, REPORT, { m: message, r: '🚩'.repeat(500) }, member));
    const once = await snapshot(a.env.DATABASE_URL!);
    expect(codeOf(await run(b, REPORT, { m: message, r: 'again' }, member))).toBe('CONFLICT');
    expect(await snapshot(a.env.DATABASE_URL!)).toEqual(once);
    // Someone else may report it too.
    await ok(run(b, REPORT, { m: message, r: 'me too' }, admin));
    // Not one who blocks its sender, for whom history and node() leave it out (a report answered its text).
    await ok(run(a, 'mutation($u: ID!) { blockUser(userId: $u) }', { u: author.id }, owner));
    const hidden = await run(b, REPORT, { m: message, r: 'hidden' }, owner);
    expect([codeOf(hidden), hidden.data?.reportMessage ?? null]).toEqual(['NOT_FOUND', null]);
  });

  it('should refuse a report of a message whose deletion commits while the report is made', async () => {
    const { member, message } = await setup();
    // The deletion holds the message's row, as a tombstone does, and commits once the report came to wait on it.
    const answer = await whileHolding(a.env.DATABASE_URL!, [["update messages set deleted_at = date_trunc('milliseconds', clock_timestamp()), content = null where id = $1", [message]]], () =>
      run(b, REPORT, { m: message, r: 'rude' }, member),
    );
    // Before, it was stored: a report of a deleted message, dated after its deletion (an outside probe, 7 of 30).
    expect([codeOf(answer), answer.errors?.[0]?.message]).toEqual(['BAD_USER_INPUT', 'A deleted message cannot be reported.']);
    expect(await sql(a.env.DATABASE_URL!, 'select 1 from reports where message_id = $1', [message])).toEqual([]);
  });

  it('should let those who see a report resolve it, and answer NOT_FOUND to everyone else', async () => {
    const { owner, admin, member, author, outsider, mod, message } = await setup();
    const made = (await ok(run(a, REPORT, { m: message, r: 'spam' }, member))).reportMessage;
    const state = () => sql(a.env.DATABASE_URL!, 'select status, resolved_by from reports order by id');
    const before = await state();
    for (const u of [member, author, outsider, mod]) expect(codeOf(await run(b, RESOLVE, { id: made.id }, u))).toBe('NOT_FOUND');
    expect(codeOf(await run(b, RESOLVE, { id: '00000000-0000-4000-8000-000000000000' }, owner))).toBe('NOT_FOUND');
    expect(codeOf(await run(b, RESOLVE, { id: made.id }))).toBe('UNAUTHENTICATED');
    expect(await state()).toEqual(before);
    expect((await ok(run(b, RESOLVE, { id: made.id }, admin))).resolveReport.status).toBe('RESOLVED');
    // Twice changes nothing; the owner sees it among the resolved ones.
    expect((await ok(run(a, RESOLVE, { id: made.id }, owner))).resolveReport.status).toBe('RESOLVED');
    expect(await ids(a, owner)).toEqual([]);
    expect(await ids(a, owner, 'RESOLVED')).toEqual([made.id]);
    // An admin demoted handles the group's reports no more.
    await ok(run(a, ROLE, { g: (await setupGroupOf(a, message)), u: admin.id, r: 'MEMBER' }, owner));
    expect(await ids(a, admin, 'RESOLVED')).toEqual([]);
  });

  it('should send reports of direct and project messages to the MODERATORS only', async () => {
    const [ada, bo, cy] = [await signup(a.url), await signup(a.url), await signup(a.url)];
    const mod = await signup(a.url, { username: 'Mod_One' });
    await befriend(a.url, ada, bo);
    const direct = (await ok(run(a, 'mutation($u: ID!) { sendMessage(input: { toUserId: $u, content: "hey" }) { id } }', { u: bo.id }, ada))).sendMessage.id;
    const project = await buildProject(a.url, ada, { participants: [cy] });
    const inProject = (await ok(run(a, 'mutation($p: ID!) { sendMessage(input: { projectId: $p, content: "plan" }) { id } }', { p: project.id }, ada))).sendMessage.id;
    const modSub = await listen(b, mod, ADDED);
    const adaSub = await listen(b, ada, ADDED);
    // A direct message: its other party may report it; a stranger may not see it.
    expect(codeOf(await run(b, REPORT, { m: direct, r: 'creepy' }, cy))).toBe('NOT_FOUND');
    const r1 = (await ok(run(b, REPORT, { m: direct, r: 'creepy' }, bo))).reportMessage;
    const r2 = (await ok(run(a, REPORT, { m: inProject, r: 'off topic' }, cy))).reportMessage;
    expect((await modSub.nth(2)).reportAdded.id).toBe(r2.id);
    expect(modSub.values[0].reportAdded).toMatchObject({ id: r1.id, message: { id: direct, content: 'hey' } });
    // Newest first, paged.
    const page1 = (await ok(run(a, REPORTS, { first: 1 }, mod))).reports;
    expect(page1).toMatchObject({ totalCount: 2, pageInfo: { hasNextPage: true } });
    expect(page1.edges[0].node.id).toBe(r2.id);
    const page2 = (await ok(run(a, REPORTS, { first: 1, after: page1.pageInfo.endCursor }, mod))).reports;
    expect(page2.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual([r1.id]);
    expect(page2.pageInfo.hasNextPage).toBe(false);
    expect(codeOf(await run(a, REPORTS, { after: 'garbage' }, mod))).toBe('BAD_USER_INPUT');
    await sleep(200);
    expect(adaSub.values).toEqual([]);
    for (const u of [ada, bo, cy]) expect(await ids(a, u)).toEqual([]);
    expect(codeOf(await run(a, RESOLVE, { id: r1.id }, bo))).toBe('NOT_FOUND');
    expect((await ok(run(a, RESOLVE, { id: r1.id }, mod))).resolveReport.status).toBe('RESOLVED');
  });
});

describeRedis('reports paging', () => {
  const PAGE = 'query($first: Int, $after: String, $last: Int, $before: String) { reports(first: $first, after: $after, last: $last, before: $before) { totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor node { id } } } }';
  type Page = { totalCount: number; pageInfo: { hasNextPage: boolean; hasPreviousPage: boolean; startCursor: string; endCursor: string }; edges: { cursor: string; node: { id: string } }[] };

  it('should page reports both ways, newest first either way, and refuse both ways at once', async () => {
    const s = await createTestServer();
    const [owner, author, ...reporters] = await Promise.all(Array.from({ length: 7 }, () => signup(s.url)));
    const group = (await ok(run(s, 'mutation { createGroup(name: "Paged") { id } }', {}, owner))).createGroup.id;
    for (const u of [author, ...reporters]) await ok(run(s, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g: group }, u));
    const message = (await sendMessage(s.url, author.token, { groupId: group, content: 'rude' })).id;
    const made: string[] = [];
    for (const r of reporters) made.push((await ok(run(s, REPORT, { m: message, r: 'spam' }, r))).reportMessage.id);
    const newest = [...made].reverse();
    const page = async (v: Record<string, unknown>): Promise<Page> => (await ok(run(s, PAGE, v, owner))).reports;
    const idsOf = (p: Page) => p.edges.map((e) => e.node.id);

    // last/before: from the oldest end toward newer reports, the edges still newest first.
    const back1 = await page({ last: 2 });
    expect([idsOf(back1), back1.pageInfo.hasPreviousPage, back1.pageInfo.hasNextPage, back1.totalCount]).toEqual([newest.slice(3, 5), true, false, 5]);
    const back2 = await page({ last: 2, before: back1.pageInfo.startCursor });
    expect([idsOf(back2), back2.pageInfo.hasPreviousPage, back2.pageInfo.hasNextPage]).toEqual([newest.slice(1, 3), true, true]);
    const back3 = await page({ last: 2, before: back2.pageInfo.startCursor });
    expect([idsOf(back3), back3.pageInfo.hasPreviousPage, back3.pageInfo.hasNextPage]).toEqual([[newest[0]], false, true]);
    // first/after from an edge a backward page gave: the same rows forward.
    const fwd = await page({ first: 2, after: back3.pageInfo.endCursor });
    expect([idsOf(fwd), fwd.pageInfo.hasPreviousPage, fwd.pageInfo.hasNextPage]).toEqual([newest.slice(1, 3), true, true]);
    expect(idsOf(await page({ first: 100 }))).toEqual(newest);
    // An edge's own cursor works as well as pageInfo's.
    expect(idsOf(await page({ last: 1, before: fwd.edges[1].cursor }))).toEqual([newest[1]]);
    // Both ways at once, a bad size or cursor: BAD_USER_INPUT.
    for (const v of [{ first: 1, last: 1 }, { after: back1.pageInfo.endCursor, before: back1.pageInfo.startCursor }, { last: 101 }, { before: 'garbage' }]) {
      expect(codeOf(await run(s, PAGE, v, owner))).toBe('BAD_USER_INPUT');
    }
  });
});

describeRedis('report limits', () => {
  it('should refuse reports past RATE_LIMIT_REPORT with RATE_LIMITED, writing nothing', async () => {
    const s = await createTestServer({ RATE_LIMIT_REPORT: '2/1h' });
    const [ada, bo] = [await signup(s.url), await signup(s.url)];
    const group = (await ok(run(s, 'mutation { createGroup(name: "Noisy") { id } }', {}, ada))).createGroup.id;
    await ok(run(s, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g: group }, bo));
    const ids = [];
    for (let i = 0; i < 3; i++) ids.push((await sendMessage(s.url, ada.token, { groupId: group, content: `m${i}` })).id);
    // Refusals cost nothing: no reason, no such message, one's own, a second report of one.
    expect(codeOf(await run(s, REPORT, { m: ids[0], r: ' ' }, bo))).toBe('BAD_USER_INPUT');
    expect(codeOf(await run(s, REPORT, { m: '00000000-0000-4000-8000-000000000000', r: 'gone' }, bo))).toBe('NOT_FOUND');
    expect(codeOf(await run(s, REPORT, { m: ids[0], r: 'mine' }, ada))).toBe('BAD_USER_INPUT');
    await ok(run(s, REPORT, { m: ids[0], r: 'one' }, bo));
    expect(codeOf(await run(s, REPORT, { m: ids[0], r: 'again' }, bo))).toBe('CONFLICT');
    await ok(run(s, REPORT, { m: ids[1], r: 'two' }, bo));
    const before = await snapshot(s.env.DATABASE_URL!);
    expect(codeOf(await run(s, REPORT, { m: ids[2], r: 'three' }, bo))).toBe('RATE_LIMITED');
    // Past it, before the report looks at what it asks (no reason, no such message).
    expect(codeOf(await run(s, REPORT, { m: ids[2], r: ' ' }, bo))).toBe('RATE_LIMITED');
    expect(codeOf(await run(s, REPORT, { m: '00000000-0000-4000-8000-000000000000', r: 'gone' }, bo))).toBe('RATE_LIMITED');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
  });
});

/** The group a message was sent in. */
async function setupGroupOf(s: TestServer, messageId: string): Promise<string> {
  const [row] = await sql(s.env.DATABASE_URL!, 'select group_id from messages where id = $1', [messageId]);
  return row.group_id;
}
