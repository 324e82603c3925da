import { codeOf, gql, listen, ok, subscribe, wsClient } from './helpers/graphql';
import { createTestServer, describeRedis, type TestServer } from './helpers/server';
import { buildProject, lobbyOf, sendMessage, signup, type TestUser, attempt, request } from './helpers/factories';
import { HistoryDocument } from '../generated/client/graphql';
import { snapshot, sql, whileHolding } from './helpers/db';
import { holdNextPublishOf } from './helpers/publish';
import { Topic } from '../src/shared/pubsub/topics';
import { eventually, sleep } from './helpers/graphql';

const PROJECT_FIELDS = 'id title createdAt viewerRole owner { id } coaches { id } participants { id }';
const CREATE = `mutation($t: String!) { createProject(title: $t) { ${PROJECT_FIELDS} } }`;
const RENAME = `mutation($p: ID!, $t: String!) { renameProject(projectId: $p, title: $t) { ${PROJECT_FIELDS} } }`;
const DELETE = 'mutation($p: ID!) { deleteProject(projectId: $p) }';
const ADD = `mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { ${PROJECT_FIELDS} } }`;
const REMOVE = `mutation($p: ID!, $u: ID!) { removeProjectParticipant(projectId: $p, userId: $u) { ${PROJECT_FIELDS} } }`;
const LEAVE = 'mutation($p: ID!) { leaveProject(projectId: $p) }';
const DESIGNATE = `mutation($p: ID!, $u: ID!) { designateCoach(projectId: $p, userId: $u) { ${PROJECT_FIELDS} } }`;
const WITHDRAW = `mutation($p: ID!, $u: ID!) { withdrawCoach(projectId: $p, userId: $u) { ${PROJECT_FIELDS} } }`;
const PROJECT = `query($id: ID!) { project(id: $id) { ${PROJECT_FIELDS} } }`;
const PROJECTS = `{ projects { ${PROJECT_FIELDS} } }`;
const ACTION_FIELDS = 'id kind message projectId previousTitle createdAt actor { id } target { id } project { id title }';
const INBOX = `query($p: ID, $last: Int, $before: String) { projectActions(projectId: $p, last: $last, before: $before) {
  totalCount pageInfo { hasPreviousPage hasNextPage startCursor endCursor } edges { cursor node { ${ACTION_FIELDS} } } } }`;
const ACTIONS_LIVE = `subscription($p: ID) { projectAction(projectId: $p) { ${ACTION_FIELDS} } }`;
const SEND = `mutation($input: SendMessageInput!) { sendMessage(input: $input) {
  id content sender { id } recipient { id } group { id } project { id title } attachment { fileName mimeType size } } }`;
const MESSAGES_LIVE = 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { id content recipient { id } project { id } } }';

const ids = (users: { id: string }[]) => users.map((u) => u.id);

/** Events for `member` from outside the project under test: a lobby message ('barrier') and being added to another project. */
async function barriersFor(s: TestServer, owner: TestUser, member: TestUser): Promise<void> {
  await sendMessage(s.url, owner.token, { groupId: await lobbyOf(s.url, owner.token), content: 'barrier' });
  await buildProject(s.url, owner, { title: 'Barrier', participants: [member] });
}

async function inbox(url: string, user: TestUser, vars: Record<string, unknown> = {}) {
  return (await ok(gql(url, INBOX, { last: 100, ...vars }, user.token))).projectActions;
}

/** The viewer's inbox as [kind, message], oldest first as its edges come. */
async function story(url: string, user: TestUser, projectId?: string): Promise<[string, string][]> {
  const box = await inbox(url, user, projectId ? { p: projectId } : {});
  return box.edges.map((e: any) => [e.node.kind, e.node.message] as [string, string]);
}

describe('projects', () => {
  it('should make the creator the owner, show the project to members only and refuse bad titles', async () => {
    const s = await createTestServer();
    const [alice, bob, outsider] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const p = (await ok(gql(s.url, CREATE, { t: '  Apollo  ' }, alice.token))).createProject;
    expect(p).toMatchObject({ title: 'Apollo', viewerRole: 'OWNER', owner: { id: alice.id }, coaches: [], participants: [] });
    await ok(gql(s.url, ADD, { p: p.id, u: bob.id }, alice.token));
    await ok(gql(s.url, DESIGNATE, { p: p.id, u: bob.id }, alice.token));
    const seen = (await ok(gql(s.url, PROJECT, { id: p.id }, bob.token))).project;
    // A coach is a participant with the coach role: listed in both; the owner in neither.
    expect(seen).toMatchObject({ title: 'Apollo', viewerRole: 'COACH', owner: { id: alice.id }, coaches: [{ id: bob.id }], participants: [{ id: bob.id }] });
    expect((await ok(gql(s.url, PROJECTS, {}, bob.token))).projects.map((x: any) => x.id)).toEqual([p.id]);
    expect((await ok(gql(s.url, PROJECT, { id: p.id }, outsider.token))).project).toBeNull();
    expect((await ok(gql(s.url, PROJECT, { id: 'not-an-id' }, outsider.token))).project).toBeNull();
    expect((await ok(gql(s.url, PROJECTS, {}, outsider.token))).projects).toEqual([]);

    const before = await snapshot(s.env.DATABASE_URL!);
    for (const t of ['', '   ', 'x'.repeat(101), 'two\nlines', 'nul\u0000']) {
      expect([t, codeOf(await gql(s.url, CREATE, { t }, alice.token))]).toEqual([t, 'BAD_USER_INPUT']);
      expect([t, codeOf(await gql(s.url, RENAME, { p: p.id, t }, alice.token))]).toEqual([t, 'BAD_USER_INPUT']);
    }
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    // 100 characters is the limit, counted as characters, not bytes.
    expect((await ok(gql(s.url, CREATE, { t: 'é'.repeat(100) }, alice.token))).createProject.title).toBe('é'.repeat(100));
  });

  describe('role matrix', () => {
    type Role = 'owner' | 'coach' | 'participant' | 'outsider' | 'anonymous';
    const ROLES: Role[] = ['owner', 'coach', 'participant', 'outsider', 'anonymous'];

    /** Each case starts from a fresh project: owner, a coach, a participant, and a plain participant `target`. */
    async function world(s: TestServer) {
      const u = {
        owner: await signup(s.url),
        coach: await signup(s.url),
        participant: await signup(s.url),
        target: await signup(s.url),
        coach2: await signup(s.url),
        outsider: await signup(s.url),
        newcomer: await signup(s.url),
      };
      const fresh = async () => {
        const p = (await ok(gql(s.url, CREATE, { t: 'Matrix' }, u.owner.token))).createProject.id as string;
        for (const m of [u.coach, u.participant, u.target, u.coach2]) await ok(gql(s.url, ADD, { p, u: m.id }, u.owner.token));
        await ok(gql(s.url, DESIGNATE, { p, u: u.coach.id }, u.owner.token));
        await ok(gql(s.url, DESIGNATE, { p, u: u.coach2.id }, u.owner.token));
        return p;
      };
      const tokenOf = (r: Role) => (r === 'anonymous' ? undefined : u[r].token);
      return { u, fresh, tokenOf };
    }

    const cases: { name: string; query: string; vars: (p: string, u: Awaited<ReturnType<typeof world>>['u']) => Record<string, unknown>; expect: Record<Role, string> }[] = [
      {
        name: 'renameProject',
        query: RENAME,
        vars: (p) => ({ p, t: 'Renamed' }),
        expect: { owner: 'OK', coach: 'FORBIDDEN', participant: 'FORBIDDEN', outsider: 'FORBIDDEN', anonymous: 'UNAUTHENTICATED' },
      },
      {
        name: 'deleteProject',
        query: DELETE,
        vars: (p) => ({ p }),
        expect: { owner: 'OK', coach: 'FORBIDDEN', participant: 'FORBIDDEN', outsider: 'FORBIDDEN', anonymous: 'UNAUTHENTICATED' },
      },
      {
        name: 'designateCoach',
        query: DESIGNATE,
        vars: (p, u) => ({ p, u: u.target.id }),
        expect: { owner: 'OK', coach: 'FORBIDDEN', participant: 'FORBIDDEN', outsider: 'FORBIDDEN', anonymous: 'UNAUTHENTICATED' },
      },
      {
        name: 'withdrawCoach',
        query: WITHDRAW,
        vars: (p, u) => ({ p, u: u.coach2.id }),
        expect: { owner: 'OK', coach: 'FORBIDDEN', participant: 'FORBIDDEN', outsider: 'FORBIDDEN', anonymous: 'UNAUTHENTICATED' },
      },
      {
        name: 'addProjectParticipant',
        query: ADD,
        vars: (p, u) => ({ p, u: u.newcomer.id }),
        expect: { owner: 'OK', coach: 'OK', participant: 'FORBIDDEN', outsider: 'FORBIDDEN', anonymous: 'UNAUTHENTICATED' },
      },
      {
        name: 'removeProjectParticipant',
        query: REMOVE,
        vars: (p, u) => ({ p, u: u.target.id }),
        expect: { owner: 'OK', coach: 'OK', participant: 'FORBIDDEN', outsider: 'FORBIDDEN', anonymous: 'UNAUTHENTICATED' },
      },
      {
        name: 'leaveProject',
        query: LEAVE,
        vars: (p) => ({ p }),
        expect: { owner: 'OK', coach: 'OK', participant: 'OK', outsider: 'FORBIDDEN', anonymous: 'UNAUTHENTICATED' },
      },
    ];

    for (const c of cases) {
      it(`should apply the role rules of ${c.name}, changing nothing on refusal`, async () => {
        const s = await createTestServer();
        const w = await world(s);
        const p = await w.fresh();
        const before = await snapshot(s.env.DATABASE_URL!);
        for (const role of ROLES.filter((r) => c.expect[r] !== 'OK')) {
          const r = await gql(s.url, c.query, c.vars(p, w.u), w.tokenOf(role));
          expect([role, codeOf(r)]).toEqual([role, c.expect[role]]);
        }
        expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
        for (const role of ROLES.filter((r) => c.expect[r] === 'OK')) {
          // Every allowed role succeeds on a project of its own, so one's change can't hide another's.
          const own = await w.fresh();
          const r = await gql(s.url, c.query, c.vars(own, w.u), w.tokenOf(role));
          expect([role, r.errors]).toEqual([role, undefined]);
        }
      });
    }

    it('should let anyone signed in create a project, and no one anonymous', async () => {
      const s = await createTestServer();
      const u = await signup(s.url);
      expect(codeOf(await gql(s.url, CREATE, { t: 'Anon' }))).toBe('UNAUTHENTICATED');
      for (const q of [PROJECTS, INBOX]) expect(codeOf(await gql(s.url, q, {}))).toBe('UNAUTHENTICATED');
      expect(codeOf(await gql(s.url, PROJECT, { id: u.id }))).toBe('UNAUTHENTICATED');
      expect((await ok(gql(s.url, CREATE, { t: 'Mine' }, u.token))).createProject.owner.id).toBe(u.id);
    });

    it('should keep the owner and coaches out of reach of those below them', async () => {
      const s = await createTestServer();
      const w = await world(s);
      const p = await w.fresh();
      const { owner, coach, coach2, participant, outsider } = w.u;
      const before = await snapshot(s.env.DATABASE_URL!);
      // Only the owner removes a coach; no one removes the owner; removing oneself is leaving.
      expect(codeOf(await gql(s.url, REMOVE, { p, u: coach2.id }, coach.token))).toBe('FORBIDDEN');
      expect(codeOf(await gql(s.url, REMOVE, { p, u: owner.id }, coach.token))).toBe('FORBIDDEN');
      expect(codeOf(await gql(s.url, REMOVE, { p, u: coach.id }, participant.token))).toBe('FORBIDDEN');
      // Naming oneself is BAD_USER_INPUT at every role, a participant's too (API.md).
      for (const self of [owner, coach, participant]) expect(codeOf(await gql(s.url, REMOVE, { p, u: self.id }, self.token))).toBe('BAD_USER_INPUT');
      for (const q of [DESIGNATE, WITHDRAW]) expect(codeOf(await gql(s.url, q, { p, u: owner.id }, owner.token))).toBe('BAD_USER_INPUT');
      // Targets must be members (or, to add, existing users); ids must be ids.
      for (const q of [REMOVE, DESIGNATE, WITHDRAW]) expect(codeOf(await gql(s.url, q, { p, u: outsider.id }, owner.token))).toBe('NOT_FOUND');
      expect(codeOf(await gql(s.url, ADD, { p, u: '00000000-0000-4000-8000-000000000000' }, owner.token))).toBe('NOT_FOUND');
      expect(codeOf(await gql(s.url, ADD, { p, u: 'nope' }, owner.token))).toBe('NOT_FOUND');
      expect(codeOf(await gql(s.url, RENAME, { p: 'nope', t: 'X' }, owner.token))).toBe('NOT_FOUND');
      expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
      // Asking for what is already so changes nothing and tells no one.
      const inboxBefore = (await inbox(s.url, owner)).totalCount;
      await ok(gql(s.url, ADD, { p, u: participant.id }, owner.token));
      expect((await ok(gql(s.url, ADD, { p, u: owner.id }, coach.token))).addProjectParticipant.owner).toEqual({ id: owner.id });
      await ok(gql(s.url, DESIGNATE, { p, u: coach.id }, owner.token));
      await ok(gql(s.url, WITHDRAW, { p, u: participant.id }, owner.token));
      // A title spelled with a combining accent is the composed one (an outside probe: "renamed to" itself).
      const title = (await ok(gql(s.url, RENAME, { p, t: 'Cafe\u0301' }, owner.token))).renameProject.title;
      expect(title).toBe('Caf\u00e9');
      const renamedOnce = (await inbox(s.url, owner)).totalCount;
      expect(renamedOnce).toBe(inboxBefore + 1);
      expect((await ok(gql(s.url, RENAME, { p, t: 'Cafe\u0301' }, owner.token))).renameProject.title).toBe('Caf\u00e9');
      expect((await inbox(s.url, owner)).totalCount).toBe(renamedOnce);
      // The owner may remove a coach.
      const after = (await ok(gql(s.url, REMOVE, { p, u: coach2.id }, owner.token))).removeProjectParticipant;
      expect(after.coaches).toEqual([{ id: coach.id }]);
    });
  });
});

describe('project actions', () => {
  it('should write each action for each of its readers, in exact words', async () => {
    const s = await createTestServer();
    const alice = await signup(s.url, { username: 'alice' });
    const bob = await signup(s.url, { username: 'bob' });
    const carol = await signup(s.url, { username: 'carol' });
    const dave = await signup(s.url, { username: 'dave' });
    const p = (await ok(gql(s.url, CREATE, { t: 'Apollo' }, alice.token))).createProject.id;
    await ok(gql(s.url, ADD, { p, u: bob.id }, alice.token));
    await ok(gql(s.url, ADD, { p, u: carol.id }, alice.token));
    await ok(gql(s.url, DESIGNATE, { p, u: bob.id }, alice.token));
    await ok(gql(s.url, WITHDRAW, { p, u: bob.id }, alice.token));
    await ok(gql(s.url, RENAME, { p, t: 'Artemis' }, alice.token));
    await ok(gql(s.url, REMOVE, { p, u: carol.id }, alice.token));
    await ok(gql(s.url, LEAVE, { p }, bob.token));
    await ok(gql(s.url, ADD, { p, u: dave.id }, alice.token));
    await ok(gql(s.url, DELETE, { p }, alice.token));

    expect(await story(s.url, alice)).toEqual([
      ['PARTICIPANT_ADDED', "The new participant '@bob' was added to the project 'Apollo'."],
      ['PARTICIPANT_ADDED', "The new participant '@carol' was added to the project 'Apollo'."],
      ['COACH_DESIGNATED', "'@bob' was designated coach in the project 'Apollo'."],
      ['COACH_WITHDRAWN', "'@bob' was withdrawn from coach and is a participant of the project 'Apollo'."],
      ['PROJECT_RENAMED', "The project 'Apollo' was renamed to 'Artemis'."],
      ['PARTICIPANT_REMOVED', "'@carol' was removed from the project 'Artemis'."],
      ['PARTICIPANT_LEFT', "'@bob' left the project 'Artemis'."],
      ['PARTICIPANT_ADDED', "The new participant '@dave' was added to the project 'Artemis'."],
      // Their own deletion, as their own departure, in the second person (an outside probe read their name).
      ['PROJECT_DELETED', "You deleted the project 'Artemis'."],
    ]);
    expect(await story(s.url, bob)).toEqual([
      ['ADDED_TO_PROJECT', "You were added to the project 'Apollo'."],
      ['PARTICIPANT_ADDED', "The new participant '@carol' was added to the project 'Apollo'."],
      ['COACH_DESIGNATED', "You were designated coach in the project 'Apollo'."],
      ['COACH_WITHDRAWN', "You were withdrawn from coach in the project 'Apollo'."],
      ['PROJECT_RENAMED', "The project 'Apollo' was renamed to 'Artemis'."],
      ['PARTICIPANT_REMOVED', "'@carol' was removed from the project 'Artemis'."],
      // The leaver's own entry, as a removed member's: their other devices learn it left their sidebar.
      ['PARTICIPANT_LEFT', "You left the project 'Artemis'."],
    ]);
    expect(await story(s.url, carol)).toEqual([
      ['ADDED_TO_PROJECT', "You were added to the project 'Apollo'."],
      ['COACH_DESIGNATED', "'@bob' was designated coach in the project 'Apollo'."],
      ['COACH_WITHDRAWN', "'@bob' was withdrawn from coach and is a participant of the project 'Apollo'."],
      ['PROJECT_RENAMED', "The project 'Apollo' was renamed to 'Artemis'."],
      ['PARTICIPANT_REMOVED', "You were removed from the project 'Artemis'."],
    ]);
    expect(await story(s.url, dave)).toEqual([
      ['ADDED_TO_PROJECT', "You were added to the project 'Artemis'."],
      ['PROJECT_DELETED', "The project 'Artemis' was removed by '@alice'."],
    ]);

    // Who did what to whom, the previous title, and no project data once it is gone.
    const nodes = (await inbox(s.url, alice)).edges.map((e: any) => e.node);
    const byKind = (k: string) => nodes.filter((n: any) => n.kind === k);
    expect(byKind('PROJECT_RENAMED')[0]).toMatchObject({ projectId: p, previousTitle: 'Apollo', actor: { id: alice.id }, target: null });
    expect(byKind('PARTICIPANT_REMOVED')[0]).toMatchObject({ actor: { id: alice.id }, target: { id: carol.id }, previousTitle: null });
    expect(byKind('PARTICIPANT_LEFT')[0]).toMatchObject({ actor: { id: bob.id } });
    expect(byKind('PROJECT_DELETED')[0]).toMatchObject({ projectId: p, actor: { id: alice.id }, project: null });
    expect(nodes.every((n: any) => n.project === null)).toBe(true);
    // Nothing of the project is left but the inbox entries.
    expect(await sql(s.env.DATABASE_URL!, 'select 1 from projects union all select 1 from project_members')).toEqual([]);
  });

  it('should keep every action in the inbox while a member is offline, paged back from the newest with edges oldest first', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url, { username: 'alice' }), await signup(s.url, { username: 'bob' })];
    const p = (await ok(gql(s.url, CREATE, { t: 'T0' }, alice.token))).createProject.id;
    const other = (await ok(gql(s.url, CREATE, { t: 'Other' }, alice.token))).createProject.id;
    await ok(gql(s.url, ADD, { p, u: bob.id }, alice.token));
    await ok(gql(s.url, ADD, { p: other, u: bob.id }, alice.token));
    // Bob has no socket open while these happen.
    for (let i = 1; i <= 4; i++) await ok(gql(s.url, RENAME, { p, t: `T${i}` }, alice.token));

    const page1 = await inbox(s.url, bob, { p, last: 2 });
    expect(page1.totalCount).toBe(5);
    expect(page1.edges.map((e: any) => e.node.message)).toEqual(["The project 'T2' was renamed to 'T3'.", "The project 'T3' was renamed to 'T4'."]);
    // startCursor is the oldest edge, as for history.
    expect(page1.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: false, startCursor: page1.edges[0].cursor, endCursor: page1.edges[1].cursor });
    const page2 = await inbox(s.url, bob, { p, last: 2, before: page1.pageInfo.startCursor });
    expect(page2.edges.map((e: any) => e.node.message)).toEqual(["The project 'T0' was renamed to 'T1'.", "The project 'T1' was renamed to 'T2'."]);
    expect(page2.pageInfo).toMatchObject({ hasPreviousPage: true, hasNextPage: true });
    const page3 = await inbox(s.url, bob, { p, last: 2, before: page2.pageInfo.startCursor });
    expect(page3.edges.map((e: any) => e.node.kind)).toEqual(['ADDED_TO_PROJECT']);
    expect(page3.pageInfo.hasPreviousPage).toBe(false);
    // Without arguments: the newest 20 entries of every project. The entries' projects are read
    // together, once per request, not once per entry.
    const list = jest.spyOn(s.services.projects, 'list');
    const all = (await ok(gql(s.url, INBOX, {}, bob.token))).projectActions;
    expect(list.mock.calls.map((c) => [...(c[2] ?? [])].sort())).toEqual([[p, other].sort()]);
    list.mockRestore();
    expect(all.edges.filter((e: any) => e.node.projectId === p).every((e: any) => e.node.project.title === 'T4')).toBe(true);
    expect(all.totalCount).toBe(6);
    expect(all.edges.at(-1).node.message).toBe("The project 'T3' was renamed to 'T4'.");
    expect(all.edges.map((e: any) => e.node.projectId)).toContain(other);
    // Oldest first throughout, by time then id.
    const times = all.edges.map((e: any) => Date.parse(e.node.createdAt));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    // Bad arguments are refused.
    for (const vars of [{ before: 'bm90LWEtY3Vyc29y' }, { last: -1 }, { last: 101 }, { p: 'nope' }]) {
      expect([vars, codeOf(await gql(s.url, INBOX, vars, bob.token))]).toEqual([vars, 'BAD_USER_INPUT']);
    }
    // Another member's entries are never in one's inbox.
    expect((await inbox(s.url, alice, { p })).edges.every((e: any) => !e.node.message.startsWith('You were added'))).toBe(true);
  });

  it('should let a reader catch up with first/after while actions commit concurrently, missing none', async () => {
    const s = await createTestServer();
    const [o1, o2, reader] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const projects: { id: string; owner: typeof o1 }[] = [];
    for (const owner of [o1, o1, o2, o2]) projects.push({ id: (await buildProject(s.url, owner, { participants: [reader] })).id, owner });
    const AFTER = 'query($after: String) { projectActions(first: 100, after: $after) { edges { node { id } } pageInfo { endCursor } } }';
    const seen = new Set<string>();
    let cursor: string | null = null;
    const poll = async () => {
      for (;;) {
        const page: any = (await ok(gql(s.url, AFTER, { after: cursor }, reader.token))).projectActions;
        for (const e of page.edges) seen.add(e.node.id);
        if (page.pageInfo.endCursor) cursor = page.pageInfo.endCursor;
        if (page.edges.length < 100) return;
      }
    };
    let writing = true;
    const polling = (async () => {
      while (writing) await poll();
    })();
    // Renames of four projects by two owners, eight at a time: each writes one entry for the reader.
    const RENAMES = 200;
    for (let i = 0; i < RENAMES; i += 8) {
      await Promise.all(
        Array.from({ length: 8 }, (_, k) => {
          const p = projects[(i + k) % projects.length];
          return ok(gql(s.url, 'mutation($p: ID!, $t: String!) { renameProject(projectId: $p, title: $t) { id } }', { p: p.id, t: `title ${i + k}` }, p.owner.token));
        }),
      );
    }
    writing = false;
    await polling;
    await poll();
    const all = await sql(s.env.DATABASE_URL!, 'select id from project_actions where recipient_id = $1', [reader.id]);
    expect(all.length).toBe(RENAMES + 4);
    expect(all.filter((r) => !seen.has(r.id))).toEqual([]);
  });

  it('should deliver to each subscriber its own entry, and nothing more to one who was removed', async () => {
    const s = await createTestServer();
    const alice = await signup(s.url, { username: 'alice' });
    const bob = await signup(s.url, { username: 'bob' });
    const carol = await signup(s.url, { username: 'carol' });
    const p = (await ok(gql(s.url, CREATE, { t: 'Apollo' }, alice.token))).createProject.id;
    await ok(gql(s.url, ADD, { p, u: bob.id }, alice.token));
    await ok(gql(s.url, ADD, { p, u: carol.id }, alice.token));
    const aliceLive = await listen(s, alice, ACTIONS_LIVE);
    const bobLive = await listen(s, bob, ACTIONS_LIVE);
    const bobOne = await listen(s, bob, ACTIONS_LIVE, { p });
    const carolLive = await listen(s, carol, ACTIONS_LIVE, { p });
    const bobMessages = await listen(s, bob, MESSAGES_LIVE);
    const bobProjectMessages = await listen(s, bob, MESSAGES_LIVE, { c: { projectId: p } });

    await ok(gql(s.url, DESIGNATE, { p, u: bob.id }, alice.token));
    const [a1, b1, c1] = [await aliceLive.nth(1), await bobLive.nth(1), await carolLive.nth(1)];
    expect(a1.projectAction).toMatchObject({ kind: 'COACH_DESIGNATED', message: "'@bob' was designated coach in the project 'Apollo'.", project: { id: p } });
    expect(b1.projectAction).toMatchObject({ kind: 'COACH_DESIGNATED', message: "You were designated coach in the project 'Apollo'.", target: { id: bob.id } });
    expect(c1.projectAction.message).toBe("'@bob' was designated coach in the project 'Apollo'.");
    // What arrives live is what the inbox holds.
    expect((await inbox(s.url, bob)).edges.at(-1).node).toEqual(b1.projectAction);

    await ok(gql(s.url, 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }', { i: { projectId: p, content: 'before' } }, alice.token));
    await bobMessages.nth(1);
    await ok(gql(s.url, REMOVE, { p, u: bob.id }, alice.token));
    expect((await bobLive.nth(2)).projectAction).toMatchObject({ kind: 'PARTICIPANT_REMOVED', message: "You were removed from the project 'Apollo'.", project: null });
    expect((await bobOne.nth(2)).projectAction.message).toBe("You were removed from the project 'Apollo'.");
    expect((await carolLive.nth(2)).projectAction.message).toBe("'@bob' was removed from the project 'Apollo'.");

    // From now on bob hears nothing of the project, on the sockets he opened before.
    await ok(gql(s.url, RENAME, { p, t: 'Artemis' }, alice.token));
    await ok(gql(s.url, 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }', { i: { projectId: p, content: 'after' } }, alice.token));
    // Each subscription runs its own entry through its own execution: Alice's may reach her after Carol's does.
    await carolLive.nth(3);
    await aliceLive.nth(3);
    expect(aliceLive.values.map((v) => v.projectAction.kind)).toEqual(['COACH_DESIGNATED', 'PARTICIPANT_REMOVED', 'PROJECT_RENAMED']);
    // Barriers for Bob, after those: a lobby message and another project he is added to. Once his unfiltered
    // subscriptions have them, anything of Apollo's would have reached all his subscriptions (one instance
    // hands each event to every subscription at once).
    await barriersFor(s, alice, bob);
    await bobMessages.nth(2);
    await bobLive.nth(3);
    expect(bobLive.values.map((v) => v.projectAction.kind)).toEqual(['COACH_DESIGNATED', 'PARTICIPANT_REMOVED', 'ADDED_TO_PROJECT']);
    expect(bobOne.values).toHaveLength(2);
    expect(bobMessages.values.map((v) => v.messageAdded.content)).toEqual(['before', 'barrier']);
    expect(bobProjectMessages.values.map((v) => v.messageAdded.content)).toEqual(['before']);
    // He can't subscribe to it again either.
    const w = wsClient(s.wsUrl, bob.token);
    await w.connected;
    const refused = subscribe<any>(w, ACTIONS_LIVE, { p });
    await refused.done;
    expect(JSON.stringify(refused.errors)).toMatch(/NOT_FOUND/);
  });

  it('should refuse to subscribe to the actions of a project named by an empty id (NOT_FOUND), as by any other that names none of the viewer\'s', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    await buildProject(s.url, alice, { participants: [bob] });
    // An empty id once subscribed to every project of the viewer's; the inbox refuses it as any id that is no UUID.
    for (const bad of ['', 'junk']) {
      const w = wsClient(s.wsUrl, bob.token);
      await w.connected;
      const refused = subscribe<any>(w, ACTIONS_LIVE, { p: bad });
      await refused.done;
      expect(JSON.stringify(refused.errors)).toMatch(/NOT_FOUND/);
      expect(codeOf(await gql(s.url, INBOX, { p: bad }, bob.token))).toBe('BAD_USER_INPUT');
    }
  });

  it('should hand ownership to the coach who joined first, whoever was made coach first', async () => {
    const s = await createTestServer();
    const [owner, first, second] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const p = (await ok(gql(s.url, CREATE, { t: 'Heirs' }, owner.token))).createProject.id;
    for (const u of [first, second]) await ok(gql(s.url, ADD, { p, u: u.id }, owner.token));
    for (const u of [second, first]) await ok(gql(s.url, DESIGNATE, { p, u: u.id }, owner.token));
    await ok(gql(s.url, LEAVE, { p }, owner.token));
    expect((await ok(gql(s.url, PROJECT, { id: p }, second.token))).project.owner.id).toBe(first.id);
  });

  it('should hand ownership to a coach, else the longest-standing participant, and delete the project with its last member', async () => {
    const s = await createTestServer();
    const alice = await signup(s.url, { username: 'alice' });
    const bob = await signup(s.url, { username: 'bob' });
    const carol = await signup(s.url, { username: 'carol' });
    const dave = await signup(s.url, { username: 'dave' });
    const p = (await ok(gql(s.url, CREATE, { t: 'Relay' }, alice.token))).createProject.id;
    for (const u of [bob, carol, dave]) await ok(gql(s.url, ADD, { p, u: u.id }, alice.token));
    await ok(gql(s.url, DESIGNATE, { p, u: dave.id }, alice.token));
    await ok(gql(s.url, 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }', { i: { projectId: p, content: 'hello' } }, bob.token));

    // The coach inherits, although bob and carol joined before dave.
    await ok(gql(s.url, LEAVE, { p }, alice.token));
    let now = (await ok(gql(s.url, PROJECT, { id: p }, bob.token))).project;
    expect(now).toMatchObject({ owner: { id: dave.id }, coaches: [], participants: ids([bob, carol]).map((id) => ({ id })) });
    expect((await ok(gql(s.url, PROJECT, { id: p }, dave.token))).project.viewerRole).toBe('OWNER');
    expect((await ok(gql(s.url, PROJECT, { id: p }, alice.token))).project).toBeNull();
    // No coach left: the longest-standing participant inherits.
    await ok(gql(s.url, LEAVE, { p }, dave.token));
    now = (await ok(gql(s.url, PROJECT, { id: p }, carol.token))).project;
    expect(now).toMatchObject({ owner: { id: bob.id }, participants: [{ id: carol.id }] });
    // The new owner has the owner's powers.
    expect((await ok(gql(s.url, RENAME, { p, t: 'Relay 2' }, bob.token))).renameProject.title).toBe('Relay 2');
    await ok(gql(s.url, LEAVE, { p }, bob.token));
    expect((await ok(gql(s.url, PROJECT, { id: p }, carol.token))).project.owner.id).toBe(carol.id);
    expect(await story(s.url, carol, p)).toEqual([
      ['ADDED_TO_PROJECT', "You were added to the project 'Relay'."],
      ['PARTICIPANT_ADDED', "The new participant '@dave' was added to the project 'Relay'."],
      ['COACH_DESIGNATED', "'@dave' was designated coach in the project 'Relay'."],
      // An owner's departure names who owns it now; the heir reads that it is them.
      ['PARTICIPANT_LEFT', "'@alice' left the project 'Relay'; '@dave' is its owner now."],
      ['PARTICIPANT_LEFT', "'@dave' left the project 'Relay'; '@bob' is its owner now."],
      ['PROJECT_RENAMED', "The project 'Relay' was renamed to 'Relay 2'."],
      ['PARTICIPANT_LEFT', "'@bob' left the project 'Relay 2'; you are its owner now."],
    ]);
    expect(await story(s.url, dave, p)).toContainEqual(['PARTICIPANT_LEFT', "'@alice' left the project 'Relay'; you are its owner now."]);
    // Each leaver's own last entry names who owns it after them.
    expect((await story(s.url, alice, p)).at(-1)).toEqual(['PARTICIPANT_LEFT', "You left the project 'Relay'; '@dave' is its owner now."]);
    expect((await story(s.url, bob, p)).at(-1)).toEqual(['PARTICIPANT_LEFT', "You left the project 'Relay 2'; '@carol' is its owner now."]);
    // The last one out: the project and its conversation are gone; the leaver is told, on every device.
    const carolLive = await listen(s, carol, ACTIONS_LIVE);
    await ok(gql(s.url, LEAVE, { p }, carol.token));
    expect((await carolLive.nth(1)).projectAction).toMatchObject({
      kind: 'PARTICIPANT_LEFT',
      message: "You left the project 'Relay 2'; no one else was in it, so it was deleted.",
      projectId: p,
      project: null,
      actor: { id: carol.id },
      target: { id: carol.id },
    });
    expect((await story(s.url, carol, p)).at(-1)).toEqual(['PARTICIPANT_LEFT', "You left the project 'Relay 2'; no one else was in it, so it was deleted."]);
    expect((await ok(gql(s.url, PROJECTS, {}, carol.token))).projects).toEqual([]);
    expect(await sql(s.env.DATABASE_URL!, 'select id from projects union all select id from messages where project_id = $1', [p])).toEqual([]);
    expect(codeOf(await gql(s.url, LEAVE, { p }, carol.token))).toBe('NOT_FOUND');
  });

  it('should take a deleted account out of its projects as if it had left', async () => {
    const s = await createTestServer();
    const alice = await signup(s.url, { username: 'alice' });
    const bob = await signup(s.url, { username: 'bob' });
    const p = (await ok(gql(s.url, CREATE, { t: 'Legacy' }, alice.token))).createProject.id;
    const solo = (await ok(gql(s.url, CREATE, { t: 'Solo' }, alice.token))).createProject.id;
    await ok(gql(s.url, ADD, { p, u: bob.id }, alice.token));
    const bobLive = await listen(s, bob, ACTIONS_LIVE);
    await ok(gql(s.url, 'mutation($pw: String!) { deleteAccount(password: $pw) }', { pw: alice.password }, alice.token));
    // Told with the name they knew, not the tombstone's, and that the account is gone: its name is
    // free at once, and another account may hold it when this is read (an outside probe).
    expect((await bobLive.nth(1)).projectAction).toMatchObject({ kind: 'PARTICIPANT_LEFT', message: "'@alice' deleted their account and left the project 'Legacy'; you are its owner now." });
    const now = (await ok(gql(s.url, PROJECT, { id: p }, bob.token))).project;
    expect(now).toMatchObject({ owner: { id: bob.id }, participants: [] });
    expect(await sql(s.env.DATABASE_URL!, 'select id from projects where id = $1', [solo])).toEqual([]);
    expect(await sql(s.env.DATABASE_URL!, 'select id from project_actions where recipient_id = $1', [alice.id])).toEqual([]);
  });
});

describe("an account's deletion", () => {
  it('should leave every project in as many statements whatever their number, each member told, each inbox in order', async () => {
    // Project by project, each departure took ~9 statements and held the project's sends until
    // the deletion committed: a coach in 100 projects held them 4.4 s.
    // As groups.test's count: presence for everyone, no lastSeenAt flush on its timer meanwhile.
    const s = await createTestServer({ PRESENCE_VISIBILITY: 'everyone', PRESENCE_PERSIST_INTERVAL: '1h' });
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const call = (q: string, v: Record<string, unknown>, u: TestUser) => ok(gql(s.url, q, v, u.token));
    /** A user in `n` projects with `a` and `b`: every other one theirs (b its coach in the first), and one of theirs alone. */
    const inProjects = async (n: number) => {
      const x = await signup(s.url);
      const mine: string[] = [];
      const others: string[] = [];
      const titles = new Map<string, string>();
      for (let i = 0; i < n; i++) {
        const owner = i % 2 ? a : x;
        const p = (await call(CREATE, { t: `P${i}` }, owner)).createProject.id;
        titles.set(p, `P${i}`);
        for (const u of [a, b, x]) if (u !== owner) await call(ADD, { p, u: u.id }, owner);
        if (owner === x && !mine.length) await call(DESIGNATE, { p, u: b.id }, x);
        (owner === x ? mine : others).push(p);
      }
      const alone = (await call(CREATE, { t: 'Alone' }, x)).createProject.id;
      return { x, mine, others, alone, titles };
    };
    const execute = jest.spyOn(s.database.orm.em.getConnection(), 'execute');
    const statementsOf = async (x: TestUser) => {
      execute.mockClear();
      await call('mutation($p: String!) { deleteAccount(password: $p) }', { p: x.password }, x);
      return execute.mock.calls.length;
    };
    const [first, few, many] = [await inProjects(2), await inProjects(2), await inProjects(24)];
    await statementsOf(first.x);
    expect(await statementsOf(many.x)).toBe(await statementsOf(few.x));
    execute.mockRestore();
    const theirs = [...many.mine, ...many.others];
    for (const p of theirs) {
      const project = (await call(PROJECT, { id: p }, a)).project;
      // The first one's coach takes it over; a (a participant before b) the others.
      const heir = p === many.mine[0] ? b.id : a.id;
      expect(project.owner.id).toBe(heir);
      // Owner by role too: no longer a coach or a participant.
      const others = [...project.coaches, ...project.participants].map((u: { id: string }) => u.id);
      expect(others).not.toContain(many.x.id);
      if (many.mine.includes(p)) expect(others).not.toContain(heir);
    }
    expect((await call(PROJECT, { id: many.alone }, a)).project).toBeNull();
    // Each one who stays has their entry of each departure, a millisecond apart, in the projects' order.
    for (const u of [a, b]) {
      const inbox = (await call('{ projectActions(last: 100) { edges { node { kind message projectId createdAt } } } }', {}, u)).projectActions.edges.map((e: any) => e.node);
      const left = inbox.filter((e: any) => e.kind === 'PARTICIPANT_LEFT' && theirs.includes(e.projectId));
      expect(left.map((e: any) => e.projectId)).toEqual([...theirs].sort());
      const heirOf = (p: string) => (!many.mine.includes(p) ? null : p === many.mine[0] ? b : a);
      const told = (p: string, heir = heirOf(p)) =>
        `'@${many.x.username}' deleted their account and left the project '${many.titles.get(p)}'${!heir ? '' : heir === u ? '; you are its owner now' : `; '@${heir.username}' is its owner now`}.`;
      expect(left.map((e: any) => e.message)).toEqual([...theirs].sort().map((p) => told(p)));
      const times = left.map((e: any) => Date.parse(e.createdAt));
      for (let i = 1; i < times.length; i++) expect(times[i]).toBeGreaterThan(times[i - 1]);
    }
  }, 90_000);
});

describe('project chat', () => {
  it('should reach every member, keep private messages between their two users, and carry attachments', async () => {
    const s = await createTestServer();
    const [alice, bob, carol, outsider] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const p = (await ok(gql(s.url, CREATE, { t: 'Chat' }, alice.token))).createProject.id;
    for (const u of [bob, carol]) await ok(gql(s.url, ADD, { p, u: u.id }, alice.token));
    const bobAll = await listen(s, bob, MESSAGES_LIVE);
    const carolAll = await listen(s, carol, MESSAGES_LIVE);
    const carolProject = await listen(s, carol, MESSAGES_LIVE, { c: { projectId: p } });
    const bobThread = await listen(s, bob, MESSAGES_LIVE, { c: { projectId: p, userId: alice.id } });

    const open = (await ok(gql(s.url, SEND, { input: { projectId: p, content: 'to all' } }, alice.token))).sendMessage;
    expect(open).toMatchObject({ project: { id: p, title: 'Chat' }, recipient: null, group: null, sender: { id: alice.id } });
    const secret = (await ok(gql(s.url, SEND, { input: { projectId: p, toUserId: bob.id, content: 'just bob' } }, alice.token))).sendMessage;
    expect(secret).toMatchObject({ project: { id: p }, recipient: { id: bob.id } });
    const reply = (await ok(gql(s.url, SEND, { input: { projectId: p, toUserId: alice.id, content: 'just alice' } }, bob.token))).sendMessage;
    const file = (
      await ok(gql(s.url, SEND, { input: { projectId: p, attachment: { fileName: 'notes.txt', base64: Buffer.from('plan\n').toString('base64') } } }, carol.token))
    ).sendMessage;
    expect(file).toMatchObject({ content: null, project: { id: p }, attachment: { fileName: 'notes.txt', size: 5 } });

    // A lobby message as a barrier: once Bob's and Carol's unfiltered subscriptions have it, anything sent
    // before would have reached all their subscriptions (one instance hands each event to every subscription at once).
    const barrier = await sendMessage(s.url, alice.token, { groupId: await lobbyOf(s.url, alice.token), content: 'barrier' });
    await bobAll.nth(5);
    await carolAll.nth(3);
    expect(bobAll.values.map((v) => v.messageAdded.content)).toEqual(['to all', 'just bob', 'just alice', null, 'barrier']);
    expect(bobThread.values.map((v) => v.messageAdded.content)).toEqual(['just bob', 'just alice']);
    // The third member sees neither private message, live or in history.
    expect(carolAll.values.map((v) => v.messageAdded.id)).toEqual([open.id, file.id, barrier.id]);
    expect(carolProject.values.map((v) => v.messageAdded.id)).toEqual([open.id, file.id]);
    const carolHistory = (await request(s.url, HistoryDocument, { conversation: { projectId: p }, last: 50 }, carol.token)).history;
    expect(carolHistory.edges.map((e: any) => e.node.id)).toEqual([open.id, file.id]);
    expect(carolHistory.totalCount).toBe(2);
    const bobHistory = (await request(s.url, HistoryDocument, { conversation: { projectId: p }, last: 50 }, bob.token)).history;
    expect(bobHistory.edges.map((e: any) => e.node.id)).toEqual([open.id, secret.id, reply.id, file.id]);
    const thread = (await request(s.url, HistoryDocument, { conversation: { projectId: p, userId: bob.id }, last: 50 }, alice.token)).history;
    expect(thread.edges.map((e: any) => e.node.id)).toEqual([secret.id, reply.id]);
    expect((await request(s.url, HistoryDocument, { conversation: { projectId: p, userId: bob.id }, last: 50 }, carol.token)).history.edges.map((e: any) => e.node.id)).toEqual([]);

    // Outsiders can neither write nor read; private messages go to members only.
    const before = await snapshot(s.env.DATABASE_URL!);
    expect(codeOf(await gql(s.url, SEND, { input: { projectId: p, content: 'hi' } }, outsider.token))).toBe('NOT_FOUND');
    expect(codeOf(await attempt(s.url, HistoryDocument, { conversation: { projectId: p }, last: 50 }, outsider.token))).toBe('NOT_FOUND');
    expect(codeOf(await gql(s.url, SEND, { input: { projectId: p, toUserId: outsider.id, content: 'hi' } }, alice.token))).toBe('NOT_FOUND');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    // Message.project is null outside projects.
    const lobby = await lobbyOf(s.url, alice.token);
    expect((await ok(gql(s.url, SEND, { input: { groupId: lobby, content: 'hey' } }, alice.token))).sendMessage.project).toBeNull();
  });
});

describeRedis('projects across instances', () => {
  it('should notify and cut off members whose sockets live on another instance', async () => {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const alice = await signup(a.url, { username: 'alice' });
    const bob = await signup(a.url, { username: 'bob' });
    const p = (await ok(gql(a.url, CREATE, { t: 'Apollo' }, alice.token))).createProject.id;
    // Bob's sockets are on B before he is even a member: B's index must learn of it from A.
    const bobActions = await listen(b, bob, ACTIONS_LIVE);
    const bobMessages = await listen(b, bob, MESSAGES_LIVE);
    await ok(gql(a.url, ADD, { p, u: bob.id }, alice.token));
    expect((await bobActions.nth(1)).projectAction.message).toBe("You were added to the project 'Apollo'.");
    await ok(gql(a.url, SEND, { input: { projectId: p, content: 'welcome' } }, alice.token));
    expect((await bobMessages.nth(1)).messageAdded.content).toBe('welcome');
    await ok(gql(a.url, REMOVE, { p, u: bob.id }, alice.token));
    expect((await bobActions.nth(2)).projectAction.message).toBe("You were removed from the project 'Apollo'.");
    await ok(gql(a.url, SEND, { input: { projectId: p, content: 'gone' } }, alice.token));
    await ok(gql(a.url, RENAME, { p, t: 'Artemis' }, alice.token));
    // Barriers after those, from A: once they reach Bob on B, anything of Apollo's sent before would have.
    await barriersFor(a, alice, bob);
    await bobActions.nth(3);
    await bobMessages.nth(2);
    expect(bobActions.values.map((v) => v.projectAction.kind)).toEqual(['ADDED_TO_PROJECT', 'PARTICIPANT_REMOVED', 'ADDED_TO_PROJECT']);
    expect(bobMessages.values.map((v) => v.messageAdded.content)).toEqual(['welcome', 'barrier']);
  });

  /**
   * Bob's live changes of a project on instance B while A's publish of its rename is held (a slow
   * instance) and `next`, a later change made through B, goes out first. B's line of the project
   * starts with the first change it hears (nothing says which came before one): an add.
   */
  async function renameOvertakenBy(next: (b: TestServer, p: string, alice: TestUser, bob: TestUser) => Promise<unknown>) {
    const a = await createTestServer();
    const b = await createTestServer({}, { clean: false });
    const [alice, bob, carol] = [await signup(a.url), await signup(a.url), await signup(a.url)];
    const p = (await ok(gql(a.url, CREATE, { t: 'T1' }, alice.token))).createProject.id;
    await ok(gql(a.url, ADD, { p, u: bob.id }, alice.token));
    const live = await listen(b, bob, ACTIONS_LIVE, { p });
    await ok(gql(a.url, ADD, { p, u: carol.id }, alice.token));
    await live.nth(1);
    const hold = holdNextPublishOf(a.services.pubsub, Topic.ProjectAction);
    const renamed = gql(a.url, RENAME, { p, t: 'T2' }, alice.token);
    await eventually(() => hold.held());
    await next(b, p, alice, bob);
    await sleep(150);
    hold.release();
    await ok(renamed);
    await live.nth(3);
    hold.restore();
    return { a, p, bob, kinds: live.values.map((v) => v.projectAction.kind) };
  }

  it("should deliver a project's actions live in commit order when a later change's publish overtakes an earlier one's", async () => {
    const { a, p, bob, kinds } = await renameOvertakenBy((b, p, alice, bob) => ok(gql(b.url, DESIGNATE, { p, u: bob.id }, alice.token)));
    expect(kinds).toEqual(['PARTICIPANT_ADDED', 'PROJECT_RENAMED', 'COACH_DESIGNATED']);
    // The inbox has them in the same order.
    expect((await inbox(a.url, bob, { p })).edges.map((e: any) => e.node.kind).slice(-2)).toEqual(['PROJECT_RENAMED', 'COACH_DESIGNATED']);
  });

  it("should deliver a project's deletion live after the change before it when its publish overtakes that change's", async () => {
    // The deletion takes its place before its row goes: the last, after the held rename.
    const { kinds } = await renameOvertakenBy((b, p, alice) => ok(gql(b.url, DELETE, { p }, alice.token)));
    expect(kinds).toEqual(['PARTICIPANT_ADDED', 'PROJECT_RENAMED', 'PROJECT_DELETED']);
  });
});

describe('project sends crossing a removal', () => {
  /**
   * `send` while a removal of `removed` from the project is under way, not yet committed (as
   * removeProjectParticipant deletes the row): the send passed its check before, and waits for the
   * removal in its statement. Its answer once the removal committed.
   */
  const sendDuringRemoval = (s: TestServer, projectId: string, removed: string, send: () => Promise<any>): Promise<any> =>
    whileHolding(s.env.DATABASE_URL!, [['delete from project_members where project_id = $1 and user_id = $2', [projectId, removed]]], send);

  it("should store no message of a participant removed while it was on its way, nor a private one to a removed recipient, nor a reply", async () => {
    const s = await createTestServer();
    const [owner, una, vic, walt] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const p = await buildProject(s.url, owner, { participants: [una, vic, walt] });
    const root = (await sendMessage(s.url, owner.token, { projectId: p.id, content: 'root' })).id;
    const SEND = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }';
    const send = (u: TestUser, i: Record<string, unknown>) => () => gql(s.url, SEND, { i: { projectId: p.id, ...i } }, u.token);
    // What a send by someone not (or no longer) in the project is told, asked plainly.
    const outsider = await signup(s.url);
    const refused = codeOf(await gql(s.url, SEND, { i: { projectId: p.id, content: 'x' } }, outsider.token));
    expect(['NOT_FOUND', 'FORBIDDEN']).toContain(refused);

    expect(codeOf(await sendDuringRemoval(s, p.id, una.id, send(una, { content: 'as I am removed' })))).toBe(refused);
    expect(codeOf(await sendDuringRemoval(s, p.id, vic.id, send(vic, { content: 'a reply as I am removed', parentId: root })))).toBe(refused);
    // A private message to a participant removed meanwhile: refused as one to a non-participant is.
    const toOutsider = codeOf(await gql(s.url, SEND, { i: { projectId: p.id, toUserId: outsider.id, content: 'x' } }, owner.token));
    expect(toOutsider).not.toBeUndefined();
    expect(codeOf(await sendDuringRemoval(s, p.id, walt.id, send(owner, { toUserId: walt.id, content: 'just for you' })))).toBe(toOutsider);
    expect((await sql(s.env.DATABASE_URL!, 'select content from messages where project_id = $1 order by created_at', [p.id])).map((m) => m.content)).toEqual(['root']);
  });
});

describeRedis('project limits', () => {
  it('should refuse projects and adds past RATE_LIMIT_CREATE_PROJECT and RATE_LIMIT_PROJECT_ADD with RATE_LIMITED, writing nothing; a refusal or a member already in costs nothing', async () => {
    const s = await createTestServer({ RATE_LIMIT_CREATE_PROJECT: '2/1h', RATE_LIMIT_PROJECT_ADD: '2/1h' });
    const [owner, x, y, z] = await Promise.all([signup(s.url), signup(s.url), signup(s.url), signup(s.url)]);
    for (let i = 0; i < 3; i++) expect(codeOf(await gql(s.url, CREATE, { t: ' ' }, owner.token))).toBe('BAD_USER_INPUT');
    const p = (await ok(gql(s.url, CREATE, { t: 'One' }, owner.token))).createProject.id;
    await ok(gql(s.url, CREATE, { t: 'Two' }, owner.token));
    let before = await snapshot(s.env.DATABASE_URL!);
    const refused = await gql(s.url, CREATE, { t: 'Three' }, owner.token);
    expect(codeOf(refused)).toBe('RATE_LIMITED');
    expect(refused.errors![0].extensions!.retryAfter).toBeGreaterThan(0);
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    // Another user has their own.
    await ok(gql(s.url, CREATE, { t: 'Theirs' }, x.token));

    for (let i = 0; i < 3; i++) expect(codeOf(await gql(s.url, ADD, { p, u: owner.id }, x.token))).toBe('FORBIDDEN');
    for (let i = 0; i < 3; i++) expect(codeOf(await gql(s.url, ADD, { p, u: p }, owner.token))).toBe('NOT_FOUND');
    for (const u of [x, x, x, y]) await ok(gql(s.url, ADD, { p, u: u.id }, owner.token));
    const theirs = (await ok(gql(s.url, CREATE, { t: 'Not mine' }, y.token))).createProject.id;
    before = await snapshot(s.env.DATABASE_URL!);
    expect(codeOf(await gql(s.url, ADD, { p, u: z.id }, owner.token))).toBe('RATE_LIMITED');
    // Past it, RATE_LIMITED answers before the add looks at what it asks: it tells no one whether a
    // user or a project exists, nor who is in (an outside probe had NOT_FOUND, FORBIDDEN and OK here).
    for (const asked of [{ p, u: p }, { p: z.id, u: z.id }, { p: theirs, u: z.id }, { p, u: x.id }]) expect(codeOf(await gql(s.url, ADD, asked, owner.token))).toBe('RATE_LIMITED');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    expect((await ok(gql(s.url, PROJECT, { id: p }, owner.token))).project.participants.map((u: { id: string }) => u.id).sort()).toEqual([x.id, y.id].sort());
  });
});
