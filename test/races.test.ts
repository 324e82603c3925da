import pg from 'pg';
import { codeOf, eventually, gql, listen, ok, sleep, type GqlResult } from './helpers/graphql';
import { createTestServer, itRedis, type TestServer } from './helpers/server';
import { signup, type TestUser } from './helpers/factories';
import { sql, waitedOnBy } from './helpers/db';
import { holdNextMessagePublish } from './helpers/publish';

/**
 * Two requests at once, as two clients (or two tabs) send them: whichever runs first, what they
 * leave is a state the rules allow. Each race runs several times: unserialized, each of them came
 * out wrong in most runs (an outside probe's finding, 4-5 runs of 5).
 */
const TRIALS = 8;

const M = {
  create: 'mutation($n: String!, $p: Boolean) { createGroup(name: $n, isPrivate: $p) { id } }',
  join: 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }',
  ban: 'mutation($g: ID!, $u: ID!) { banFromGroup(groupId: $g, userId: $u) { id } }',
  invite: 'mutation($g: ID!, $u: ID!) { inviteToGroup(groupId: $g, userId: $u) }',
  acceptInvite: 'mutation($g: ID!) { acceptGroupInvite(groupId: $g) { id } }',
  group: 'query($g: ID!) { group(id: $g) { bannedUsers { id } members(first: 50) { edges { node { id } } } } }',
  send: 'mutation($g: ID!) { sendMessage(input: { groupId: $g, content: "still here?" }) { id } }',
  request: 'mutation($u: ID!) { sendFriendRequest(userId: $u) { id } }',
  accept: 'mutation($r: ID!) { acceptFriendRequest(requestId: $r) { id status } }',
  decline: 'mutation($r: ID!) { declineFriendRequest(requestId: $r) { id status } }',
  unfriend: 'mutation($u: ID!) { removeFriend(userId: $u) }',
  block: 'mutation($u: ID!) { blockUser(userId: $u) }',
  unblock: 'mutation($u: ID!) { unblockUser(userId: $u) }',
  friends: '{ friends { id } blockedUsers { id } }',
  dm: 'mutation($u: ID!) { sendMessage(input: { toUserId: $u, content: "hi" }) { id } }',
  deleteGroup: 'mutation($g: ID!) { deleteGroup(groupId: $g) }',
  leave: 'mutation($g: ID!) { leaveGroup(groupId: $g) }',
  add: 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }',
  login: 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }',
  deleteAccount: 'mutation($p: String!) { deleteAccount(password: $p) }',
  me: '{ me { id } }',
  post: 'mutation($g: ID!, $c: String!) { sendMessage(input: { groupId: $g, content: $c }) { id } }',
  edit: 'mutation($m: ID!, $c: String!) { editMessage(messageId: $m, content: $c) { id content mentions { id } } }',
  deleteMessage: 'mutation($m: ID!) { deleteMessage(messageId: $m) }',
  history: 'query($g: ID!) { history(conversation: { groupId: $g }, last: 1) { edges { node { id content deletedAt mentions { id } } } } }',
  badge: 'query($g: ID!) { conversation(conversation: { groupId: $g }) { unreadMentionCount } }',
  setRole: 'mutation($g: ID!, $u: ID!, $r: GroupRole!) { setGroupRole(groupId: $g, userId: $u, role: $r) { id } }',
  remove: 'mutation($g: ID!, $u: ID!) { removeGroupMember(groupId: $g, userId: $u) { id } }',
  unban: 'mutation($g: ID!, $u: ID!) { unbanFromGroup(groupId: $g, userId: $u) { id } }',
  react: 'mutation($m: ID!) { addReaction(messageId: $m, emoji: "👍") { id } }',
  pin: 'mutation($m: ID!) { pinMessage(messageId: $m) { id } }',
  unpin: 'mutation($m: ID!) { unpinMessage(messageId: $m) { id } }',
  message: 'query($g: ID!) { history(conversation: { groupId: $g }, last: 1) { edges { node { id content deletedAt pinnedAt reactions { emoji count } } } } }',
};

const run = (s: TestServer, q: string, v: Record<string, unknown>, u: TestUser): Promise<GqlResult> => gql(s.url, q, v, u.token);
const ids = (list: { id: string }[]) => list.map((x) => x.id);

describe('races', () => {
  it('should leave a user banned and out of the group when a ban and their join (or their accepted invitation) cross', async () => {
    const s = await createTestServer({ RATE_LIMIT_CREATE_GROUP: '1000/1h', RATE_LIMIT_GROUP_MEMBERSHIP: '1000/1h' });
    const [owner, k] = [await signup(s.url), await signup(s.url)];
    for (let i = 0; i < TRIALS; i++) {
      const invited = i % 2 === 1;
      const g = (await ok(run(s, M.create, { n: `crossing ${i}`, p: invited }, owner))).createGroup.id;
      if (invited) await ok(run(s, M.invite, { g, u: k.id }, owner));
      const [ban, entry] = await Promise.all([run(s, M.ban, { g, u: k.id }, owner), run(s, invited ? M.acceptInvite : M.join, { g }, k)]);
      // The ban always goes through; the join or the acceptance either came first or is refused.
      await ok(Promise.resolve(ban));
      if (entry.errors) expect(codeOf(entry)).toBe(invited ? 'NOT_FOUND' : 'FORBIDDEN');
      const group = (await ok(run(s, M.group, { g }, owner))).group;
      expect(ids(group.bannedUsers)).toEqual([k.id]);
      expect(group.members.edges.map((e: { node: { id: string } }) => e.node.id)).toEqual([owner.id]);
      expect(codeOf(await run(s, M.send, { g }, k))).toMatch(/^(FORBIDDEN|NOT_FOUND)$/);
    }
  });

  it("should tell a member who got in as their group was deleted that it is gone, and let an owner's leave and delete not both go through", async () => {
    const s = await createTestServer({ RATE_LIMIT_CREATE_GROUP: '1000/1h', RATE_LIMIT_GROUP_MEMBERSHIP: '1000/1h' });
    const [owner, x, y] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const events = await listen(s, x, 'subscription { groupEvent { kind groupId } }');
    let seen = 0;
    for (let i = 0; i < TRIALS; i++) {
      const g = (await ok(run(s, M.create, { n: `going ${i}`, p: false }, owner))).createGroup.id;
      seen += 1; // CREATED of a public group reaches everyone
      const [del, entry] = await Promise.all([run(s, M.deleteGroup, { g }, owner), run(s, i % 2 ? M.add : M.join, i % 2 ? { g, u: x.id } : { g }, i % 2 ? owner : x)]);
      await ok(Promise.resolve(del));
      if (!entry.errors) {
        // In before the deletion: told of the join, then of the deletion.
        seen += 2;
        await events.nth(seen);
        expect(events.values.slice(-2).map((e: any) => [e.groupEvent.kind, e.groupEvent.groupId])).toEqual([
          ['MEMBER_JOINED', g],
          ['DELETED', g],
        ]);
      } else expect(codeOf(entry)).toBe('NOT_FOUND');
    }
    // The owner's leave and delete at once: the leave hands the (private) group over, and then it is not theirs to see, let alone delete; or the delete goes first, and there is nothing to leave.
    for (let i = 0; i < TRIALS; i++) {
      const g = (await ok(run(s, M.create, { n: `left ${i}`, p: true }, owner))).createGroup.id;
      await ok(run(s, M.add, { g, u: y.id }, owner));
      const answers = await Promise.all([run(s, M.deleteGroup, { g }, owner), run(s, M.leave, { g }, owner)]);
      expect(answers.filter((a) => !a.errors)).toHaveLength(1);
      expect(answers.map((a) => (a.errors ? codeOf(a) : 'ok')).sort()).toEqual(['NOT_FOUND', 'ok']);
    }
  });

  /**
   * `u`'s account deletion while another transaction holds what `hold` locks: once the deletion
   * waits on it, what `look` finds in a transaction of its own (rolled back); then the hold ends,
   * and the deletion must go through.
   */
  async function whileDeletionWaits<T>(s: TestServer, u: TestUser, hold: (c: pg.Client) => Promise<unknown>, look: (c: pg.Client) => Promise<T>): Promise<T> {
    const holder = new pg.Client({ connectionString: s.env.DATABASE_URL });
    const probe = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await Promise.all([holder.connect(), probe.connect()]);
    try {
      await holder.query('begin');
      await hold(holder);
      const deleted = run(s, M.deleteAccount, { p: u.password }, u);
      await waitedOnBy(holder);
      await probe.query('begin');
      const seen = await look(probe);
      await probe.query('rollback');
      await holder.query('commit');
      expect((await ok(deleted)).deleteAccount).toBe(true);
      return seen;
    } finally {
      await Promise.all([holder.end(), probe.end()]);
    }
  }

  it("should take an account deletion's group locks in id order, so that deletions sharing groups wait on each other rather than deadlock", async () => {
    const s = await createTestServer({ RATE_LIMIT_CREATE_GROUP: '1000/1h', RATE_LIMIT_GROUP_MEMBERSHIP: '1000/1h' });
    const [owner, u] = [await signup(s.url), await signup(s.url)];
    const made: string[] = [];
    for (let i = 0; i < 3; i++) made.push((await ok(run(s, M.create, { n: `Order ${i}`, p: false }, owner))).createGroup.id);
    // Joined highest id first: their membership rows lie in the opposite order to their ids.
    const groups = [...made].sort();
    for (const g of [...groups].reverse()) await ok(run(s, M.join, { g }, u));
    // Waiting on the lowest of the three, the deletion holds none of the higher ones (out of
    // order, it held both, and a deletion locking them the other way waited on it while it waited).
    const higher = await whileDeletionWaits(
      s,
      u,
      (holder) => holder.query('select id from groups where id = $1 for update', [groups[0]]),
      (probe) => probe.query('select id from groups where id = any($1::uuid[]) for update nowait', [groups.slice(1)]),
    );
    expect(higher).toMatchObject({ rowCount: 2 });
    expect(await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from group_members where user_id = $1', [u.id])).toEqual([{ n: 0 }]);
  });

  it("should take a member's sidebar rows in an account's deletion only under their group's or project's lock, as a removal takes them", async () => {
    // A removal (or a group's deletion) locks the group's row, then deletes the member's sidebar
    // row; the deletion dropped all of the user's rows first, then waited on the group: deadlocks
    // (an outside probe: 4 of 4 runs with a group deleted while its member's deletion ran).
    const s = await createTestServer();
    const owner = await signup(s.url);
    for (const held of ['projects', 'groups'] as const) {
      const u = await signup(s.url);
      const g = (await ok(run(s, M.create, { n: 'Held', p: false }, owner))).createGroup.id;
      await ok(run(s, M.join, { g }, u));
      const p = (await ok(run(s, 'mutation { createProject(title: "Held too") { id } }', {}, owner))).createProject.id;
      await ok(run(s, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p, u: u.id }, owner));
      // The user's rows of the two that the deletion has not taken (skipped if it holds them).
      const { rows } = await whileDeletionWaits(
        s,
        u,
        (holder) => holder.query(`select id from ${held} where id = $1 for update`, [held === 'projects' ? p : g]),
        (probe) =>
          probe.query<{ conversation_key: string }>(
            'select conversation_key from conversation_members where user_id = $1 and conversation_key = any($2::text[]) order by conversation_key for update skip locked',
            [u.id, [`g:${g}`, `p:${p}`]],
          ),
      );
      // Waiting on the project (projects go first), it holds neither; on the group, not the group's.
      expect(rows.map((r) => r.conversation_key)).toEqual(held === 'projects' ? [`g:${g}`, `p:${p}`] : [`g:${g}`]);
      expect(await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from conversation_members where user_id = $1', [u.id])).toEqual([{ n: 0 }]);
    }
  });

  it("should take an account's sidebar rows of its groups in key order as it leaves them, as a batched send takes its members'", async () => {
    // In the order of the user's sidebar index, they crossed a batched send's update of its
    // members' sort keys (key order) when accounts sharing groups were deleted at once.
    const s = await createTestServer();
    const owner = await signup(s.url);
    // Both ways round: the newer row the higher key, then the lower.
    for (const newerFirst of [true, false]) {
      const u = await signup(s.url);
      const ids: string[] = [];
      for (const n of ['One', 'Two']) {
        const g = (await ok(run(s, M.create, { n, p: false }, owner))).createGroup.id;
        await ok(run(s, M.join, { g }, u));
        ids.push(g);
      }
      const [low, high] = ids.map((g) => `g:${g}`).sort();
      await sql(s.env.DATABASE_URL!, "update conversation_members set sort_at = now() - case when conversation_key = $2 then interval '1 hour' else interval '2 hours' end where user_id = $1", [u.id, newerFirst ? high : low]);
      // Waiting on the higher key's row, it holds the lower one's already.
      const { rows } = await whileDeletionWaits(
        s,
        u,
        (holder) => holder.query('select 1 from conversation_members where conversation_key = $1 and user_id = $2 for update', [high, u.id]),
        (probe) => probe.query('select 1 from conversation_members where conversation_key = $1 and user_id = $2 for update skip locked', [low, u.id]),
      );
      expect(rows).toHaveLength(0);
    }
  });

  /** While `act` waits on the lobby's row (held FOR SHARE: a reference to it may be checked, its row not updated), the tables it has written in its transaction. */
  async function writtenBeforeTheLobby(s: TestServer, act: () => Promise<unknown>): Promise<string[]> {
    const [{ id: lobby }] = await sql<{ id: string }>(s.env.DATABASE_URL!, 'select id from groups where is_lobby');
    const holder = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('select id from groups where id = $1 for share', [lobby]);
      const done = act();
      await waitedOnBy(holder);
      const { rows } = await holder.query<{ relname: string }>(
        `select distinct c.relname from pg_locks l join pg_class c on c.oid = l.relation
          where l.granted and l.mode = 'RowExclusiveLock' and c.relkind = 'r'
            and l.pid = any(select pid from pg_locks where not granted and pg_backend_pid() = any(pg_blocking_pids(pid)))`,
      );
      await holder.query('commit');
      await done;
      return rows.map((r) => r.relname).sort();
    } finally {
      await holder.end();
    }
  }

  it("should update the lobby's row last in a signup, so that signups wait on each other only for their commits", async () => {
    const s = await createTestServer();
    // Its account, session, membership and sidebar row are written when it comes to the lobby's row.
    const written = await writtenBeforeTheLobby(s, async () => (await signup(s.url)).id);
    expect(written).toEqual(expect.arrayContaining(['conversation_members', 'group_members', 'sessions', 'users']));
  });

  it("should leave the lobby last in an account's deletion, after its groups and projects", async () => {
    const s = await createTestServer();
    const [u, friend] = [await signup(s.url), await signup(s.url)];
    await ok(run(s, M.create, { n: 'Mine', p: false }, u));
    await ok(run(s, 'mutation { createProject(title: "Going with me") { id } }', {}, u));
    await ok(run(s, M.accept, { r: (await ok(run(s, M.request, { u: u.id }, friend))).sendFriendRequest.id }, u));
    const written = await writtenBeforeTheLobby(s, async () => expect((await ok(run(s, M.deleteAccount, { p: u.password }, u))).deleteAccount).toBe(true));
    expect(written).toEqual(expect.arrayContaining(['friendships', 'group_members', 'project_members']));
    expect(await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from group_members where user_id = $1', [u.id])).toEqual([{ n: 0 }]);
  });

  it('should leave no working token of an account deleted while it logged in', async () => {
    const s = await createTestServer({ RATE_LIMIT_LOGIN: '10000/5m' });
    for (let i = 0; i < 4; i++) {
      const u = await signup(s.url);
      // Logins spread over the deletion's time (its password check takes a while too).
      const logins = Array.from({ length: 8 }, (_, k) => new Promise<GqlResult>((r) => setTimeout(() => void gql(s.url, M.login, { u: u.username, p: u.password }).then(r), k * 15)));
      const [deleted, ...answers] = await Promise.all([run(s, M.deleteAccount, { p: u.password }, u), ...logins]);
      expect((await ok(Promise.resolve(deleted))).deleteAccount).toBe(true);
      // Each login came before (its session revoked with the others) or after (refused, as for any unknown name): never a server error.
      for (const a of answers) {
        if (a.errors) {
          expect(codeOf(a)).toBe('UNAUTHENTICATED');
          continue;
        }
        const me = await gql(s.url, M.me, {}, a.data!.login.token);
        expect([me.status, codeOf(me)]).toEqual([401, 'UNAUTHENTICATED']);
      }
    }
  });

  it("should keep a message's mentions those of its text when two edits, or an edit and a deletion, cross", async () => {
    const s = await createTestServer({ RATE_LIMIT_EDIT: '10000/1m' });
    const [a, b, c] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = (await ok(run(s, M.create, { n: 'Mentions racing', p: false }, a))).createGroup.id;
    for (const u of [b, c]) await ok(run(s, M.join, { g }, u));
    const last = async () => (await ok(run(s, M.history, { g }, a))).history.edges[0].node;
    for (let i = 0; i < TRIALS; i++) {
      const m = (await ok(run(s, M.post, { g, c: `plain ${i}` }, a))).sendMessage.id;
      await Promise.all([run(s, M.edit, { m, c: `one @${b.username}` }, a), run(s, M.edit, { m, c: `two @${c.username}` }, a)]);
      const after = await last();
      expect(after.mentions.map((x: { id: string }) => x.id)).toEqual([after.content.startsWith('one') ? b.id : c.id]);
    }
    // Mentioned only by the messages about to be deleted: their badge stays empty.
    const d = await signup(s.url);
    await ok(run(s, M.join, { g }, d));
    for (let i = 0; i < TRIALS; i++) {
      const m = (await ok(run(s, M.post, { g, c: `to go ${i}` }, a))).sendMessage.id;
      const [edited] = await Promise.all([run(s, M.edit, { m, c: `hey @${d.username}` }, a), run(s, M.deleteMessage, { m }, a)]);
      if (edited.errors) expect(codeOf(edited)).toBe('BAD_USER_INPUT');
      const after = await last();
      expect([after.deletedAt !== null, after.mentions]).toEqual([true, []]);
      expect((await ok(run(s, M.badge, { g }, d))).conversation.unreadMentionCount).toBe(0);
    }
  });

  it('should leave no group owned by, nor membership of, an account deleted while its other session created and joined groups', async () => {
    const s = await createTestServer({ RATE_LIMIT_CREATE_GROUP: '1000/1h', RATE_LIMIT_GROUP_MEMBERSHIP: '1000/1h', RATE_LIMIT_LOGIN: '10000/5m' });
    const host = await signup(s.url);
    const open = (await ok(run(s, M.create, { n: 'Open door', p: false }, host))).createGroup.id;
    for (let i = 0; i < 4; i++) {
      const u = await signup(s.url);
      const other = { ...u, token: (await ok(run(s, M.login, { u: u.username, p: u.password }, u))).login.token as string };
      const later = (k: number, q: string, v: Record<string, unknown>) => new Promise<GqlResult>((r) => setTimeout(() => void run(s, q, v, other).then(r), k * 10));
      const [deleted, ...rest] = await Promise.all([
        run(s, M.deleteAccount, { p: u.password }, u),
        ...Array.from({ length: 6 }, (_, k) => later(k, M.create, { n: `orphan ${i}.${k}`, p: false })),
        later(3, M.join, { g: open }),
      ]);
      expect((await ok(Promise.resolve(deleted))).deleteAccount).toBe(true);
      // Each came before the deletion (and went with the account's groups) or after it (refused).
      for (const r of rest) if (r.errors) expect(codeOf(r)).toBe('UNAUTHENTICATED');
      const [owned] = await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from groups where owner_id = $1', [u.id]);
      const [member] = await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from group_members where user_id = $1', [u.id]);
      expect([owned.n, member.n]).toEqual([0, 0]);
    }
  });

  it("should leave no project or group membership, nor inbox entry, of an account deleted while others added it", async () => {
    const s = await createTestServer({ RATE_LIMIT_CREATE_GROUP: '1000/1h', RATE_LIMIT_GROUP_MEMBERSHIP: '1000/1h' });
    const host = await signup(s.url);
    const projects: string[] = [];
    const groups: string[] = [];
    for (let k = 0; k < 6; k++) {
      projects.push((await ok(run(s, 'mutation($t: String!) { createProject(title: $t) { id } }', { t: `adding ${k}` }, host))).createProject.id);
      groups.push((await ok(run(s, M.create, { n: `adding ${k}`, p: true }, host))).createGroup.id);
    }
    let refused = 0;
    // Four trials at least, and more (spread wider) until one add came after a deletion: a slow
    // machine's password check can outlast every add of a trial.
    for (let i = 0; i < 4 || (refused === 0 && i < 12); i++) {
      const u = await signup(s.url);
      // Spread over the deletion's password check and its statements.
      const step = 30 * (1 + Math.max(0, i - 3));
      const later = (k: number, q: string, v: Record<string, unknown>) => new Promise<GqlResult>((r) => setTimeout(() => void run(s, q, v, host).then(r), k * step));
      const [deleted, ...rest] = await Promise.all([
        run(s, M.deleteAccount, { p: u.password }, u),
        ...projects.map((p, k) => later(2 * k, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p, u: u.id })),
        ...groups.map((g, k) => later(2 * k + 1, M.add, { g, u: u.id })),
      ]);
      expect((await ok(Promise.resolve(deleted))).deleteAccount).toBe(true);
      // Each add came before the deletion (and the deletion took the membership away) or after it (no such user).
      for (const r of rest) if (r.errors) expect(codeOf(r)).toBe('NOT_FOUND');
      refused += rest.filter((r) => r.errors).length;
      const [left] = await sql(
        s.env.DATABASE_URL!,
        'select (select count(*) from project_members where user_id = $1)::int as p, (select count(*) from group_members where user_id = $1)::int as g, (select count(*) from project_actions where recipient_id = $1)::int as inbox',
        [u.id],
      );
      expect(left).toEqual({ p: 0, g: 0, inbox: 0 });
    }
    expect(refused).toBeGreaterThan(0);
  }, 120_000);

  it("should leave no request, friendship, invitation, membership or project of an account whose deletion was under way", async () => {
    const s = await createTestServer();
    const [host, friend] = [await signup(s.url), await signup(s.url)];
    const secret = (await ok(run(s, M.create, { n: 'Invites', p: true }, host))).createGroup.id;
    const cases: { name: string; prepare: (u: TestUser) => Promise<() => Promise<GqlResult>> }[] = [
      { name: 'createProject by it', prepare: async (u) => () => run(s, 'mutation { createProject(title: "Orphan") { id } }', {}, u) },
      { name: 'sendFriendRequest by it', prepare: async (u) => () => run(s, M.request, { u: friend.id }, u) },
      {
        name: 'acceptFriendRequest of its request',
        prepare: async (u) => {
          const r = (await ok(run(s, M.request, { u: friend.id }, u))).sendFriendRequest.id;
          return () => run(s, M.accept, { r }, friend);
        },
      },
      { name: 'inviteToGroup of it', prepare: async (u) => () => run(s, M.invite, { g: secret, u: u.id }, host) },
      {
        name: 'acceptGroupInvite by it',
        prepare: async (u) => {
          await ok(run(s, M.invite, { g: secret, u: u.id }, host));
          return () => run(s, M.acceptInvite, { g: secret }, u);
        },
      },
    ];
    for (const c of cases) {
      const u = await signup(s.url);
      const act = await c.prepare(u);
      // The deletion under way, as deleteAccount holds the account: its row locked and marked first.
      const deletion = new pg.Client({ connectionString: s.env.DATABASE_URL });
      await deletion.connect();
      try {
        await deletion.query('begin');
        await deletion.query('select 1 from users where id = $1 for no key update', [u.id]);
        await deletion.query('update users set deleted_at = now() where id = $1', [u.id]);
        await deletion.query('delete from friend_requests where from_id = $1 or to_id = $1', [u.id]);
        await deletion.query('delete from group_invites where user_id = $1', [u.id]);
        const answer = act();
        const waiting = async () => (await sql(s.env.DATABASE_URL!, "select 1 from pg_locks where not granted and locktype in ('transactionid', 'tuple')")).length > 0;
        await Promise.race([answer, eventually(waiting, 5000)]);
        await deletion.query('commit');
        expect([c.name, ['UNAUTHENTICATED', 'NOT_FOUND']]).toEqual([c.name, expect.arrayContaining([codeOf(await answer)])]);
      } finally {
        await deletion.end();
      }
      const [left] = await sql(
        s.env.DATABASE_URL!,
        `select (select count(*) from projects where owner_id = $1)::int as projects, (select count(*) from friend_requests where from_id = $1 or to_id = $1)::int as requests,
           (select count(*) from friendships where user_a_id = $1 or user_b_id = $1)::int as friends, (select count(*) from group_invites where user_id = $1)::int as invites,
           (select count(*) from group_members where user_id = $1 and group_id = $2)::int as members`,
        [u.id, secret],
      );
      expect([c.name, left]).toEqual([c.name, { projects: 0, requests: 0, friends: 0, invites: 0, members: 0 }]);
    }
  });

  it('should leave no friendship between a blocked pair when a block and an acceptance cross', async () => {
    const s = await createTestServer();
    const [m, n] = [await signup(s.url), await signup(s.url)];
    for (let i = 0; i < TRIALS; i++) {
      const r = (await ok(run(s, M.request, { u: n.id }, m))).sendFriendRequest.id;
      const [block, accept] = await Promise.all([run(s, M.block, { u: n.id }, m), run(s, M.accept, { r }, n)]);
      expect((await ok(Promise.resolve(block))).blockUser).toBe(true);
      // Accepted first (the block then ended it), or found gone: the block dropped the request.
      if (accept.errors) expect(codeOf(accept)).toBe('NOT_FOUND');
      const mine = (await ok(run(s, M.friends, {}, m))) as { friends: { id: string }[]; blockedUsers: { id: string }[] };
      expect([ids(mine.friends), ids(mine.blockedUsers)]).toEqual([[], [n.id]]);
      expect(ids((await ok(run(s, M.friends, {}, n))).friends)).toEqual([]);
      expect(codeOf(await run(s, M.dm, { u: m.id }, n))).toBe('FORBIDDEN');
      await ok(run(s, M.unblock, { u: n.id }, m));
    }
  });

  it("should end a messageEvent subscriber's last pin or unpin on the message's stored pin when pins and unpins cross", async () => {
    const s = await createTestServer();
    const users = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = (await ok(run(s, M.create, { n: 'pins crossing', p: false }, users[0]))).createGroup.id;
    for (const u of users.slice(1)) await ok(run(s, M.join, { g }, u));
    const events = await listen(s, users[1], 'subscription($g: ID!) { messageEvent(conversation: { groupId: $g }) { kind message { id content pinnedAt } } }', { g });
    for (let i = 0; i < TRIALS; i++) {
      const m = (await ok(run(s, M.post, { g, c: `pin me ${i}` }, users[0]))).sendMessage.id;
      await Promise.all(Array.from({ length: 16 }, (_, k) => ok(run(s, k % 2 ? M.unpin : M.pin, { m }, users[k % 3]))));
      // Every pin's event was published before its answer: an edit published after them is a barrier.
      await ok(run(s, M.edit, { m, c: `pinned or not ${i}` }, users[0]));
      await eventually(() => events.values.some((v) => v.messageEvent.message.content === `pinned or not ${i}`));
      const stored = (await ok(run(s, M.message, { g }, users[1]))).history.edges[0].node;
      const pins = events.values.map((v) => v.messageEvent).filter((e) => e.message.id === m && (e.kind === 'PINNED' || e.kind === 'UNPINNED'));
      // What a client keeps from PINNED and UNPINNED is what is stored; each event's kind says what its message shows.
      expect([pins.at(-1)?.kind, pins.every((e) => (e.kind === 'PINNED') === (e.message.pinnedAt !== null))]).toEqual([stored.pinnedAt ? 'PINNED' : 'UNPINNED', true]);
    }
  });

  it('should store no message in a group or project deleted while sends to it were under way', async () => {
    const s = await createTestServer({ RATE_LIMIT_CREATE_GROUP: '1000/1h', RATE_LIMIT_GROUP_MEMBERSHIP: '1000/1h', RATE_LIMIT_SEND_MESSAGE: '10000/10s' });
    const [owner, k] = [await signup(s.url), await signup(s.url)];
    const stored = async (key: string) =>
      (await sql(s.env.DATABASE_URL!, 'select (select count(*) from messages where conversation_key = $1)::int as m, (select count(*) from conversation_members where conversation_key = $1)::int as cm', [key]))[0];
    let refused = 0;
    // Until a send met the deletion at least once (a loaded machine can answer every send before it), within a bound.
    for (let i = 0; i < TRIALS || (refused === 0 && i < TRIALS * 5); i++) {
      const project = i % 2 === 1;
      const id = project
        ? (await ok(run(s, 'mutation($t: String!) { createProject(title: $t) { id } }', { t: `going ${i}` }, owner))).createProject.id
        : (await ok(run(s, M.create, { n: `going ${i}`, p: false }, owner))).createGroup.id;
      if (!project) await ok(run(s, M.join, { g: id }, k));
      const target = project ? { projectId: id } : { groupId: id };
      const root = (await ok(run(s, 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }', { i: { ...target, content: 'root' } }, owner))).sendMessage.id;
      const send = (u: TestUser, extra: Record<string, unknown>) => run(s, 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }', { i: { ...target, content: 'racing', ...extra } }, u);
      const sends = [owner, project ? owner : k, owner, project ? owner : k].flatMap((u, j) => [send(u, {}), send(u, j % 2 ? { parentId: root } : { content: 'racing @all' })]);
      const del = run(s, project ? 'mutation($p: ID!) { deleteProject(projectId: $p) }' : M.deleteGroup, project ? { p: id } : { g: id }, owner);
      const answers = await Promise.all([...sends, del]);
      await ok(Promise.resolve(answers.pop()!));
      for (const a of answers) if (a.errors) expect(codeOf(a)).toBe('NOT_FOUND');
      refused += answers.filter((a) => a.errors).length;
      // Sent before the deletion or refused: either way nothing of the conversation is left.
      expect(await stored(`${project ? 'p' : 'g'}:${id}`)).toEqual({ m: 0, cm: 0 });
    }
    // The race was run, not only the sends before the deletion.
    expect(refused).toBeGreaterThan(0);
  });

  it('should store no reply on a root deleted before it, alone or batched with others', async () => {
    const s = await createTestServer({ RATE_LIMIT_SEND_MESSAGE: '10000/10s', RATE_LIMIT_EDIT: '10000/10s' });
    const [owner, k] = [await signup(s.url), await signup(s.url)];
    const g = (await ok(run(s, M.create, { n: 'replies', p: false }, owner))).createGroup.id;
    await ok(run(s, M.join, { g }, k));
    const SEND = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }';
    let late = 0;
    let crossed = 0;
    for (let i = 0; i < 3 * TRIALS; i++) {
      const root = (await ok(run(s, SEND, { i: { groupId: g, content: `root ${i}` } }, owner))).sendMessage.id;
      // Replies from both users (a batch when they meet in the lane), the deletion among them.
      const replies = [k, owner, k].map((u, j) => new Promise<GqlResult>((r) => setTimeout(() => void run(s, SEND, { i: { groupId: g, content: `reply ${j}`, parentId: root } }, u).then(r), j)));
      const [del, ...answers] = await Promise.all([run(s, M.deleteMessage, { m: root }, owner), ...replies]);
      await ok(Promise.resolve(del));
      for (const a of answers) if (a.errors) expect(codeOf(a)).toBe('BAD_USER_INPUT');
      crossed += answers.filter((a) => a.errors).length;
      const [x] = await sql(
        s.env.DATABASE_URL!,
        'select count(*)::int as n from messages m join messages r on r.id = m.parent_id where m.parent_id = $1 and m.created_at > r.deleted_at',
        [root],
      );
      late += x.n;
    }
    // Each reply came before the deletion or was refused; none was stored on the tombstone after it.
    expect(late).toBe(0);
    expect(crossed).toBeGreaterThan(0);
  });

  it('should answer edits, reactions, pins, reports and thread markers crossing their group\'s deletion as done or NOT_FOUND, never a server error', async () => {
    const s = await createTestServer({ RATE_LIMIT_CREATE_GROUP: '1000/1h', RATE_LIMIT_GROUP_MEMBERSHIP: '1000/1h', RATE_LIMIT_EDIT: '10000/10s', RATE_LIMIT_REACTION: '10000/10s', RATE_LIMIT_REPORT: '10000/1h' });
    const [owner, k] = [await signup(s.url), await signup(s.url)];
    const SEND = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }';
    const codes = new Map<string, number>();
    // Half the trials: each waits out a deadlock or two with the deletion (detected after a second).
    for (let i = 0; i < TRIALS / 2; i++) {
      const g = (await ok(run(s, M.create, { n: `going ${i}`, p: false }, owner))).createGroup.id;
      await ok(run(s, M.join, { g }, k));
      const ids: string[] = [];
      for (let j = 0; j < 3; j++) ids.push((await ok(run(s, SEND, { i: { groupId: g, content: `seed ${j}` } }, owner))).sendMessage.id);
      const ops = ids.flatMap((m) => [
        run(s, M.edit, { m, c: 'edited' }, owner),
        run(s, 'mutation($m: ID!) { addReaction(messageId: $m, emoji: "👍") { id } }', { m }, k),
        run(s, 'mutation($m: ID!) { pinMessage(messageId: $m) { id } }', { m }, k),
        run(s, 'mutation($m: ID!) { reportMessage(messageId: $m, reason: "spam") { id } }', { m }, k),
        run(s, 'mutation($m: ID!) { markThreadRead(messageId: $m) { id } }', { m }, k),
      ]);
      const answers = await Promise.all([run(s, M.deleteGroup, { g }, owner), ...ops]);
      await ok(Promise.resolve(answers.shift()!));
      for (const a of answers) {
        const code = a.errors ? codeOf(a)! : 'ok';
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    }
    expect([...codes.keys()].filter((c) => c !== 'ok' && c !== 'NOT_FOUND')).toEqual([]);
  });

  it('should answer a request once when its acceptance and its decline cross', async () => {
    const s = await createTestServer({ FRIEND_REQUEST_COOLDOWN: '0' });
    const [a, b] = [await signup(s.url), await signup(s.url)];
    for (let i = 0; i < TRIALS; i++) {
      const r = (await ok(run(s, M.request, { u: b.id }, a))).sendFriendRequest.id;
      const answers = await Promise.all([run(s, M.accept, { r }, b), run(s, M.decline, { r }, b)]);
      const [accepted, declined] = answers;
      expect(answers.filter((x) => !x.errors)).toHaveLength(1);
      expect(answers.map((x) => (x.errors ? codeOf(x) : 'ok')).sort()).toEqual(['CONFLICT', 'ok']);
      const friends = ids((await ok(run(s, M.friends, {}, a))).friends);
      expect(friends).toEqual(accepted.errors ? [] : [b.id]);
      if (!declined.errors) expect(declined.data!.declineFriendRequest.status).toBe('DECLINED');
      if (friends.length) await ok(run(s, M.unfriend, { u: a.id }, b));
    }
  });

  it('should not let a deletion, reaction, edit or pin past its first check go through after a demotion, ban or removal that answered before it', async () => {
    const s = await createTestServer({ RATE_LIMIT_EDIT: '10000/1m', RATE_LIMIT_GROUP_MEMBERSHIP: '10000/1m' });
    const [owner, admin, member] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = (await ok(run(s, M.create, { n: 'Rights racing', p: false }, owner))).createGroup.id;
    for (const u of [admin, member]) await ok(run(s, M.join, { g }, u));
    const cases = [
      { what: "an admin's deletion vs their demotion", act: (m: string) => run(s, M.deleteMessage, { m }, admin), revoke: () => run(s, M.setRole, { g, u: admin.id, r: 'MEMBER' }, owner), refused: 'FORBIDDEN' },
      { what: "a member's reaction vs their ban", act: (m: string) => run(s, M.react, { m }, member), revoke: () => run(s, M.ban, { g, u: member.id }, owner) },
      { what: "a member's edit vs their removal", act: (m: string) => run(s, M.edit, { m, c: 'edited after all' }, member), revoke: () => run(s, M.remove, { g, u: member.id }, owner) },
      { what: "a member's pin vs their removal", act: (m: string) => run(s, M.pin, { m }, member), revoke: () => run(s, M.remove, { g, u: member.id }, owner) },
    ];
    const p = (await ok(run(s, 'mutation { createProject(title: "Rights racing") { id } }', {}, owner))).createProject.id;
    const inProject = {
      what: "a participant's reaction vs their removal from a project",
      act: (m: string) => run(s, M.react, { m }, member),
      revoke: () => run(s, 'mutation($p: ID!, $u: ID!) { removeProjectParticipant(projectId: $p, userId: $u) { id } }', { p, u: member.id }, owner),
    };
    const projectMessage = 'query($p: ID!) { history(conversation: { projectId: $p }, last: 1) { edges { node { id content deletedAt pinnedAt reactions { emoji count } } } } }';
    // The message's row held as a concurrent change of it holds it: each change waits there, past its first check, while the right goes.
    const holder = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await holder.connect();
    try {
      for (const c of [...cases, inProject]) {
        const project = c === inProject;
        await ok(run(s, M.unban, { g, u: member.id }, owner));
        await run(s, M.join, { g }, member);
        await ok(run(s, M.setRole, { g, u: admin.id, r: 'ADMIN' }, owner));
        if (project) await ok(run(s, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p, u: member.id }, owner));
        const content = `said by the member (${c.what})`;
        const m = project
          ? (await ok(run(s, 'mutation($p: ID!, $c: String!) { sendMessage(input: { projectId: $p, content: $c }) { id } }', { p, c: content }, member))).sendMessage.id
          : (await ok(run(s, M.post, { g, c: content }, member))).sendMessage.id;
        await holder.query('begin');
        await holder.query('select 1 from messages where id = $1 for update', [m]);
        const acting = c.act(m);
        await sleep(300);
        let revokedAt = Infinity;
        const revoking = c.revoke().then((r) => ((revokedAt = Date.now()), r));
        await sleep(300);
        const releasedAt = Date.now();
        await holder.query('commit');
        const [acted] = await Promise.all([acting, ok(revoking)]);
        const after = (await ok(project ? run(s, projectMessage, { p }, owner) : run(s, M.message, { g }, owner))).history.edges[0].node;
        if (acted.errors) {
          // Refused: nothing changed.
          expect([c.what, codeOf(acted)]).toEqual([c.what, 'refused' in c ? c.refused : 'NOT_FOUND']);
          expect(after).toMatchObject({ id: m, deletedAt: null, pinnedAt: null, reactions: [], content });
        } else {
          // Done: then it came first, and the revocation waited for it (it answered OK before, without the hold).
          expect([c.what, revokedAt >= releasedAt]).toEqual([c.what, true]);
        }
      }
    } finally {
      await holder.end();
    }
  });

  it("should refuse an admin's deletion as NOT_FOUND when their removal commits between its reads of their membership and their role", async () => {
    const s = await createTestServer();
    const [owner, admin, member] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = (await ok(run(s, M.create, { n: 'Between two reads', p: false }, owner))).createGroup.id;
    for (const u of [admin, member]) await ok(run(s, M.join, { g }, u));
    await ok(run(s, M.setRole, { g, u: admin.id, r: 'ADMIN' }, owner));
    const m = (await ok(run(s, M.post, { g, c: 'to be deleted' }, member))).sendMessage.id;
    // The removal lands just before the role is read (after the membership was).
    const groups = s.services.groups;
    const real = groups.moderates.bind(groups);
    groups.moderates = async (em, groupId, userId) => {
      groups.moderates = real;
      await ok(run(s, M.remove, { g, u: admin.id }, owner));
      return real(em, groupId, userId);
    };
    expect(codeOf(await run(s, M.deleteMessage, { m }, admin))).toBe('NOT_FOUND');
    expect(groups.moderates).toBe(real);
    expect((await ok(run(s, M.message, { g }, owner))).history.edges[0].node.deletedAt).toBeNull();
  });

  it('should store no report by a member whose removal answered while the report was on its way', async () => {
    const s = await createTestServer();
    const [owner, member] = [await signup(s.url), await signup(s.url)];
    const g = (await ok(run(s, M.create, { n: 'Reports racing', p: false }, owner))).createGroup.id;
    await ok(run(s, M.join, { g }, member));
    const m = (await ok(run(s, M.post, { g, c: 'reported' }, owner))).sendMessage.id;
    // The message's row held (as a change of it holds it): the report waits there, past its first check, while the member goes.
    const holder = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await holder.connect();
    try {
      await holder.query('begin');
      await holder.query('select 1 from messages where id = $1 for update', [m]);
      const reporting = run(s, 'mutation($m: ID!) { reportMessage(messageId: $m, reason: "spam") { id } }', { m }, member);
      await sleep(300);
      let removedAt = Infinity;
      const removing = run(s, M.remove, { g, u: member.id }, owner).then((r) => ((removedAt = Date.now()), r));
      await sleep(300);
      const releasedAt = Date.now();
      await holder.query('commit');
      const [reported] = await Promise.all([reporting, ok(removing)]);
      const stored = Number((await sql(s.env.DATABASE_URL!, 'select count(*) as n from reports where message_id = $1', [m]))[0].n);
      if (reported.errors) {
        expect([codeOf(reported), stored]).toEqual(['NOT_FOUND', 0]);
      } else {
        // Stored: then it came first, and the removal waited for it.
        expect([stored, removedAt >= releasedAt]).toEqual([1, true]);
      }
    } finally {
      await holder.end();
    }
  });

  it("should answer an edit or deletion that committed as done, and tell the other members' sidebars, when a ban follows its commit", async () => {
    const s = await createTestServer({ RATE_LIMIT_EDIT: '10000/1m', RATE_LIMIT_GROUP_MEMBERSHIP: '10000/1m' });
    const [owner, member] = [await signup(s.url), await signup(s.url)];
    const g = (await ok(run(s, M.create, { n: 'Banned after the commit', p: false }, owner))).createGroup.id;
    const sidebar = await listen(s, owner, 'subscription { conversationUpdated { id lastMessage { id content deletedAt } } }');
    const holder = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await holder.connect();
    try {
      for (const change of ['edit', 'delete'] as const) {
        await ok(run(s, M.unban, { g, u: member.id }, owner));
        await ok(run(s, M.join, { g }, member));
        const m = (await ok(run(s, M.post, { g, c: `to ${change}` }, member))).sendMessage.id;
        await eventually(() => sidebar.values.some((v) => v.conversationUpdated.lastMessage?.id === m));
        const told = sidebar.values.length;
        // The change commits, then waits to read the conversation's head for the sidebars (held by this lock) while the ban commits.
        await holder.query('begin');
        await holder.query('lock table conversation_heads in access exclusive mode');
        const changing = change === 'edit' ? run(s, M.edit, { m, c: 'edited, then banned' }, member) : run(s, M.deleteMessage, { m }, member);
        await sleep(300);
        await ok(run(s, M.ban, { g, u: member.id }, owner));
        await holder.query('commit');
        const changed = await changing;
        expect([change, changed.errors]).toEqual([change, undefined]);
        const after = (await ok(run(s, M.message, { g }, owner))).history.edges[0].node;
        expect(change === 'edit' ? after.content : after.deletedAt).toEqual(change === 'edit' ? 'edited, then banned' : expect.any(String));
        // The owner's sidebar is told the change (it was skipped when the answer failed).
        const row = await eventually(() => sidebar.values.slice(told).find((v) => v.conversationUpdated.lastMessage?.id === m));
        expect(change === 'edit' ? row.conversationUpdated.lastMessage.content : row.conversationUpdated.lastMessage.deletedAt).toEqual(change === 'edit' ? 'edited, then banned' : expect.any(String));
      }
    } finally {
      await holder.end();
    }
  });

  // Two instances on one Redis for its later parts (without Redis a second instance hears nothing of the first).
  itRedis("should tell a thread's root with the reaction or reply that crossed a reply: THREAD_UPDATED's reactions and participants as new as its version", async () => {
    const s = await createTestServer({ RATE_LIMIT_REACTION: '10000/1m' });
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = (await ok(run(s, M.create, { n: 'Reacting while replying', p: false }, alice))).createGroup.id;
    await ok(run(s, M.join, { g }, bob));
    const events = await listen(s, alice, 'subscription { messageEvent { kind message { id reactions { emoji count } } } }');
    const REPLY = 'mutation($g: ID!, $p: ID!) { sendMessage(input: { groupId: $g, content: "a reply", parentId: $p }) { id } }';
    const holder = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await holder.connect();
    try {
      for (let i = 0; i < 3; i++) {
        const root = (await ok(run(s, M.post, { g, c: `root ${i}` }, alice))).sendMessage.id;
        const told = events.values.length;
        // The root's row held: the reaction waits for it first, the reply's statement (its snapshot taken) next.
        await holder.query('begin');
        await holder.query('select 1 from messages where id = $1 for update', [root]);
        const reacting = run(s, M.react, { m: root }, bob);
        await sleep(150);
        const replying = run(s, REPLY, { g, p: root }, bob);
        await sleep(150);
        await holder.query('commit');
        await Promise.all([ok(reacting), ok(replying)]);
        const mine = () => events.values.slice(told).filter((v) => v.messageEvent.message.id === root);
        await eventually(() => mine().some((v) => v.messageEvent.kind === 'THREAD_UPDATED'));
        await sleep(100);
        // Whatever arrived (an older copy after a newer one is dropped), the last word has the reaction.
        expect(mine().at(-1)!.messageEvent.message.reactions).toEqual([{ emoji: '👍', count: 1 }]);
      }
      // Two replies from two instances, the second's statement waiting behind the first's: its event names the first replier too.
      const other = await createTestServer({}, { clean: false });
      const carol = await signup(s.url);
      await ok(run(s, M.join, { g }, carol));
      const PARTICIPANTS = 'subscription { messageEvent { kind message { id replyCount threadParticipants { id } } } }';
      const threads = await listen(s, alice, PARTICIPANTS);
      const root = (await ok(run(s, M.post, { g, c: 'who answers?' }, alice))).sendMessage.id;
      await holder.query('begin');
      await holder.query('select 1 from conversation_heads where conversation_key = $1 for update', [`g:${g}`]);
      const first = run(s, REPLY, { g, p: root }, bob);
      await sleep(150);
      const second = gql(other.url, REPLY, { g, p: root }, carol.token);
      await sleep(150);
      await holder.query('commit');
      await Promise.all([ok(first), ok(second)]);
      // The second reply's event (Bob's, older, may arrive after it and is then dropped).
      await eventually(() => threads.values.some((v) => v.messageEvent.kind === 'THREAD_UPDATED' && v.messageEvent.message.id === root && v.messageEvent.message.replyCount === 2));
      await sleep(100);
      const last = threads.values.filter((v) => v.messageEvent.message.id === root).at(-1)!.messageEvent.message;
      expect([last.replyCount, last.threadParticipants.map((u: { id: string }) => u.id).sort()]).toEqual([2, [alice.id, bob.id, carol.id].sort()]);
      // Read again after its commit (a reaction moved the root while it waited), a reply's event names
      // no replier after it: Carol's reply, queued behind Bob's, commits before Bob's read (held
      // behind a lock of the reactions' table that waits for both statements, which hold the table).
      const third = (await ok(run(s, M.post, { g, c: 'and now?' }, alice))).sendMessage.id;
      const told = threads.values.length;
      const updates = () => threads.values.slice(told).filter((v) => v.messageEvent.kind === 'THREAD_UPDATED');
      const reactionsHolder = new pg.Client({ connectionString: s.env.DATABASE_URL });
      await reactionsHolder.connect();
      try {
        await holder.query('begin');
        await holder.query('select 1 from conversation_heads where conversation_key = $1 for update', [`g:${g}`]);
        const bobs = run(s, REPLY, { g, p: third }, bob);
        await sleep(150);
        await ok(run(s, M.react, { m: third }, alice));
        // Carol's event goes out once Bob's was told: the other way round, Bob's older one is dropped (rightly) and nothing is left to check.
        const carolsEvents = holdNextMessagePublish(other.services.pubsub);
        const carols = gql(other.url, REPLY, { g, p: third }, carol.token);
        await sleep(150);
        await reactionsHolder.query('begin');
        const locked = reactionsHolder.query('lock table message_reactions in access exclusive mode');
        await sleep(100);
        await holder.query('commit');
        await locked;
        await sleep(300);
        await reactionsHolder.query('commit');
        await ok(bobs);
        await eventually(() => updates().length >= 1);
        await carolsEvents.taken();
        carolsEvents.release();
        await ok(carols);
      } finally {
        await reactionsHolder.end();
      }
      await eventually(() => updates().length >= 2);
      expect(updates().map((v) => v.messageEvent.message.replyCount)).toEqual([1, 2]);
      for (const v of updates()) {
        const m = v.messageEvent.message;
        expect([m.replyCount, m.threadParticipants.length]).toEqual([m.replyCount, m.replyCount + 1]);
      }
    } finally {
      await holder.end();
    }
  });

  it("should send a project message (or reply) whose gate met the sender's removal, once the sender is back by the time it is checked", async () => {
    const s = await createTestServer();
    const [owner, member] = [await signup(s.url), await signup(s.url)];
    const p = (await ok(run(s, 'mutation { createProject(title: "Out and back") { id } }', {}, owner))).createProject.id;
    await ok(run(s, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p, u: member.id }, owner));
    const root = (await ok(run(s, 'mutation($p: ID!) { sendMessage(input: { projectId: $p, content: "the root" }) { id } }', { p }, owner))).sendMessage.id;
    const SEND = 'mutation($p: ID!, $c: String!, $r: ID) { sendMessage(input: { projectId: $p, content: $c, parentId: $r }) { id } }';
    const holder = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await holder.connect();
    try {
      for (const parent of [null, root]) {
        // A removal and a re-add in one transaction: the send's gate, waiting for the member's row, finds it gone; the check after finds the new one.
        await holder.query('begin');
        await holder.query(
          `with d as (delete from project_members where project_id = $1 and user_id = $2 returning *)
           insert into project_members (id, project_id, user_id, role, joined_at) select gen_random_uuid(), project_id, user_id, role, joined_at from d`,
          [p, member.id],
        );
        const sending = run(s, SEND, { p, c: `back again (${parent ? 'a reply' : 'a message'})`, r: parent }, member);
        await sleep(300);
        await holder.query('commit');
        const sent = await sending;
        expect([parent, sent.errors]).toEqual([parent, undefined]);
        const stored = await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from messages where id = $1', [sent.data!.sendMessage.id]);
        expect(stored[0].n).toBe(1);
      }
    } finally {
      await holder.end();
    }
  });
});
