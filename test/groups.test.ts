import { codeOf, gql, listen as listenOn, ok } from './helpers/graphql';
import { createTestServer, type TestServer } from './helpers/server';
import { lobbyOf, signup, type TestUser } from './helpers/factories';
import { snapshot } from './helpers/db';

const CREATE = 'mutation($n: String!, $p: Boolean) { createGroup(name: $n, isPrivate: $p) { id name isPrivate isLobby memberCount owner { id } } }';
const RENAME = 'mutation($g: ID!, $n: String!) { renameGroup(groupId: $g, name: $n) { id name } }';
const DELETE = 'mutation($g: ID!) { deleteGroup(groupId: $g) }';
const JOIN = 'mutation($g: ID!) { joinGroup(groupId: $g) { id memberCount } }';
const ADD = 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id memberCount } }';
const LEAVE = 'mutation($g: ID!) { leaveGroup(groupId: $g) }';
const GROUP = 'query($id: ID!) { group(id: $id) { id name isLobby isPrivate memberCount owner { id username } members(first: 10) { totalCount edges { node { id } } } } }';
const GROUPS = 'query($s: String, $f: Int, $a: String) { groups(search: $s, first: $f, after: $a) { totalCount pageInfo { hasNextPage endCursor } edges { node { id name isLobby } } } }';
const EVENTS = 'subscription { groupEvent { kind groupId user { id } group { id name } } }';

describe('groups', () => {
  it('should put every user in one lobby that no one can leave, rename or delete', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const lobby = await lobbyOf(s.url, a.token);
    expect(await lobbyOf(s.url, b.token)).toBe(lobby);
    const g = (await ok(gql(s.url, GROUP, { id: lobby }, a.token))).group;
    expect(g).toMatchObject({ isLobby: true, isPrivate: false, memberCount: 2 });
    expect(g.members.edges.map((e: any) => e.node.id).sort()).toEqual([a.id, b.id].sort());
    expect(codeOf(await gql(s.url, LEAVE, { g: lobby }, a.token))).toBe('FORBIDDEN');
    expect(codeOf(await gql(s.url, RENAME, { g: lobby, n: 'Mine' }, a.token))).toBe('FORBIDDEN');
    expect(codeOf(await gql(s.url, DELETE, { g: lobby }, a.token))).toBe('FORBIDDEN');
  });

  it('should create the lobby once when several instances start together', async () => {
    const first = await createTestServer();
    await Promise.all([1, 2, 3].map(() => createTestServer({}, { clean: false })));
    const u = await signup(first.url);
    const all = await ok(gql(first.url, GROUPS, { f: 100 }, u.token));
    expect(all.groups.edges.filter((e: any) => e.node.isLobby)).toHaveLength(1);
  });

  it('should enforce the authorization matrix: owner, member, non-member, anonymous', async () => {
    const s = await createTestServer();
    const [owner, member, outsider, target] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = (await ok(gql(s.url, CREATE, { n: 'Climbers' }, owner.token))).createGroup;
    expect(g).toMatchObject({ name: 'Climbers', isPrivate: false, isLobby: false, memberCount: 1, owner: { id: owner.id } });
    await ok(gql(s.url, JOIN, { g: g.id }, member.token));
    const before = await snapshot(s.env.DATABASE_URL!);
    for (const who of [member, outsider]) {
      expect(codeOf(await gql(s.url, RENAME, { g: g.id, n: 'X' }, who.token))).toBe('FORBIDDEN');
      expect(codeOf(await gql(s.url, DELETE, { g: g.id }, who.token))).toBe('FORBIDDEN');
      expect(codeOf(await gql(s.url, ADD, { g: g.id, u: target.id }, who.token))).toBe('FORBIDDEN');
    }
    expect(codeOf(await gql(s.url, LEAVE, { g: g.id }, outsider.token))).toBe('FORBIDDEN');
    for (const [q, v] of [
      [RENAME, { g: g.id, n: 'X' }],
      [DELETE, { g: g.id }],
      [ADD, { g: g.id, u: target.id }],
      [JOIN, { g: g.id }],
      [LEAVE, { g: g.id }],
      [CREATE, { n: 'Anon' }],
      [GROUP, { id: g.id }],
      [GROUPS, {}],
    ] as const) {
      expect(codeOf(await gql(s.url, q, v))).toBe('UNAUTHENTICATED');
    }
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    expect((await ok(gql(s.url, RENAME, { g: g.id, n: 'Alpinists' }, owner.token))).renameGroup.name).toBe('Alpinists');
    expect((await ok(gql(s.url, ADD, { g: g.id, u: target.id }, owner.token))).addGroupMember.memberCount).toBe(3);
    expect(codeOf(await gql(s.url, ADD, { g: g.id, u: '00000000-0000-4000-8000-000000000000' }, owner.token))).toBe('NOT_FOUND');
    expect((await ok(gql(s.url, DELETE, { g: g.id }, owner.token))).deleteGroup).toBe(true);
    expect((await ok(gql(s.url, GROUP, { id: g.id }, member.token))).group).toBeNull();
    expect(codeOf(await gql(s.url, JOIN, { g: g.id }, member.token))).toBe('NOT_FOUND');
  });

  it('should hide private groups from non-members and let only the owner add to them', async () => {
    const s = await createTestServer();
    const [owner, friend, outsider] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = (await ok(gql(s.url, CREATE, { n: 'Secret', p: true }, owner.token))).createGroup;
    expect((await ok(gql(s.url, GROUP, { id: g.id }, outsider.token))).group).toBeNull();
    expect((await ok(gql(s.url, GROUPS, { s: 'Secret' }, outsider.token))).groups.totalCount).toBe(0);
    expect(codeOf(await gql(s.url, JOIN, { g: g.id }, outsider.token))).toBe('NOT_FOUND');
    expect(codeOf(await gql(s.url, RENAME, { g: g.id, n: 'Y' }, outsider.token))).toBe('NOT_FOUND');
    await ok(gql(s.url, ADD, { g: g.id, u: friend.id }, owner.token));
    const seen = (await ok(gql(s.url, GROUP, { id: g.id }, friend.token))).group;
    expect(seen).toMatchObject({ name: 'Secret', memberCount: 2 });
    expect((await ok(gql(s.url, GROUPS, { s: 'secr' }, friend.token))).groups.totalCount).toBe(1);
  });

  it('should hand ownership to the longest-standing member and delete the group with its last member', async () => {
    const s = await createTestServer();
    const [owner, second, third] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = (await ok(gql(s.url, CREATE, { n: 'Relay' }, owner.token))).createGroup;
    await ok(gql(s.url, JOIN, { g: g.id }, second.token));
    await ok(gql(s.url, JOIN, { g: g.id }, third.token));
    await ok(gql(s.url, LEAVE, { g: g.id }, owner.token));
    let now = (await ok(gql(s.url, GROUP, { id: g.id }, third.token))).group;
    expect(now).toMatchObject({ memberCount: 2, owner: { id: second.id } });
    await ok(gql(s.url, LEAVE, { g: g.id }, second.token));
    now = (await ok(gql(s.url, GROUP, { id: g.id }, third.token))).group;
    expect(now.owner.id).toBe(third.id);
    await ok(gql(s.url, LEAVE, { g: g.id }, third.token));
    expect((await ok(gql(s.url, GROUP, { id: g.id }, owner.token))).group).toBeNull();
  });

  it('should search and page groups by name with a total count', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    for (const n of ['Books', 'Board games', 'Boats', 'Cooking']) await ok(gql(s.url, CREATE, { n }, u.token));
    const p1 = await ok(gql(s.url, GROUPS, { s: 'bo', f: 2 }, u.token));
    expect(p1.groups.totalCount).toBe(3);
    expect(p1.groups.edges.map((e: any) => e.node.name)).toEqual(['Board games', 'Boats']);
    const p2 = await ok(gql(s.url, GROUPS, { s: 'bo', f: 2, a: p1.groups.pageInfo.endCursor }, u.token));
    expect(p2.groups.edges.map((e: any) => e.node.name)).toEqual(['Books']);
    expect(p2.groups.pageInfo.hasNextPage).toBe(false);
    expect(codeOf(await gql(s.url, GROUPS, { a: 'bm90LWEtY3Vyc29y' }, u.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, CREATE, { n: '   ' }, u.token))).toBe('BAD_USER_INPUT');
    expect(codeOf(await gql(s.url, CREATE, { n: 'x'.repeat(101) }, u.token))).toBe('BAD_USER_INPUT');
  });
});

describe('group events', () => {
  const listen = (s: TestServer, user: TestUser) => listenOn<any>(s, user, EVENTS);
  /** A public group created now, as a barrier: its CREATED reaches everyone, after anything sent before it. */
  const barrier = async (s: TestServer, owner: TestUser) => (await ok(gql(s.url, CREATE, { n: 'Barrier' }, owner.token))).createGroup.id as string;

  it('should send CREATED of a public group to everyone and the rest to members only', async () => {
    const s = await createTestServer();
    const [owner, member, outsider] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const [evOwner, evMember, evOutsider] = [await listen(s, owner), await listen(s, member), await listen(s, outsider)];
    const g = (await ok(gql(s.url, CREATE, { n: 'Public' }, owner.token))).createGroup;
    await ok(gql(s.url, JOIN, { g: g.id }, member.token));
    await ok(gql(s.url, RENAME, { g: g.id, n: 'Renamed' }, owner.token));
    await ok(gql(s.url, LEAVE, { g: g.id }, member.token));
    await ok(gql(s.url, DELETE, { g: g.id }, owner.token));
    await evOwner.nth(5);
    const kinds = (sub: { values: any[] }) => sub.values.map((v) => v.groupEvent.kind);
    expect(kinds(evOwner)).toEqual(['CREATED', 'MEMBER_JOINED', 'RENAMED', 'MEMBER_LEFT', 'DELETED']);
    await evMember.nth(4);
    expect(kinds(evMember)).toEqual(['CREATED', 'MEMBER_JOINED', 'RENAMED', 'MEMBER_LEFT']);
    const last = await barrier(s, owner);
    await evOutsider.nth(2);
    expect(kinds(evOutsider)).toEqual(['CREATED', 'CREATED']);
    expect(evOutsider.values[1].groupEvent.groupId).toBe(last);
    expect(evOwner.values[2].groupEvent).toMatchObject({ groupId: g.id, group: { name: 'Renamed' }, user: { id: owner.id } });
    expect(evOwner.values[4].groupEvent.group).toBeNull();
  });

  it('should keep private group events among members', async () => {
    const s = await createTestServer();
    const [owner, added, outsider] = [await signup(s.url), await signup(s.url), await signup(s.url)];
    const [evAdded, evOutsider] = [await listen(s, added), await listen(s, outsider)];
    const g = (await ok(gql(s.url, CREATE, { n: 'Hidden', p: true }, owner.token))).createGroup;
    await ok(gql(s.url, ADD, { g: g.id, u: added.id }, owner.token));
    await ok(gql(s.url, RENAME, { g: g.id, n: 'Still hidden' }, owner.token));
    await evAdded.nth(2);
    expect(evAdded.values.map((v) => v.groupEvent.kind)).toEqual(['MEMBER_JOINED', 'RENAMED']);
    const last = await barrier(s, owner);
    await evOutsider.nth(1);
    expect(evOutsider.values.map((v) => [v.groupEvent.kind, v.groupEvent.groupId])).toEqual([['CREATED', last]]);
  });
});
