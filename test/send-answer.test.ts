import { gql, listen, ok } from './helpers/graphql';
import { createTestServer } from './helpers/server';
import { befriend, buildProject, groupWith, signup } from './helpers/factories';

// Every field a message has that a send's answer and a history page both carry. The attachment's
// url is signed when it is made, so only its path is compared.
const FIELDS = `id conversationId content clientMessageId createdAt editedAt deletedAt parentId replyCount lastReplyAt
  attachment { id fileName mimeType size url } sender { id username displayName createdAt } recipient { id } group { id } project { id }
  mentions { id } reactions { emoji count }`;
const SEND = `mutation($i: SendMessageInput!) { sendMessage(input: $i) { ${FIELDS} } }`;
const HISTORY = `query($c: ConversationInput!) { history(conversation: $c, last: 20) { edges { node { ${FIELDS} } } } }`;
const ADDED = `subscription { messageAdded { ${FIELDS} } }`;

const unsigned = (m: any) => (m?.attachment ? { ...m, attachment: { ...m.attachment, url: m.attachment.url.split('?')[0] } } : m);

/**
 * A send reads back from its statement only what the database decides (time, position, the
 * sender's profile) and fills in the rest from what it wrote: its answer, and the event every
 * subscriber gets, must be the message as history then reads it, whatever the kind of send.
 */
describe('what a send answers', () => {
  it('should answer, and publish, each kind of message as history reads it', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url, { displayName: 'Ann' }), await signup(s.url)];
    const g = await groupWith(s.url, a, 'Answers', [b]);
    await befriend(s.url, a, b);
    const p = (await buildProject(s.url, a, { participants: [b] })).id;
    const bSees = await listen(s, b, ADDED);
    const file = { fileName: 'notes.txt', base64: Buffer.from('hello').toString('base64') };
    const root = (await ok(gql(s.url, SEND, { i: { groupId: g, content: 'root' } }, a.token))).sendMessage;
    const cases: [Record<string, unknown>, Record<string, unknown>][] = [
      [{ groupId: g, content: 'plain', clientMessageId: 'c-1' }, { groupId: g }],
      [{ groupId: g, content: `hi @${b.username}` }, { groupId: g }],
      [{ groupId: g, attachment: file }, { groupId: g }],
      [{ groupId: g, content: 'in the thread and the timeline', parentId: root.id, alsoInConversation: true }, { groupId: g }],
      [{ toUserId: b.id, content: 'direct', attachment: file }, { userId: b.id }],
      [{ projectId: p, content: 'to the project' }, { projectId: p }],
      [{ projectId: p, toUserId: b.id, content: 'just b' }, { projectId: p, userId: b.id }],
    ];
    const answers = [];
    for (const [input, conversation] of cases) {
      const sent = (await ok(gql(s.url, SEND, { i: input }, a.token))).sendMessage;
      const page = (await ok(gql(s.url, HISTORY, { c: conversation }, a.token))).history.edges.map((e: any) => e.node);
      const read = page.find((m: any) => m.id === sent.id);
      expect(read).toBeDefined();
      expect(unsigned(sent)).toEqual(unsigned(read));
      answers.push(sent);
    }
    // The other member's events: the same message (their view names no one else's recipient).
    await bSees.nth(answers.length + 1);
    const events = new Map(bSees.values.map((v: any) => [v.messageAdded.id, v.messageAdded]));
    for (const sent of answers) expect(unsigned(events.get(sent.id))).toEqual(unsigned(sent));
  });
});

/** How many EntityManagers `run` forks: MikroORM's fork writes process.env twice (10-35 µs a send in bench:rooms' profile, 11 µs a page in bench:http's). */
async function forksDuring(s: Awaited<ReturnType<typeof createTestServer>>, run: () => Promise<void>): Promise<number> {
  const em = s.services.orm.em;
  const fork = em.fork.bind(em);
  let forks = 0;
  em.fork = ((...args: Parameters<typeof em.fork>) => {
    forks++;
    return fork(...args);
  }) as typeof em.fork;
  try {
    await run();
    return forks;
  } finally {
    em.fork = fork;
  }
}

describe('what a send costs this process', () => {
  it('should fork no EntityManager for a plain send to a group, alone or in a batch', async () => {
    // The statement needs none of what a fork holds.
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, a, 'Forks', [b]);
    // Each sender's first request reads their session (a fork); the next ones find it cached.
    for (const u of [a, b]) await ok(gql(s.url, SEND, { i: { groupId: g, content: 'warm' } }, u.token));
    let sent: any[] = [];
    const forks = await forksDuring(s, async () => {
      sent = await Promise.all(Array.from({ length: 6 }, (_, i) => ok(gql(s.url, `mutation($i: SendMessageInput!) { sendMessage(input: $i) { id content sender { username } } }`, { i: { groupId: g, content: `m${i}` } }, i % 2 ? a.token : b.token))));
    });
    expect(sent.map((r: any) => r.sendMessage.content)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5']);
    expect(forks).toBe(0);
  });

  it("should fork no EntityManager for a page of a group's history, and one for its totalCount", async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, a, 'Pages', [b]);
    for (const u of [a, b]) await ok(gql(s.url, SEND, { i: { groupId: g, content: `from ${u.username}` } }, u.token));
    const page = `query($g: ID!) { history(conversation: { groupId: $g }, last: 50) { edges { cursor node { id content sender { username } } } } }`;
    let pages: any[] = [];
    const forks = await forksDuring(s, async () => {
      pages = await Promise.all([a, b, a].map((u) => ok(gql(s.url, page, { g }, u.token))));
    });
    for (const p of pages) expect(p.history.edges.map((e: any) => e.node.content)).toEqual([`from ${a.username}`, `from ${b.username}`]);
    expect(forks).toBe(0);
    // What the page doesn't read is still there, on the request's own EntityManager.
    let counted: any;
    const countForks = await forksDuring(s, async () => {
      counted = await ok(gql(s.url, `query($g: ID!) { history(conversation: { groupId: $g }, last: 1) { totalCount } }`, { g }, a.token));
    });
    expect(counted.history.totalCount).toBe(2);
    expect(countForks).toBe(1);
  });
});
