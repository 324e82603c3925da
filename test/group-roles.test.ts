import { codeOf, eventually, gql, listen, ok, sleep, type GqlResult } from './helpers/graphql';
import { createTestServer, describeRedis, type TestServer } from './helpers/server';
import { lobbyOf, sendMessage, signup, type TestUser } from './helpers/factories';
import pg from 'pg';
import { snapshot, sql } from './helpers/db';
import { loadEnv } from '../src/config/env';
import { startReceiver } from './helpers/webhook-receiver';
import { holdNextPublishOf } from './helpers/publish';
import { Topic } from '../src/shared/pubsub/topics';

const M = {
  setRole: 'mutation($g: ID!, $u: ID!, $r: GroupRole!) { setGroupRole(groupId: $g, userId: $u, role: $r) { id myRole owner { id } } }',
  remove: 'mutation($g: ID!, $u: ID!) { removeGroupMember(groupId: $g, userId: $u) { id memberCount } }',
  ban: 'mutation($g: ID!, $u: ID!) { banFromGroup(groupId: $g, userId: $u) { id memberCount bannedUsers { id } } }',
  unban: 'mutation($g: ID!, $u: ID!) { unbanFromGroup(groupId: $g, userId: $u) { id bannedUsers { id } } }',
  invite: 'mutation($g: ID!, $u: ID!) { inviteToGroup(groupId: $g, userId: $u) }',
  accept: 'mutation($g: ID!) { acceptGroupInvite(groupId: $g) { id myRole memberCount } }',
  decline: 'mutation($g: ID!) { declineGroupInvite(groupId: $g) }',
  slow: 'mutation($g: ID!, $s: Int!) { setSlowMode(groupId: $g, seconds: $s) { id slowModeSeconds } }',
  rename: 'mutation($g: ID!, $n: String!) { renameGroup(groupId: $g, name: $n) { id name } }',
  add: 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id memberCount } }',
  join: 'mutation($g: ID!) { joinGroup(groupId: $g) { id myRole } }',
  leave: 'mutation($g: ID!) { leaveGroup(groupId: $g) }',
  del: 'mutation($g: ID!) { deleteGroup(groupId: $g) }',
  deleteMessage: 'mutation($m: ID!) { deleteMessage(messageId: $m) }',
  send: 'mutation($g: ID!, $c: String!) { sendMessage(input: { groupId: $g, content: $c }) { id } }',
  create: 'mutation($n: String!, $p: Boolean) { createGroup(name: $n, isPrivate: $p) { id } }',
};
const GROUP = 'query($id: ID!) { group(id: $id) { id name myRole slowModeSeconds memberCount owner { id } bannedUsers { id } members(first: 50) { edges { role node { id } } } } }';
const EVENTS = 'subscription { groupEvent { kind groupId user { id } group { id name } } }';

/** `blocked`: an admin whom every other user of the group but the owner blocks (the target of each case among them). */
type Role = 'owner' | 'admin' | 'member' | 'banned' | 'outsider' | 'invitee' | 'blocked';
const ROLES: Role[] = ['owner', 'admin', 'member', 'banned', 'outsider', 'invitee', 'blocked'];

interface World {
  a: TestServer;
  b: TestServer;
  group: string;
  users: Record<Role | 'admin2' | 'member2', TestUser>;
  /** A message of member2, for deleteMessage. */
  message: string;
}

const run = (s: TestServer, q: string, v: Record<string, unknown>, u: TestUser) => gql(s.url, q, v, u.token);
const BLOCK = 'mutation($u: ID!) { blockUser(userId: $u) }';

/**
 * A private group on instance A: owner, three admins (the third, `blocked`, blocked by everyone
 * else but the owner), two members, a banned user (once a member), an invitee with a pending
 * invitation, and an outsider. Actors then act through instance B. Built with what does not
 * depend on order at once (each world ~0.4 s instead of ~1 s).
 */
async function world(a: TestServer, b: TestServer, opts: { isPrivate?: boolean } = {}): Promise<World> {
  const names = ['owner', 'admin', 'admin2', 'blocked', 'member', 'member2', 'banned', 'outsider', 'invitee'] as const;
  const signed = await Promise.all(names.map(() => signup(a.url)));
  const users = Object.fromEntries(names.map((n, i) => [n, signed[i]])) as World['users'];
  const { owner } = users;
  const group = (await ok(run(a, M.create, { n: 'Rope team', p: opts.isPrivate ?? true }, owner))).createGroup.id;
  // `admin` first: the oldest admin, whom a deleting owner's group goes to.
  await ok(run(a, M.add, { g: group, u: users.admin.id }, owner));
  await Promise.all((['admin2', 'blocked', 'member', 'member2', 'banned'] as const).map((n) => ok(run(a, M.add, { g: group, u: users[n].id }, owner))));
  const [message] = await Promise.all([
    sendMessage(a.url, users.member2.token, { groupId: group, content: 'from member2' }).then((m) => m.id),
    ...(['admin', 'admin2', 'blocked'] as const).map((n) => ok(run(a, M.setRole, { g: group, u: users[n].id, r: 'ADMIN' }, owner))),
    ok(run(a, M.ban, { g: group, u: users.banned.id }, owner)),
    ok(run(a, M.invite, { g: group, u: users.invitee.id }, owner)),
    ...(['admin', 'admin2', 'member', 'member2', 'banned', 'outsider', 'invitee'] as const).map((n) => ok(run(a, BLOCK, { u: users.blocked.id }, users[n]))),
  ]);
  return { a, b, group, users, message: message as string };
}

/**
 * Every row count, plus what updates in place: names, owners, slow modes, roles, bans, invitations,
 * tombstones. On one connection (one per query cost ~0.5 s a state, 2 states a refusal).
 */
async function state(s: TestServer): Promise<unknown> {
  const db = new pg.Client({ connectionString: s.env.DATABASE_URL! });
  await db.connect();
  const rows = async (q: string) => (await db.query(q)).rows;
  try {
    return {
      counts: await snapshot(db),
      groups: await rows('select id, name, owner_id, slow_mode_seconds, member_count from groups order by id'),
      members: await rows('select group_id, user_id, role, slow_sent_at from group_members order by group_id, user_id'),
      bans: await rows('select group_id, user_id from group_bans order by 1, 2'),
      invites: await rows('select group_id, user_id from group_invites order by 1, 2'),
      deleted: await rows('select id from messages where deleted_at is not null order by id'),
      blocks: await rows('select blocker_id, blocked_id from user_blocks order by 1, 2'),
    };
  } finally {
    await db.end();
  }
}

/** Runs a refused operation: its code, and nothing changed. */
async function refused(w: World, q: string, v: Record<string, unknown>, who: TestUser): Promise<string | undefined> {
  const before = await state(w.a);
  const r: GqlResult = await run(w.b, q, v, who);
  expect(r.data?.[Object.keys(r.data ?? {})[0]] ?? null).toBeNull();
  expect(await state(w.a)).toEqual(before);
  return codeOf(r);
}

type Answer = 'ok' | 'FORBIDDEN' | 'NOT_FOUND' | 'BAD_USER_INPUT' | 'CONFLICT';

/** One operation against every role: the expected refusal code, or 'ok'. */
interface Case {
  name: string;
  op: (w: World) => { q: string; v: Record<string, unknown> };
  /** `blocked` answers as `admin` unless given: a block changes no group rule but the invitation's. */
  expect: Record<Exclude<Role, 'blocked'>, Answer> & { blocked?: Answer };
  /** After an 'ok': what must now hold. */
  check?: (w: World, actor: Role) => Promise<void>;
}

const moderation = { owner: 'ok', admin: 'ok', member: 'FORBIDDEN', banned: 'NOT_FOUND', outsider: 'NOT_FOUND', invitee: 'FORBIDDEN' } as const;

async function groupAs(w: World, u: TestUser) {
  return (await ok(run(w.a, GROUP, { id: w.group }, u))).group;
}

const CASES: Case[] = [
  {
    name: 'setGroupRole (member to ADMIN)',
    op: (w) => ({ q: M.setRole, v: { g: w.group, u: w.users.member.id, r: 'ADMIN' } }),
    expect: { owner: 'ok', admin: 'FORBIDDEN', member: 'FORBIDDEN', banned: 'NOT_FOUND', outsider: 'NOT_FOUND', invitee: 'FORBIDDEN' },
    check: async (w) => expect((await groupAs(w, w.users.member)).myRole).toBe('ADMIN'),
  },
  {
    name: 'removeGroupMember (a member)',
    op: (w) => ({ q: M.remove, v: { g: w.group, u: w.users.member2.id } }),
    expect: moderation,
    check: async (w) => expect(await run(w.a, GROUP, { id: w.group }, w.users.member2)).toMatchObject({ data: { group: null } }),
  },
  {
    name: 'banFromGroup (a member)',
    op: (w) => ({ q: M.ban, v: { g: w.group, u: w.users.member2.id } }),
    expect: moderation,
    check: async (w) => {
      expect((await groupAs(w, w.users.owner)).bannedUsers.map((u: { id: string }) => u.id).sort()).toEqual([w.users.banned.id, w.users.member2.id].sort());
      expect(codeOf(await run(w.b, M.add, { g: w.group, u: w.users.member2.id }, w.users.owner))).toBe('CONFLICT');
    },
  },
  {
    name: 'unbanFromGroup',
    op: (w) => ({ q: M.unban, v: { g: w.group, u: w.users.banned.id } }),
    expect: moderation,
    check: async (w) => expect((await ok(run(w.b, M.add, { g: w.group, u: w.users.banned.id }, w.users.owner))).addGroupMember.memberCount).toBe(7),
  },
  {
    name: 'inviteToGroup (an outsider)',
    op: (w) => ({ q: M.invite, v: { g: w.group, u: w.users.outsider.id } }),
    // The outsider blocks `blocked`: refused as any invitation, nothing written.
    expect: { ...moderation, outsider: 'NOT_FOUND', blocked: 'FORBIDDEN' },
    check: async (w) => expect((await groupAs(w, w.users.outsider)).myRole).toBeNull(),
  },
  {
    name: 'setSlowMode',
    op: (w) => ({ q: M.slow, v: { g: w.group, s: 30 } }),
    expect: moderation,
    check: async (w) => expect((await groupAs(w, w.users.member)).slowModeSeconds).toBe(30),
  },
  {
    name: 'renameGroup',
    op: (w) => ({ q: M.rename, v: { g: w.group, n: 'Renamed' } }),
    expect: moderation,
    check: async (w) => expect((await groupAs(w, w.users.member)).name).toBe('Renamed'),
  },
  {
    // Who may is told before what is wrong with the value.
    name: 'setSlowMode (a bad value)',
    op: (w) => ({ q: M.slow, v: { g: w.group, s: -1 } }),
    expect: { ...moderation, owner: 'BAD_USER_INPUT', admin: 'BAD_USER_INPUT' },
  },
  {
    name: 'renameGroup (a bad name)',
    op: (w) => ({ q: M.rename, v: { g: w.group, n: '   ' } }),
    expect: { ...moderation, owner: 'BAD_USER_INPUT', admin: 'BAD_USER_INPUT' },
  },
  {
    name: 'addGroupMember (an outsider)',
    op: (w) => ({ q: M.add, v: { g: w.group, u: w.users.outsider.id } }),
    // The outsider blocks `blocked`: refused as an invitation would be.
    expect: { ...moderation, blocked: 'FORBIDDEN' },
    check: async (w) => expect((await groupAs(w, w.users.outsider)).myRole).toBe('MEMBER'),
  },
  {
    name: "deleteMessage (another member's)",
    op: (w) => ({ q: M.deleteMessage, v: { m: w.message } }),
    expect: { owner: 'ok', admin: 'ok', member: 'FORBIDDEN', banned: 'NOT_FOUND', outsider: 'NOT_FOUND', invitee: 'NOT_FOUND' },
    check: async (w) => expect(await sql(w.a.env.DATABASE_URL!, 'select 1 from messages where id = $1 and deleted_at is not null', [w.message])).toHaveLength(1),
  },
  {
    name: 'acceptGroupInvite',
    op: (w) => ({ q: M.accept, v: { g: w.group } }),
    expect: { owner: 'NOT_FOUND', admin: 'NOT_FOUND', member: 'NOT_FOUND', banned: 'NOT_FOUND', outsider: 'NOT_FOUND', invitee: 'ok' },
    check: async (w) => expect((await groupAs(w, w.users.invitee)).myRole).toBe('MEMBER'),
  },
  {
    name: 'declineGroupInvite',
    op: (w) => ({ q: M.decline, v: { g: w.group } }),
    expect: { owner: 'NOT_FOUND', admin: 'NOT_FOUND', member: 'NOT_FOUND', banned: 'NOT_FOUND', outsider: 'NOT_FOUND', invitee: 'ok' },
    check: async (w) => expect(await run(w.a, GROUP, { id: w.group }, w.users.invitee)).toMatchObject({ data: { group: null } }),
  },
  {
    name: 'joinGroup (private)',
    op: (w) => ({ q: M.join, v: { g: w.group } }),
    // Members: already in, nothing changes (checked as a refusal would be, below).
    expect: { owner: 'ok', admin: 'ok', member: 'ok', banned: 'NOT_FOUND', outsider: 'NOT_FOUND', invitee: 'ok' },
    check: async (w, actor) => expect((await groupAs(w, w.users[actor])).myRole).toBe(actor === 'owner' ? 'OWNER' : actor === 'admin' || actor === 'blocked' ? 'ADMIN' : 'MEMBER'),
  },
  {
    name: 'deleteGroup',
    op: (w) => ({ q: M.del, v: { g: w.group } }),
    expect: { owner: 'ok', admin: 'FORBIDDEN', member: 'FORBIDDEN', banned: 'NOT_FOUND', outsider: 'NOT_FOUND', invitee: 'FORBIDDEN' },
  },
];

describeRedis('group roles', () => {
  // One pair of instances for the suite (two starts cost ~1 s a test): each test builds its own
  // groups and users, and a refusal compares the whole database before and after.
  let a: TestServer;
  let b: TestServer;
  beforeAll(async () => {
    a = await createTestServer({}, { suite: true });
    b = await createTestServer({}, { clean: false, suite: true });
  });
  afterAll(async () => {
    await Promise.all([a?.dispose(), b?.dispose()]);
  });

  describe('authorization matrix (two instances on one Redis)', () => {
    for (const c of CASES) {
      it(`should answer ${c.name} for every role as the matrix says`, async () => {
        const answer = (actor: Role): Answer => (actor === 'blocked' ? (c.expect.blocked ?? c.expect.admin) : c.expect[actor]);
        // Refusals share one group (each is checked to change nothing); a success gets a fresh one, all built at once.
        const [shared, ...fresh] = await Promise.all([world(a, b), ...ROLES.filter((r) => answer(r) === 'ok').map(() => world(a, b))]);
        for (const actor of ROLES) {
          const want = answer(actor);
          const w = want === 'ok' ? fresh.shift()! : shared;
          const { q, v } = c.op(w);
          if (want === 'ok') {
            await ok(run(b, q, v, w.users[actor]));
            await c.check?.(w, actor);
          } else {
            expect([actor, await refused(w, q, v, w.users[actor])]).toEqual([actor, want]);
          }
        }
      });
    }

    it('should refuse anonymous callers every new operation, changing nothing', async () => {
      const w = await world(a, b);
      const before = await state(a);
      for (const c of CASES) {
        const { q, v } = c.op(w);
        expect([c.name, codeOf(await gql(b.url, q, v))]).toEqual([c.name, 'UNAUTHENTICATED']);
      }
      expect(await state(a)).toEqual(before);
    });
  });

  describe('rules between roles', () => {
    it("should answer each field of a mutation with the roles the fields before it left, not the first field's", async () => {
      const w = await world(a, b, { isPrivate: false });
      const { owner, member } = w.users;
      // Handed over in the second field: the first had read the group's roles (an outside probe: myRole OWNER beside owner: the heir).
      const handed = await ok(
        gql(a.url, 'mutation($g: ID!, $u: ID!) { m1: renameGroup(groupId: $g, name: "Handed over") { myRole } m2: setGroupRole(groupId: $g, userId: $u, role: OWNER) { myRole owner { id } } }', { g: w.group, u: member.id }, owner.token),
      );
      expect([handed.m1.myRole, handed.m2.myRole, handed.m2.owner.id]).toEqual(['OWNER', 'ADMIN', member.id]);
      // An owner out and in again in one document: the group went to the other member meanwhile.
      const [founder, heir] = [await signup(a.url), await signup(a.url)];
      const g = (await ok(gql(a.url, 'mutation { createGroup(name: "Founded", isPrivate: false) { id } }', {}, founder.token))).createGroup.id;
      await ok(gql(a.url, 'mutation($g: ID!) { joinGroup(groupId: $g) { id } }', { g }, heir.token));
      const again = await ok(gql(a.url, 'mutation($g: ID!) { j1: joinGroup(groupId: $g) { myRole } l: leaveGroup(groupId: $g) j2: joinGroup(groupId: $g) { myRole owner { id } } }', { g }, founder.token));
      expect([again.j1.myRole, again.l, again.j2.myRole, again.j2.owner.id]).toEqual(['OWNER', true, 'MEMBER', heir.id]);
    });

    it('should let no admin remove or ban the owner or another admin, and nobody themselves', async () => {
      const w = await world(a, b);
      const { owner, admin, admin2, member } = w.users;
      for (const q of [M.remove, M.ban]) {
        expect(await refused(w, q, { g: w.group, u: owner.id }, admin)).toBe('FORBIDDEN');
        expect(await refused(w, q, { g: w.group, u: admin2.id }, admin)).toBe('FORBIDDEN');
        expect(await refused(w, q, { g: w.group, u: admin.id }, admin)).toBe('BAD_USER_INPUT');
        expect(await refused(w, q, { g: w.group, u: owner.id }, owner)).toBe('BAD_USER_INPUT');
        expect(await refused(w, q, { g: w.group, u: 'not-an-id' }, owner)).toBe('NOT_FOUND');
        expect(await refused(w, q, { g: '00000000-0000-4000-8000-000000000000', u: member.id }, owner)).toBe('NOT_FOUND');
      }
      expect(await refused(w, M.remove, { g: w.group, u: w.users.outsider.id }, owner)).toBe('NOT_FOUND');
      // Only the owner manages roles, and changes their own only by handing ownership over.
      expect(await refused(w, M.setRole, { g: w.group, u: member.id, r: 'ADMIN' }, admin)).toBe('FORBIDDEN');
      expect(await refused(w, M.setRole, { g: w.group, u: owner.id, r: 'MEMBER' }, owner)).toBe('BAD_USER_INPUT');
      expect(await refused(w, M.setRole, { g: w.group, u: w.users.outsider.id, r: 'ADMIN' }, owner)).toBe('NOT_FOUND');
      expect(await refused(w, M.setRole, { g: w.group, u: w.users.invitee.id, r: 'ADMIN' }, owner)).toBe('NOT_FOUND');
      // The owner does remove an admin.
      expect((await ok(run(b, M.remove, { g: w.group, u: admin2.id }, owner))).removeGroupMember.memberCount).toBe(5);
    });

    it('should answer an outsider of a public group FORBIDDEN for every moderation, NOT_FOUND for its messages', async () => {
      const w = await world(a, b, { isPrivate: false });
      const { outsider, member } = w.users;
      for (const c of CASES.filter((x) => !['acceptGroupInvite', 'declineGroupInvite', 'joinGroup (private)'].includes(x.name))) {
        const { q, v } = c.op(w);
        const want = c.name.startsWith('deleteMessage') ? 'NOT_FOUND' : 'FORBIDDEN';
        expect([c.name, await refused(w, q, v, outsider)]).toEqual([c.name, want]);
      }
      expect(await refused(w, M.setRole, { g: w.group, u: outsider.id, r: 'ADMIN' }, member)).toBe('FORBIDDEN');
    });

    it('should keep a banned user out (join, add, invite) until unbanned, and refuse bad slow modes and invitations', async () => {
      const w = await world(a, b, { isPrivate: false });
      const { owner, admin, banned, member, outsider } = w.users;
      expect(await refused(w, M.join, { g: w.group }, banned)).toBe('FORBIDDEN');
      expect(await refused(w, M.add, { g: w.group, u: banned.id }, admin)).toBe('CONFLICT');
      expect(await refused(w, M.invite, { g: w.group, u: banned.id }, admin)).toBe('CONFLICT');
      expect(await refused(w, M.invite, { g: w.group, u: member.id }, admin)).toBe('CONFLICT');
      expect(await refused(w, M.invite, { g: w.group, u: '00000000-0000-4000-8000-000000000000' }, admin)).toBe('NOT_FOUND');
      for (const s of [-1, 21601]) expect(await refused(w, M.slow, { g: w.group, s }, owner)).toBe('BAD_USER_INPUT');
      // Banning someone who is not a member keeps them out too.
      await ok(run(b, M.ban, { g: w.group, u: outsider.id }, admin));
      expect(await refused(w, M.join, { g: w.group }, outsider)).toBe('FORBIDDEN');
      // Unbanning is aimed at a user, as the other moderations are: none such is NOT_FOUND.
      expect(await refused(w, M.unban, { g: w.group, u: '00000000-0000-4000-8000-000000000000' }, admin)).toBe('NOT_FOUND');
      await ok(run(b, M.unban, { g: w.group, u: banned.id }, admin));
      expect((await ok(run(b, M.join, { g: w.group }, banned))).joinGroup.myRole).toBe('MEMBER');
      // A banned account that is deleted leaves the list (no one is left to unban).
      await ok(gql(a.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: outsider.password }, outsider.token));
      expect((await ok(run(b, GROUP, { id: w.group }, owner))).group.bannedUsers).toEqual([]);
      // So does an invited account's pending invitation (the account's row stays, anonymized: nothing goes by cascade).
      const { invitee } = w.users;
      await ok(gql(a.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: invitee.password }, invitee.token));
      expect(await sql(a.env.DATABASE_URL!, 'select count(*)::int as n from group_invites where user_id = $1', [invitee.id])).toEqual([{ n: 0 }]);
    });

    it('should refuse an invitation, or an addition, from a user the invitee blocks as any refusal, and take it once unblocked', async () => {
      const w = await world(a, b);
      const { blocked, outsider, owner, admin } = w.users;
      const before = await state(a);
      const r = await run(b, M.invite, { g: w.group, u: outsider.id }, blocked);
      expect([codeOf(r), r.errors![0].message]).toEqual(['FORBIDDEN', 'This user does not accept your invitation.']);
      const added = await run(b, M.add, { g: w.group, u: outsider.id }, blocked);
      expect([codeOf(added), added.errors![0].message]).toEqual(['FORBIDDEN', 'This user does not accept your invitation.']);
      expect(await state(a)).toEqual(before);
      // Whoever else invites them is not refused; nor is an inviter who blocks the invitee (their own choice).
      await ok(run(b, BLOCK, { u: outsider.id }, admin));
      expect((await ok(run(b, M.invite, { g: w.group, u: outsider.id }, admin))).inviteToGroup).toBe(true);
      await ok(run(b, M.decline, { g: w.group }, outsider));
      await ok(run(b, 'mutation($u: ID!) { unblockUser(userId: $u) }', { u: blocked.id }, outsider));
      expect((await ok(run(b, M.invite, { g: w.group, u: outsider.id }, blocked))).inviteToGroup).toBe(true);
      expect((await groupAs(w, owner)).memberCount).toBe(6);
    });

    it("should list each group's myRole for the viewer (null where invited only)", async () => {
      const w = await world(a, b);
      const mine = (await ok(run(b, M.create, { n: 'Mine', p: true }, w.users.admin))).createGroup.id;
      const other = (await ok(run(b, M.create, { n: 'Other', p: false }, w.users.owner))).createGroup.id;
      const list = async (u: TestUser) =>
        Object.fromEntries((await ok(run(b, 'query { groups(first: 50) { edges { node { id myRole } } } }', {}, u))).groups.edges.map((e: { node: { id: string; myRole: string | null } }) => [e.node.id, e.node.myRole]));
      expect(await list(w.users.admin)).toMatchObject({ [w.group]: 'ADMIN', [mine]: 'OWNER', [other]: null });
      expect(await list(w.users.invitee)).toMatchObject({ [w.group]: null, [other]: null });
      expect(await list(w.users.outsider)).not.toHaveProperty(w.group);
    });

    it('should hand ownership over: the old owner becomes an ADMIN and manages roles no more', async () => {
      const w = await world(a, b);
      const { owner, admin, member } = w.users;
      const events = await listen(b, member, EVENTS);
      const r = (await ok(run(b, M.setRole, { g: w.group, u: admin.id, r: 'OWNER' }, owner))).setGroupRole;
      expect(r).toMatchObject({ myRole: 'ADMIN', owner: { id: admin.id } });
      expect((await events.nth(1)).groupEvent).toMatchObject({ kind: 'OWNER_CHANGED', user: { id: admin.id } });
      const roles = (await groupAs(w, member)).members.edges.map((e: { role: string; node: { id: string } }) => [e.node.id, e.role]);
      expect(roles).toContainEqual([admin.id, 'OWNER']);
      expect(roles).toContainEqual([owner.id, 'ADMIN']);
      expect(await refused(w, M.setRole, { g: w.group, u: member.id, r: 'ADMIN' }, owner)).toBe('FORBIDDEN');
      // The new owner may now remove the old one, an admin.
      await ok(run(a, M.remove, { g: w.group, u: owner.id }, admin));
    });

    it("should give a deleting owner's group to the oldest admin, else the oldest member", async () => {
      const w = await world(a, b);
      const { owner, admin, member } = w.users;
      const events = await listen(b, member, EVENTS);
      await ok(gql(a.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: owner.password }, owner.token));
      await eventually(() => events.values.some((v) => v.groupEvent.kind === 'OWNER_CHANGED'));
      expect(events.values.find((v) => v.groupEvent.kind === 'OWNER_CHANGED').groupEvent.user.id).toBe(admin.id);
      expect((await groupAs(w, admin)).myRole).toBe('OWNER');
      // No admin left: the oldest member takes it.
      const solo = (await ok(run(a, M.create, { n: 'Solo', p: false }, member))).createGroup.id;
      const [x, y] = [await signup(a.url), await signup(a.url)];
      await ok(run(a, M.join, { g: solo }, x));
      await ok(run(a, M.join, { g: solo }, y));
      await events.ws.dispose(); // their own socket would be closed by the deletion
      await ok(gql(a.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: member.password }, member.token));
      expect((await ok(run(a, GROUP, { id: solo }, y))).group.owner.id).toBe(x.id);
    });
  });

  describe('live events and routing', () => {
    it("should stop a removed or banned member's sockets receiving the group at once, on every instance", async () => {
      const w = await world(a, b);
      const { owner, admin, member, member2 } = w.users;
      const conversation = 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }';
      // The two targets listen on B (alone there for this group); the owner on A.
      const onB = [await listen(b, member, conversation, { g: w.group }), await listen(b, member2, conversation, { g: w.group })];
      const eventsB = [await listen(b, member, EVENTS), await listen(b, member2, EVENTS)];
      const ownerSub = await listen(a, owner, conversation, { g: w.group });
      expect(b.services.pubsub.takenChannels()).toContain(`parley.conv:g:${w.group}`);
      await sendMessage(a.url, owner.token, { groupId: w.group, content: 'before' });
      for (const s of onB) await s.nth(1);
      // Removed and banned through A; B learns it from Redis.
      await ok(run(a, M.remove, { g: w.group, u: member.id }, admin));
      await ok(run(a, M.ban, { g: w.group, u: member2.id }, admin));
      expect((await eventsB[0].nth(1)).groupEvent).toMatchObject({ kind: 'MEMBER_REMOVED', user: { id: member.id }, group: null });
      // member2 was told of member's removal first, as a member.
      expect((await eventsB[1].nth(2)).groupEvent).toMatchObject({ kind: 'MEMBER_BANNED', user: { id: member2.id }, group: null });
      expect(eventsB[1].values[0].groupEvent).toMatchObject({ kind: 'MEMBER_REMOVED', user: { id: member.id } });
      await eventually(() => !b.services.pubsub.takenChannels().includes(`parley.conv:g:${w.group}`));
      expect(b.services.memberships.localMembers('group', w.group)).toBeUndefined();
      await sendMessage(a.url, owner.token, { groupId: w.group, content: 'after' });
      await ownerSub.nth(2);
      await sleep(200);
      for (const s of onB) expect(s.values.map((v) => v.messageAdded.content)).toEqual(['before']);
      // Nor can they send or read.
      expect(codeOf(await run(b, M.send, { g: w.group, c: 'hi' }, member))).toBe('NOT_FOUND');
      expect(codeOf(await run(b, M.send, { g: w.group, c: 'hi' }, member2))).toBe('NOT_FOUND');
    });

    it('should tell the invitee live, on another instance, and let them see the group until they answer', async () => {
      const w = await world(a, b);
      const { owner, outsider, member } = w.users;
      const theirs = await listen(b, outsider, EVENTS);
      const members = await listen(a, member, EVENTS);
      await ok(run(a, M.invite, { g: w.group, u: outsider.id }, owner));
      expect((await theirs.nth(1)).groupEvent).toMatchObject({ kind: 'INVITED', user: { id: outsider.id }, group: { id: w.group, name: 'Rope team' } });
      expect((await members.nth(1)).groupEvent).toMatchObject({ kind: 'INVITED', user: { id: outsider.id } });
      // Inviting again changes nothing and tells no one.
      const before = await state(a);
      expect((await ok(run(b, M.invite, { g: w.group, u: outsider.id }, owner))).inviteToGroup).toBe(true);
      expect(await state(a)).toEqual(before);
      // The invitee sees the group but not its messages.
      expect(codeOf(await gql(b.url, 'query($g: ID!) { history(conversation: { groupId: $g }) { totalCount } }', { g: w.group }, outsider.token))).toBe('NOT_FOUND');
      expect((await ok(run(b, M.accept, { g: w.group }, outsider))).acceptGroupInvite.myRole).toBe('MEMBER');
      expect((await members.nth(2)).groupEvent).toMatchObject({ kind: 'MEMBER_JOINED', user: { id: outsider.id } });
    });

    it('should tell an invitee, on another instance, of the group renamed or deleted before they answer, and no outsider', async () => {
      const w = await world(a, b);
      const { owner, invitee, outsider } = w.users;
      const theirs = await listen(b, invitee, EVENTS);
      const others = await listen(b, outsider, EVENTS);
      await ok(run(a, M.rename, { g: w.group, n: 'Base camp' }, owner));
      expect((await theirs.nth(1)).groupEvent).toMatchObject({ kind: 'RENAMED', groupId: w.group, group: { id: w.group, name: 'Base camp' } });
      await ok(run(a, M.del, { g: w.group }, owner));
      expect((await theirs.nth(2)).groupEvent).toMatchObject({ kind: 'DELETED', groupId: w.group, group: null });
      await sleep(200);
      expect(others.values).toEqual([]);
    });

    it('should send a member who blocks another every groupEvent about them, and let each moderate the other', async () => {
      const w = await world(a, b);
      const { owner, member, member2 } = w.users;
      await ok(run(a, BLOCK, { u: member2.id }, member));
      const events = await listen(b, member, EVENTS);
      // The blocked member becomes an admin and moderates: the blocker is told each change.
      await ok(run(a, M.setRole, { g: w.group, u: member2.id, r: 'ADMIN' }, owner));
      await ok(run(a, M.slow, { g: w.group, s: 10 }, member2));
      await ok(run(b, M.invite, { g: w.group, u: w.users.outsider.id }, member2));
      // Then the other way round: the blocker, made admin, removes the blocked one (demoted first: admins remove members only).
      await ok(run(a, M.setRole, { g: w.group, u: member2.id, r: 'MEMBER' }, owner));
      await ok(run(a, M.setRole, { g: w.group, u: member.id, r: 'ADMIN' }, owner));
      expect((await ok(run(b, M.remove, { g: w.group, u: member2.id }, member))).removeGroupMember.memberCount).toBe(5);
      await events.nth(6);
      expect(events.values.map((v) => [v.groupEvent.kind, v.groupEvent.user?.id ?? null])).toEqual([
        ['ROLE_CHANGED', member2.id],
        ['SLOW_MODE_CHANGED', expect.anything()],
        ['INVITED', w.users.outsider.id],
        ['ROLE_CHANGED', member2.id],
        ['ROLE_CHANGED', member.id],
        ['MEMBER_REMOVED', member2.id],
      ]);
    });

    it('should send every change to the members as a groupEvent', async () => {
      const w = await world(a, b);
      const { owner, admin, member } = w.users;
      const events = await listen(b, member, EVENTS);
      await ok(run(a, M.setRole, { g: w.group, u: member.id, r: 'ADMIN' }, owner));
      await ok(run(a, M.slow, { g: w.group, s: 10 }, admin));
      await ok(run(a, M.rename, { g: w.group, n: 'Ropes' }, admin));
      await ok(run(a, M.remove, { g: w.group, u: w.users.member2.id }, admin));
      await events.nth(4);
      expect(events.values.map((v) => v.groupEvent.kind)).toEqual(['ROLE_CHANGED', 'SLOW_MODE_CHANGED', 'RENAMED', 'MEMBER_REMOVED']);
      // Setting what is already set tells nothing.
      await ok(run(a, M.slow, { g: w.group, s: 10 }, admin));
      await ok(run(a, M.setRole, { g: w.group, u: member.id, r: 'ADMIN' }, owner));
      await sleep(200);
      expect(events.values).toHaveLength(4);
    });

    it("should deliver a group's events in commit order on every instance when a later change's publish overtakes an earlier one's", async () => {
      const w = await world(a, b);
      const { owner, member, member2 } = w.users;
      const events = await listen(b, member, EVENTS);
      // B's line of the group starts with the first event it hears (nothing says which came before one).
      await ok(run(a, M.setRole, { g: w.group, u: member2.id, r: 'ADMIN' }, owner));
      await events.nth(1);
      // A's publish of the rename is held (a slow instance) while B's of the next change goes out.
      const hold = holdNextPublishOf(a.services.pubsub, Topic.GroupEvent);
      const renamed = run(a, M.rename, { g: w.group, n: 'Second rope' }, owner);
      await eventually(() => hold.held());
      await ok(run(b, M.setRole, { g: w.group, u: member2.id, r: 'MEMBER' }, owner));
      await sleep(150);
      hold.release();
      await ok(renamed);
      await events.nth(3);
      hold.restore();
      expect(events.values.map((v) => v.groupEvent.kind)).toEqual(['ROLE_CHANGED', 'RENAMED', 'ROLE_CHANGED']);
    });

    it('should show in each rename and slow mode change the value it set, when the next change lands before it is delivered', async () => {
      const w = await world(a, b);
      const { owner, member } = w.users;
      const events = await listen(b, member, 'subscription { groupEvent { kind group { name slowModeSeconds } } }');
      await ok(run(a, M.slow, { g: w.group, s: 5 }, owner));
      await events.nth(1);
      // Each change's publish held on A (a slow instance) while the next one commits on B.
      for (const [first, next] of [
        [{ q: M.slow, v: { s: 10 } }, { q: M.slow, v: { s: 20 } }],
        [{ q: M.rename, v: { n: 'First name' } }, { q: M.rename, v: { n: 'Second name' } }],
      ]) {
        const hold = holdNextPublishOf(a.services.pubsub, Topic.GroupEvent);
        const held = run(a, first.q, { g: w.group, ...first.v }, owner);
        await eventually(() => hold.held());
        await ok(run(b, next.q, { g: w.group, ...next.v }, owner));
        hold.release();
        await ok(held);
        hold.restore();
      }
      await events.nth(5);
      expect(events.values.map((v) => [v.groupEvent.kind, v.groupEvent.group.slowModeSeconds, v.groupEvent.group.name])).toEqual([
        ['SLOW_MODE_CHANGED', 5, expect.any(String)],
        ['SLOW_MODE_CHANGED', 10, expect.any(String)],
        ['SLOW_MODE_CHANGED', 20, expect.any(String)],
        ['RENAMED', 20, 'First name'],
        ['RENAMED', 20, 'Second name'],
      ]);
    });
  });

  describe('slow mode', () => {
    it('should let a member send once per interval on any instance, say when, and exempt the owner and admins', async () => {
      const w = await world(a, b, { isPrivate: false });
      const { owner, admin, member } = w.users;
      await ok(run(a, M.slow, { g: w.group, s: 2 }, admin));
      await ok(run(a, M.send, { g: w.group, c: 'one' }, member));
      const before = await state(a);
      const r = await run(b, M.send, { g: w.group, c: 'two' }, member);
      expect(codeOf(r)).toBe('RATE_LIMITED');
      expect(r.errors![0].message).toMatch(/Slow mode: one message every 2 s here; you can send again in [12] s/);
      expect(r.errors![0].extensions!.retryAfter).toBeGreaterThanOrEqual(1);
      expect(await state(a)).toEqual(before);
      for (const u of [owner, admin, owner, admin]) await ok(run(b, M.send, { g: w.group, c: 'free' }, u));
      await sleep(2100);
      await ok(run(b, M.send, { g: w.group, c: 'three' }, member));
      // Off again: no limit.
      await ok(run(a, M.slow, { g: w.group, s: 0 }, owner));
      await ok(run(a, M.send, { g: w.group, c: 'four' }, member));
      await ok(run(b, M.send, { g: w.group, c: 'five' }, member));
    });

    it("should keep a member's interval running across leaving and joining again, or being removed and added back", async () => {
      const w = await world(a, b, { isPrivate: false });
      const { owner, member, member2 } = w.users;
      await ok(run(a, M.slow, { g: w.group, s: 60 }, owner));
      await ok(run(a, M.send, { g: w.group, c: 'one' }, member));
      expect(codeOf(await run(b, M.send, { g: w.group, c: 'two' }, member))).toBe('RATE_LIMITED');
      await ok(run(a, M.leave, { g: w.group }, member));
      await ok(run(b, M.join, { g: w.group }, member));
      expect(codeOf(await run(b, M.send, { g: w.group, c: 'after rejoining' }, member))).toBe('RATE_LIMITED');
      await ok(run(a, M.send, { g: w.group, c: 'three' }, member2));
      await ok(run(a, M.remove, { g: w.group, u: member2.id }, owner));
      await ok(run(a, M.add, { g: w.group, u: member2.id }, owner));
      expect(codeOf(await run(a, M.send, { g: w.group, c: 'after coming back' }, member2))).toBe('RATE_LIMITED');
      const stored = await sql(a.env.DATABASE_URL!, 'select content from messages where group_id = $1 order by created_at', [w.group]);
      // The world's set-up sent a message of its own before these.
      expect(stored.map((m) => m.content).slice(-2)).toEqual(['one', 'three']);
    });

    it('should let one of many concurrent sends of a member through, on two instances', async () => {
      const w = await world(a, b, { isPrivate: false });
      const { owner, member, member2 } = w.users;
      await ok(run(a, M.slow, { g: w.group, s: 60 }, owner));
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) => run(i % 2 ? a : b, M.send, { g: w.group, c: `burst ${i}` }, i % 3 === 2 ? member2 : member)),
      );
      const sent = (u: TestUser) => results.filter((r, i) => (i % 3 === 2 ? member2 : member) === u && !r.errors);
      expect(sent(member)).toHaveLength(1);
      expect(sent(member2)).toHaveLength(1);
      expect(results.filter((r) => r.errors).map(codeOf)).toEqual(Array(10).fill('RATE_LIMITED'));
      const [{ n }] = await sql(a.env.DATABASE_URL!, "select count(*)::int as n from messages where content like 'burst %'");
      expect(n).toBe(2);
    });
  });
});

describeRedis('lobby roles', () => {
  it('should make LOBBY_ADMINS the lobby admins: they remove and ban there, nobody manages its roles or leaves it', async () => {
    const env = { LOBBY_ADMINS: 'Lobby_Boss, lobby_deputy' };
    const a = await createTestServer(env);
    const b = await createTestServer(env, { clean: false });
    const boss = await signup(a.url, { username: 'lobby_boss' });
    const deputy = await signup(b.url, { username: 'lobby_deputy' });
    const [member, other] = [await signup(a.url), await signup(b.url)];
    const lobby = await lobbyOf(a.url, member.token);
    const g = (await ok(gql(b.url, GROUP, { id: lobby }, boss.token))).group;
    expect(g.myRole).toBe('ADMIN');
    // No owner: the contract's non-null owner is the system user.
    expect(g.owner.id).toBe('00000000-0000-0000-0000-000000000000');
    // A client showing the owner reads them as it reads any user: as `user`, so `userStatus` (it was NOT_FOUND).
    const sys = await ok(gql(a.url, 'query($u: ID!) { user(id: $u) { username status } userStatus(userId: $u) { status lastSeenAt user { username } } }', { u: g.owner.id }, member.token));
    expect(sys).toEqual({ user: { username: 'parley', status: 'OFFLINE' }, userStatus: { status: 'OFFLINE', lastSeenAt: null, user: { username: 'parley' } } });
    const roles = Object.fromEntries(g.members.edges.map((e: { role: string; node: { id: string } }) => [e.node.id, e.role]));
    expect(roles).toEqual({ [boss.id]: 'ADMIN', [deputy.id]: 'ADMIN', [member.id]: 'MEMBER', [other.id]: 'MEMBER' });
    const w = { a, b } as World;
    expect(await refused(w, M.remove, { g: lobby, u: other.id }, member)).toBe('FORBIDDEN');
    expect(await refused(w, M.remove, { g: lobby, u: deputy.id }, boss)).toBe('FORBIDDEN');
    expect(await refused(w, M.setRole, { g: lobby, u: member.id, r: 'ADMIN' }, boss)).toBe('FORBIDDEN');
    expect(await refused(w, M.invite, { g: lobby, u: member.id }, boss)).toBe('FORBIDDEN');
    expect(await refused(w, M.rename, { g: lobby, n: 'Mine' }, boss)).toBe('FORBIDDEN');
    expect(await refused(w, M.leave, { g: lobby }, boss)).toBe('FORBIDDEN');
    expect(await refused(w, M.del, { g: lobby }, boss)).toBe('FORBIDDEN');
    // A removed user may come back; a banned one may not.
    await ok(gql(b.url, M.remove, { g: lobby, u: member.id }, boss.token));
    expect((await ok(gql(a.url, M.join, { g: lobby }, member.token))).joinGroup.myRole).toBe('MEMBER');
    await ok(gql(b.url, M.ban, { g: lobby, u: other.id }, deputy.token));
    expect(codeOf(await gql(a.url, M.join, { g: lobby }, other.token))).toBe('FORBIDDEN');
    // Slow mode in the lobby; its admins are exempt.
    await ok(gql(a.url, M.slow, { g: lobby, s: 60 }, boss.token));
    await ok(gql(a.url, M.send, { g: lobby, c: 'one' }, member.token));
    expect(codeOf(await gql(b.url, M.send, { g: lobby, c: 'two' }, member.token))).toBe('RATE_LIMITED');
    await ok(gql(b.url, M.send, { g: lobby, c: 'admin' }, boss.token));
    await ok(gql(b.url, M.send, { g: lobby, c: 'admin again' }, boss.token));
  });

  it("should tell the lobby's members of a signup joining it, and not one removed or banned from it", async () => {
    const env = { LOBBY_ADMINS: 'lobby_boss' };
    const a = await createTestServer(env);
    const b = await createTestServer(env, { clean: false });
    const boss = await signup(a.url, { username: 'lobby_boss' });
    const [member, removed, banned] = [await signup(a.url), await signup(a.url), await signup(a.url)];
    const lobby = await lobbyOf(a.url, member.token);
    await ok(gql(a.url, M.remove, { g: lobby, u: removed.id }, boss.token));
    await ok(gql(a.url, M.ban, { g: lobby, u: banned.id }, boss.token));
    const EVENTS = 'subscription { groupEvent { kind groupId user { id } } }';
    const [onMember, onRemoved, onBanned] = [await listen(a, member, EVENTS), await listen(b, removed, EVENTS), await listen(a, banned, EVENTS)];
    const fresh = await signup(b.url);
    expect((await onMember.nth(1)).groupEvent).toEqual({ kind: 'MEMBER_JOINED', groupId: lobby, user: { id: fresh.id } });
    // A public group's CREATED as a barrier: it reaches everyone, after anything published before it.
    const g = (await ok(gql(a.url, 'mutation { createGroup(name: "Open") { id } }', {}, member.token))).createGroup.id;
    for (const sub of [onRemoved, onBanned]) expect((await sub.nth(1)).groupEvent).toEqual({ kind: 'CREATED', groupId: g, user: { id: member.id } });
  });

  it("should tell the lobby's removals, bans and departures to its members and to the one put out, without listing its members", async () => {
    const env = { LOBBY_ADMINS: 'lobby_boss' };
    const a = await createTestServer(env);
    const b = await createTestServer(env, { clean: false });
    const boss = await signup(a.url, { username: 'lobby_boss' });
    const [member, removed, banned, leaving] = [await signup(a.url), await signup(a.url), await signup(a.url), await signup(b.url)];
    const lobby = await lobbyOf(a.url, member.token);
    const E = 'subscription { groupEvent { kind groupId user { id } } }';
    const [onMember, onRemoved, onBanned] = [await listen(a, member, E), await listen(b, removed, E), await listen(a, banned, E)];
    // What a publishes: the lobby's events name no audience (everyone in it was a list of every member).
    const pubsub = a.services.pubsub;
    const real = pubsub.publishSafe;
    const told: { kind: string; audience: unknown }[] = [];
    pubsub.publishSafe = (async (topic: Topic, payload: never) => {
      if (topic === Topic.GroupEvent) told.push(payload);
      return real.call(pubsub, topic, payload);
    }) as typeof real;
    await ok(gql(a.url, M.remove, { g: lobby, u: removed.id }, boss.token));
    await ok(gql(a.url, M.ban, { g: lobby, u: banned.id }, boss.token));
    await ok(gql(a.url, 'mutation($p: String!) { deleteAccount(password: $p) }', { p: leaving.password }, leaving.token));
    pubsub.publishSafe = real;
    expect(told.map((e) => [e.kind, e.audience])).toEqual([['MEMBER_REMOVED', null], ['MEMBER_BANNED', null], ['MEMBER_LEFT', null]]);
    const ev = (kind: string, user: TestUser, groupId = lobby) => ({ groupEvent: { kind, groupId, user: { id: user.id } } });
    expect([await onMember.nth(1), await onMember.nth(2), await onMember.nth(3)]).toEqual([ev('MEMBER_REMOVED', removed), ev('MEMBER_BANNED', banned), ev('MEMBER_LEFT', leaving)]);
    // A public group's CREATED as a barrier: the ones put out heard their own removal, nothing after it.
    const g = (await ok(gql(a.url, M.create, { n: 'Open after' }, member.token))).createGroup.id;
    expect([await onRemoved.nth(1), await onRemoved.nth(2)]).toEqual([ev('MEMBER_REMOVED', removed), ev('CREATED', member, g)]);
    expect([await onBanned.nth(1), await onBanned.nth(2), await onBanned.nth(3)]).toEqual([ev('MEMBER_REMOVED', removed), ev('MEMBER_BANNED', banned), ev('CREATED', member, g)]);
  });

  it('should refuse a malformed LOBBY_ADMINS or MODERATORS at start', async () => {
    expect(() => loadEnv({ LOBBY_ADMINS: 'ok_name, bad name' })).toThrow(/LOBBY_ADMINS/);
    expect(() => loadEnv({ MODERATORS: 'x' })).toThrow(/MODERATORS/);
    expect(loadEnv({ MODERATORS: ' Mod_One ,mod_one,  ' }).MODERATORS).toEqual(['mod_one']);
  });
});

describeRedis('invitation limits', () => {
  it('should refuse invitations past RATE_LIMIT_GROUP_INVITE with RATE_LIMITED, writing nothing', async () => {
    const s = await createTestServer({ RATE_LIMIT_GROUP_INVITE: '2/1h' });
    const [owner, x, y, z] = await Promise.all([signup(s.url), signup(s.url), signup(s.url), signup(s.url)]);
    const group = (await ok(gql(s.url, M.create, { n: 'Limited', p: true }, owner.token))).createGroup.id;
    // Refusals and an invitation already pending cost nothing.
    for (let i = 0; i < 3; i++) expect(codeOf(await gql(s.url, M.invite, { g: group, u: owner.id }, x.token))).toBe('NOT_FOUND');
    for (let i = 0; i < 3; i++) expect(codeOf(await gql(s.url, M.invite, { g: group, u: owner.id }, owner.token))).toBe('CONFLICT');
    for (const u of [x, x, x, y]) await ok(gql(s.url, M.invite, { g: group, u: u.id }, owner.token));
    const before = await snapshot(s.env.DATABASE_URL!);
    expect(codeOf(await gql(s.url, M.invite, { g: group, u: z.id }, owner.token))).toBe('RATE_LIMITED');
    // Past it, before the invitation looks at what it asks (a member, one already invited).
    for (const u of [owner, x]) expect(codeOf(await gql(s.url, M.invite, { g: group, u: u.id }, owner.token))).toBe('RATE_LIMITED');
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
  });
});

describe('invitation webhooks', () => {
  it('should send an away invitee a GROUP_INVITE event, once per invitation', async () => {
    const receiver = await startReceiver();
    try {
      const s = await createTestServer({ WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: 'whsec_test_0123456789abcdef', WEBHOOK_COALESCE: '0', PRESENCE_GRACE: '0.2' }, { jobs: true });
      const [owner, invitee] = [await signup(s.url), await signup(s.url)];
      const group = (await ok(gql(s.url, M.create, { n: 'Invite only', p: true }, owner.token))).createGroup.id;
      await ok(gql(s.url, M.invite, { g: group, u: invitee.id }, owner.token));
      await ok(gql(s.url, M.invite, { g: group, u: invitee.id }, owner.token));
      await eventually(() => receiver.of(invitee.id).length >= 1, 8000);
      await sleep(1500);
      expect(receiver.of(invitee.id).map((e) => e.body)).toEqual([expect.objectContaining({ kind: 'GROUP_INVITE', conversationId: `g:${group}`, sender: expect.objectContaining({ id: owner.id }) })]);
    } finally {
      await receiver.close();
    }
  });
});

describe('moderation and sends under way', () => {
  it.each(['ban', 'remove'] as const)('should make a %s wait for sends past their check: none is stored after it is answered', async (how) => {
    const s = await createTestServer();
    const [owner, member, watcher] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = (await ok(gql(s.url, M.create, { n: 'Crossing', p: false }, owner.token))).createGroup.id;
    for (const u of [member, watcher]) await ok(gql(s.url, M.join, { g }, u.token));
    const live = await listen(s, watcher, 'subscription { groupEvent { kind } }');
    await ok(gql(s.url, M.send, { g, c: 'first' }, owner.token));
    const added = await listen(s, watcher, 'subscription { messageAdded { content } }');
    // The conversation's head held: the sends pass their membership check and wait to be written.
    const holder = new pg.Client({ connectionString: s.env.DATABASE_URL });
    await holder.connect();
    const at: Record<string, number> = {};
    try {
      await holder.query('begin');
      await holder.query('select 1 from conversation_heads where conversation_key = $1 for update', [`g:${g}`]);
      const texts = ['one', 'two', 'three'];
      const sends = texts.map((c) => gql(s.url, M.send, { g, c }, member.token).then((r) => ((at[c] = performance.now()), r)));
      await eventually(async () => (await sql(s.env.DATABASE_URL!, 'select 1 from pg_locks where not granted')).length >= 1, 5000, 20);
      const moderation = gql(s.url, how === 'ban' ? M.ban : M.remove, { g, u: member.id }, owner.token).then((r) => ((at.moderation = performance.now()), r));
      await sleep(300);
      await holder.query('commit');
      const answers = await Promise.all(sends);
      await ok(moderation);
      // Each send stored was answered before the moderation: it waited for them, as the contract says.
      const stored = answers.filter((r) => !r.errors);
      texts.forEach((c, i) => answers[i].errors || expect(at[c]).toBeLessThan(at.moderation));
      const history = await sql(s.env.DATABASE_URL!, 'select count(*)::int as n from messages where group_id = $1', [g]);
      expect(history).toEqual([{ n: stored.length + 1 }]);
      // And the other members got them before the member went.
      const kind = how === 'ban' ? 'MEMBER_BANNED' : 'MEMBER_REMOVED';
      await eventually(() => live.values.some((v: any) => v.groupEvent.kind === kind), 5000);
      expect(added.values).toHaveLength(stored.length);
    } finally {
      await holder.end();
    }
  });

  /**
   * A group of two with a root message, and a race made certain: `behind` holds `lock` in a
   * transaction of its own, starts `first`, then `then` once `first` waits on a lock, and commits
   * once both wait; `noDeadlock` checks PostgreSQL broke no deadlock in this database meanwhile.
   */
  async function deletionRace(s: TestServer, name: string) {
    const [owner, member] = [await signup(s.url), await signup(s.url)];
    const g = (await ok(gql(s.url, M.create, { n: name, p: false }, owner.token))).createGroup.id;
    await ok(gql(s.url, M.join, { g }, member.token));
    const root = (await ok(gql(s.url, M.send, { g, c: 'root' }, owner.token))).sendMessage.id;
    const deadlocks = async () => Number((await sql(s.env.DATABASE_URL!, 'select deadlocks from pg_stat_database where datname = current_database()'))[0].deadlocks);
    const waiting = (n: number) => eventually(async () => (await sql(s.env.DATABASE_URL!, 'select 1 from pg_locks where not granted')).length >= n, 5000, 20);
    const before = await deadlocks();
    async function behind<A, B>(lock: [string, unknown[]], first: () => Promise<A>, then: () => Promise<B>): Promise<[A, B]> {
      const holder = new pg.Client({ connectionString: s.env.DATABASE_URL });
      await holder.connect();
      try {
        await holder.query('begin');
        await holder.query(...lock);
        const a = first();
        await waiting(1);
        const b = then();
        await waiting(2);
        await sleep(200);
        await holder.query('commit');
        return [await a, await b];
      } finally {
        await holder.end();
      }
    }
    const noDeadlock = async () => {
      // A deadlock is broken by aborting one side (it ran again a second later); PostgreSQL counts it a moment after.
      await sleep(600);
      expect((await deadlocks()) - before).toBe(0);
    };
    return { owner, member, g, root, behind, noDeadlock };
  }
  const REPLY = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }';

  it.each([false, true])('should take a reply\'s member row before the head (alsoInConversation %s): waiting on it behind a deletion, it holds nothing the deletion needs', async (also) => {
    const s = await createTestServer();
    const { owner, member, g, root, behind, noDeadlock } = await deletionRace(s, 'Replying');
    // The member's row held: the deletion queues for it first, then the reply. Released, the
    // deletion takes the rows, then the head: a reply holding the head would wait on it.
    const [deletion, reply] = await behind(
      ['select 1 from group_members where group_id = $1 and user_id = $2 for update', [g, member.id]],
      () => gql(s.url, M.del, { g }, owner.token),
      () => gql(s.url, REPLY, { i: { groupId: g, content: 'late', parentId: root, alsoInConversation: also } }, member.token),
    );
    expect((await ok(Promise.resolve(deletion))).deleteGroup).toBe(true);
    expect(['NOT_FOUND', 'BAD_USER_INPUT']).toContain(codeOf(reply));
    await noDeadlock();
  });

  it("should take turns, not deadlock, between a member's reply also in the conversation and their send in slow mode", async () => {
    const s = await createTestServer();
    const { owner, member, g, root, behind, noDeadlock } = await deletionRace(s, 'Slow replies');
    await ok(gql(s.url, M.slow, { g, s: 1 }, owner.token));
    // Their first message finds the group in slow mode: from then on their sends stamp it in their statement.
    await ok(gql(s.url, M.send, { g, c: 'hello' }, member.token));
    await sleep(1100);
    // The root held: the reply waits for it holding what it took before (the member's row, the
    // head), and their plain send stamps their row as it goes.
    const [reply, send] = await behind(
      ['select 1 from messages where id = $1 for update', [root]],
      () => gql(s.url, REPLY, { i: { groupId: g, content: 'also', parentId: root, alsoInConversation: true } }, member.token),
      () => gql(s.url, M.send, { g, c: 'plain' }, member.token),
    );
    // One of the two within the interval: the other is told to wait.
    expect([codeOf(reply), codeOf(send)].sort()).toEqual(['RATE_LIMITED', undefined].sort());
    await noDeadlock();
  });

  it('should delete a group whose sends wait behind its deletion without a deadlock: they find it gone', async () => {
    const s = await createTestServer();
    const { owner, member, g, root, behind, noDeadlock } = await deletionRace(s, 'Going');
    // The deletion waits for the head first, then the sends: it closes the head before they write.
    // Plain sends, a reply kept in its thread and one also in the conversation: each takes the
    // sender's row before the head, as the deletion takes the members' rows before it.
    const [deletion, sends] = await behind(
      ['select 1 from conversation_heads where conversation_key = $1 for update', [`g:${g}`]],
      () => gql(s.url, M.del, { g }, owner.token),
      () =>
        Promise.all([
          ...['one', 'two'].map((c) => gql(s.url, M.send, { g, c }, member.token)),
          gql(s.url, REPLY, { i: { groupId: g, content: 'kept', parentId: root } }, member.token),
          gql(s.url, REPLY, { i: { groupId: g, content: 'also', parentId: root, alsoInConversation: true } }, member.token),
        ]),
    );
    expect((await ok(Promise.resolve(deletion))).deleteGroup).toBe(true);
    // The group gone, or for a reply its root with it (parentId).
    const codes = sends.map(codeOf);
    expect(codes.slice(0, 2)).toEqual(['NOT_FOUND', 'NOT_FOUND']);
    for (const c of codes.slice(2)) expect(['NOT_FOUND', 'BAD_USER_INPUT']).toContain(c);
    await noDeadlock();
  });
});
