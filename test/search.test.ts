import { codeOf, gql, ok } from './helpers/graphql';
import { createTestServer } from './helpers/server';
import { befriend, buildProject, groupWith, request, sendMessage, signup, type TestUser } from './helpers/factories';
import { SearchMessagesDocument } from '../generated/client/graphql';
import { snapshot, sql } from './helpers/db';

const SEARCH = `query($q: String!, $c: ConversationInput, $first: Int, $after: String) {
  searchMessages(query: $q, conversation: $c, first: $first, after: $after) {
    edges { cursor node { snippet message { id content conversationId } } }
    pageInfo { hasNextPage hasPreviousPage endCursor } totalCount } }`;

type Hit = { snippet: string; message: { id: string; content: string; conversationId: string } };

async function search(url: string, user: TestUser, q: string, extra: Record<string, unknown> = {}): Promise<Hit[]> {
  return (await ok(gql(url, SEARCH, { q, ...extra }, user.token))).searchMessages.edges.map((e: { node: Hit }) => e.node);
}
const ids = (hits: Hit[]) => hits.map((h) => h.message.id).sort();

describe('searchMessages', () => {
  it('should find words in English, Russian and French whatever their accents or case, the word being typed as a prefix, with a marked snippet', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Polyglots', [bob]);
    const fr = await sendMessage(s.url, alice.token, { groupId: g, content: 'Le café était très bon à Noël' });
    const ru = await sendMessage(s.url, bob.token, { groupId: g, content: 'Привет! Ёлка уже горит, всё готово' });
    const en = await sendMessage(s.url, alice.token, { groupId: g, content: 'The deployment finished before the meeting' });
    const html = await sendMessage(s.url, alice.token, { groupId: g, content: '<b>Cafe</b> & "co" if 1<2 > 0 x' });
    // Control characters, as an earlier release stored them (a send refuses them now): not in the snippet.
    await sql(s.env.DATABASE_URL!, 'update messages set content = $1 where id = $2', ['<b>Cafe</b> & "co" if 1<2 > 0 \u0001x\u0002', html.id]);

    expect(ids(await search(s.url, bob, 'CAFÉ'))).toEqual([fr.id, html.id].sort());
    expect(ids(await search(s.url, bob, 'cafe'))).toEqual([fr.id, html.id].sort());
    expect(ids(await search(s.url, bob, 'noel tres'))).toEqual([fr.id]);
    // ё and е are one letter to a search, either way round.
    expect(ids(await search(s.url, alice, 'елка'))).toEqual([ru.id]);
    expect(ids(await search(s.url, alice, 'ВСЁ ГОТОВО'))).toEqual([ru.id]);
    // Greek's final sigma: a capital Σ is σ to the index, a typed word ends in ς; either finds both.
    const [caps, typed] = [await sendMessage(s.url, bob.token, { groupId: g, content: 'ΟΔΟΣ ΑΘΗΝΑΣ' }), await sendMessage(s.url, bob.token, { groupId: g, content: 'οδός Αθηνάς' })];
    for (const q of ['οδος ', 'ΟΔΟΣ ', 'Αθηνάς ', 'ΑΘΗΝΑΣ', 'οδος']) expect(ids(await search(s.url, alice, q))).toEqual([caps.id, typed.id].sort());
    expect((await search(s.url, alice, 'οδος ')).map((h) => h.snippet).sort()).toEqual(['<mark>ΟΔΟΣ</mark> ΑΘΗΝΑΣ', '<mark>οδός</mark> Αθηνάς']);
    // Words between '<' and '>' are words (PostgreSQL's parser took them for a tag, and indexed none).
    const aside = await sendMessage(s.url, bob.token, { groupId: g, content: 'Reminder <standup at noon> folks, if xval<yval and zval>wval' });
    expect(ids(await search(s.url, alice, 'standup noon'))).toEqual([aside.id]);
    expect(ids(await search(s.url, alice, 'yval zval'))).toEqual([aside.id]);
    expect((await search(s.url, alice, 'standup'))[0].snippet).toContain('&lt;<mark>standup</mark> at noon&gt;');
    // Numbers, dates, versions, phone numbers, addresses and file names: runs of digits and letters too.
    const numbers = await sendMessage(s.url, bob.token, { groupId: g, content: 'pi is 3.14, it is -5 outside, due 2024-01-05, release 1.2.3, call 555-1234' });
    const addresses = await sendMessage(s.url, bob.token, { groupId: g, content: 'mail ada@example.org the report.pdf from https://docs.example.com/q3' });
    for (const q of ['3.14 ', '14 ', '-5 ', '2024-01-05 ', '01 ', '1.2.3 ', '555-1234 ', '1234 ']) expect(ids(await search(s.url, alice, q))).toEqual([numbers.id]);
    for (const q of ['ada@example.org ', 'example ', 'report ', 'report.pdf ', 'docs.example.com ', 'q3 ']) expect(ids(await search(s.url, alice, q))).toEqual([addresses.id]);
    // The last word is being typed: a prefix; once a space follows it, a whole word.
    expect(ids(await search(s.url, bob, 'deploy'))).toEqual([en.id]);
    expect(ids(await search(s.url, bob, 'deploy '))).toEqual([]);
    expect(ids(await search(s.url, bob, 'при'))).toEqual([ru.id]);
    expect(ids(await search(s.url, bob, 'the meet'))).toEqual([en.id]);
    // Every word must match.
    expect(ids(await search(s.url, bob, 'deployment café'))).toEqual([]);

    const [hit] = await search(s.url, bob, 'елка');
    expect(hit.snippet).toContain('<mark>Ёлка</mark>');
    expect(hit.snippet).not.toContain('<mark>Привет');
    const frHit = (await search(s.url, bob, 'cafe noel'))[0];
    expect(frHit.snippet).toBe('Le <mark>café</mark> était très bon à <mark>Noël</mark>');
    // The snippet is HTML: nothing of the message's own markup is live, only the matches are marked.
    const htmlHit = (await search(s.url, bob, 'co '))[0];
    expect(htmlHit.message.id).toBe(html.id);
    // All of its text, tags and angle brackets too; its own control characters mark nothing.
    expect(htmlHit.snippet).toBe('&lt;b&gt;Cafe&lt;/b&gt; &amp; &quot;<mark>co</mark>&quot; if 1&lt;2 &gt; 0  x ');
    expect(htmlHit.snippet.replace(/<\/?mark>/g, '')).not.toMatch(/[<>"]/);
    // Operators a client types mean nothing.
    expect(ids(await search(s.url, bob, "café | !noel & 'x':*"))).toEqual([]);
    expect(ids(await search(s.url, bob, 'café:* (noel)'))).toEqual([fr.id]);
  });

  it('should mark matches inside punctuated words, and cut a long message\'s passages around its matches, punctuation kept', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Punctuated', [bob]);
    await sendMessage(s.url, alice.token, { groupId: g, content: 'pi is 3.14 on 2024-01-05, mail alice@example.org: see report.pdf!' });
    const snippet = async (q: string) => (await search(s.url, bob, q, { c: { groupId: g } }))[0]?.snippet;
    expect(await snippet('14')).toBe('pi is 3.<mark>14</mark> on 2024-01-05, mail alice@example.org: see report.pdf!');
    expect(await snippet('3.14')).toContain('<mark>3</mark>.<mark>14</mark> on');
    expect(await snippet('01 ')).toContain('2024-<mark>01</mark>-05,');
    expect(await snippet('example')).toContain('alice@<mark>example</mark>.org:');
    expect(await snippet('report.pdf')).toContain('see <mark>report</mark>.<mark>pdf</mark>!');

    // Over 160 characters: up to two passages around the matches, each written from the message.
    const words = Array.from({ length: 80 }, (_, i) => `w${i}`).join(' ');
    const tail = Array.from({ length: 80 }, (_, i) => `z${i}`).join(' ');
    await sendMessage(s.url, alice.token, { groupId: g, content: `lorem ${words} pi=7.2559; then ${tail} a.b "quoted-term" <end>` });
    const long = await snippet('2559 quoted');
    expect(long).toContain('pi=7.<mark>2559</mark>; then');
    expect(long).toContain(' … ');
    expect(long).toContain('a.b &quot;<mark>quoted</mark>-term&quot; &lt;end');
    expect(long).not.toContain('lorem');
    // It begins after the message's start: `…` says so (it ends at the message's end: nothing there).
    expect([long.startsWith('…'), long.endsWith('…')]).toEqual([true, false]);
    // A match among one-letter words and symbols: ts_headline gave the word alone, which is given context.
    await sendMessage(s.url, alice.token, { groupId: g, content: `${'a + b = c ; '.repeat(30)}zebra ${'; x - y '.repeat(30)}` });
    const lone = (await snippet('zebra'))!;
    expect(lone).toMatch(/^….{20,}<mark>zebra<\/mark>.{20,}…$/su);
    // Beside runs without spaces (emoji): some of each run, not nothing; and punctuation left out is
    // still something left out (300 `=` before, 300 `-` after).
    await sendMessage(s.url, alice.token, { groupId: g, content: `${'😀'.repeat(300)}giraffe${'👍🏽'.repeat(150)}` });
    expect((await snippet('giraffe'))!).toMatch(/^…(😀){20,}<mark>giraffe<\/mark>(👍🏽){10,}…$/u);
    await sendMessage(s.url, alice.token, { groupId: g, content: `${'='.repeat(300)}\nrelease okapi notes below\n${'-'.repeat(300)}` });
    const ruled = (await snippet('okapi'))!;
    expect([ruled.startsWith('…'), ruled.endsWith('…'), ruled.includes('<mark>okapi</mark>')]).toEqual([true, true, true]);
    // A few characters after the passage (ts_headline's ends at the match's word) are written, not
    // cut: a trailing emoji went with no `…` (an outside probe); more, and `…` says they were left out.
    const body = Array(12).fill('lorem ipsum dolor').join(' ');
    await sendMessage(s.url, alice.token, { groupId: g, content: `${body} narwhal 👍` });
    await sendMessage(s.url, alice.token, { groupId: g, content: `${body} beluga ${'🎉'.repeat(12)}` });
    await sendMessage(s.url, alice.token, { groupId: g, content: `${body} manatee${' '.repeat(20)}:)` });
    const ends = async (q: string) => (await snippet(q))!.replace(/^.*(<mark>)/su, '$1');
    expect([await ends('narwhal'), await ends('beluga'), await ends('manatee')]).toEqual(['<mark>narwhal</mark> 👍', '<mark>beluga</mark>…', '<mark>manatee</mark> :)']);

    // A word too long for PostgreSQL's parser (a pasted data URL) is left out of the passage as `…`,
    // the rest as written (left out silently, the snippet read as the whole message: an outside probe).
    await sendMessage(s.url, alice.token, { groupId: g, content: `Report "Q3 results.pdf" for bob@example.org, v2.0 <final> target data:image/png;base64,${'A'.repeat(2100)} end` });
    expect(await snippet('target')).toBe('Report &quot;Q3 results.pdf&quot; for bob@example.org, v2.0 &lt;final&gt; <mark>target</mark> data:image/png;base64,… end');
    // On a line of its own: the line breaks around it stay, and so does the punctuation after it.
    await sendMessage(s.url, alice.token, { groupId: g, content: `pasted:\ndata:${'B'.repeat(2100)}\nnext: 3.14 & <b>x</b> "q" aimed.` });
    expect(await snippet('aimed')).toBe('pasted:\ndata:…\nnext: 3.14 &amp; &lt;b&gt;x&lt;/b&gt; &quot;q&quot; <mark>aimed</mark>.');
    // Between words, and a run of emoji glued to a word: the words around it stay apart.
    await sendMessage(s.url, alice.token, { groupId: g, content: `party at wombat ${'a'.repeat(2100)} bring drinks` });
    expect(await snippet('wombat')).toBe('party at <mark>wombat</mark> … bring drinks');
    // At the message's start or end, given as context to a short passage: `…` too, none of the run
    // (60 of its letters were shown: an outside probe).
    await sendMessage(s.url, alice.token, { groupId: g, content: `${'東'.repeat(700)} kiwi cjk` });
    await sendMessage(s.url, alice.token, { groupId: g, content: `${'a'.repeat(3000)} emu ascii` });
    await sendMessage(s.url, alice.token, { groupId: g, content: `cassowary tail ${'b'.repeat(2100)}` });
    expect([await snippet('kiwi'), await snippet('emu'), await snippet('cassowary')]).toEqual(['… <mark>kiwi</mark> cjk', '… <mark>emu</mark> ascii', '<mark>cassowary</mark> tail …']);
    // Between two passages it is the joiner's `…`, with one space each side (there were two: an
    // outside probe); and a run of 2,047 bytes is a word PostgreSQL keeps: found, and shown.
    await sendMessage(s.url, alice.token, { groupId: g, content: `tuatara ${Array(30).fill('w').join(' ')} ${'r'.repeat(3000)} tuatara end` });
    expect(await snippet('tuatara')).toMatch(/^<mark>tuatara<\/mark> w w[w ]*w … <mark>tuatara<\/mark> end$/);
    await sendMessage(s.url, alice.token, { groupId: g, content: `${'q'.repeat(2047)} kakapo` });
    expect(await snippet('qqqq')).toBe(`<mark>${'q'.repeat(240)}</mark>…`);
    await sendMessage(s.url, alice.token, { groupId: g, content: `lol${'😀'.repeat(600)} see you at the quokka party` });
    expect(await snippet('quokka')).toBe('lol… see you at the <mark>quokka</mark> party');
    const family = '👨‍👩‍👧‍👦';
    await sendMessage(s.url, alice.token, { groupId: g, content: `qq${family.repeat(150)} wallaby qq${family.repeat(150)}` });
    // A run of emoji with spaces around it, or of spaces or line breaks alone: `…`, or a space.
    await sendMessage(s.url, alice.token, { groupId: g, content: `lol ${'😀'.repeat(600)} see numbat more` });
    expect(await snippet('numbat')).toBe('lol … see <mark>numbat</mark> more');
    await sendMessage(s.url, alice.token, { groupId: g, content: `lol${' '.repeat(3000)}see dingo more` });
    expect(await snippet('dingo')).toBe('lol see <mark>dingo</mark> more');
    await sendMessage(s.url, alice.token, { groupId: g, content: `alpha${'\n'.repeat(3000)}beta bilby gamma` });
    expect(await snippet('bilby')).toBe('alpha\nbeta <mark>bilby</mark> gamma');
    // A short message is whole, its blanks too.
    await sendMessage(s.url, alice.token, { groupId: g, content: 'tapir!\n\n   ok' });
    expect(await snippet('tapir')).toBe('<mark>tapir</mark>!\n\n   ok');
    // Blanks before a final emoji are one space: they filled the passage and left the 👍 out.
    await sendMessage(s.url, alice.token, { groupId: g, content: `echidna head words${' '.repeat(300)}👍` });
    expect(await snippet('echidna')).toMatch(/^<mark>echidna<\/mark> head words\s{1,2}👍$/u);
    // A passage this short is given the words after it: some of the run there, cut.
    expect(await snippet('wallaby')).toMatch(new RegExp(`^qq… <mark>wallaby</mark> qq(${family}){10,}…$`, 'u'));

    // A run without spaces is one word to the index: its passage is cut to 240 characters around
    // the match, `…` where it was cut (before, a 600-character message came back whole: an outside probe).
    const han = '我们明天开会讨论项目'.repeat(60);
    await sendMessage(s.url, alice.token, { groupId: g, content: `${han}` });
    const cjk = (await snippet('我们明'))!;
    expect(cjk).toBe(`<mark>${[...han].slice(0, 240).join('')}</mark>…`);
    // A long URL after some words: the words before the match kept up to 60 characters, the rest cut.
    const url = `https://example.org/${'p'.repeat(400)}`;
    await sendMessage(s.url, alice.token, { groupId: g, content: `${'w'.repeat(70)} <see> ${url}` });
    const cut = (await snippet('example'))!;
    expect([...cut.replace(/<\/?mark>/g, '').replace(/&lt;|&gt;/g, '.')].length).toBe(242);
    expect(cut).toMatch(/^…w+ &lt;see&gt; https:\/\/<mark>example<\/mark>\.org\/p+…$/);
    // Two passages with nothing between them in the message are one: no ` … ` (an outside probe).
    const ws = (p: string, n: number) => Array.from({ length: n }, (_, i) => `${p}${i}`).join(' ');
    await sendMessage(s.url, alice.token, { groupId: g, content: `quoll ${ws('w', 30)} quoll ${ws('v', 12)}` });
    expect(await snippet('quoll')).toBe(`<mark>quoll</mark> ${ws('w', 30)} <mark>quoll</mark> ${ws('v', 12)}`);
    // A second match the 240 characters would cut is left out whole, never half marked.
    const word = 'abcdefghij'.repeat(3);
    await sendMessage(s.url, alice.token, { groupId: g, content: `wallaroo ${Array(7).fill(word).join(' ')} bbbbbb wallaroo tail words here and more` });
    const two = (await snippet('wallaroo'))!;
    expect([two.startsWith('<mark>wallaroo</mark> '), two.match(/<mark>/g)!.length, two.slice(20).includes('wall'), two.endsWith('…')]).toEqual([true, 1, false, true]);
  });

  it('should show only what the viewer may read now: members, private project messages to their two users, never a deleted message', async () => {
    const s = await createTestServer();
    const [alice, bob, carol, eve] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Team', [bob]);
    const inGroup = await sendMessage(s.url, alice.token, { groupId: g, content: 'zanzibar launch plan' });
    const gone = await sendMessage(s.url, alice.token, { groupId: g, content: 'zanzibar secret to delete' });
    const p = await buildProject(s.url, alice, { participants: [bob, carol] });
    const open = await sendMessage(s.url, carol.token, { projectId: p.id, content: 'zanzibar for the whole project' });
    const privateToBob = await sendMessage(s.url, alice.token, { projectId: p.id, toUserId: bob.id, content: 'zanzibar between alice and bob' });
    await befriend(s.url, carol, eve);
    const direct = await sendMessage(s.url, eve.token, { toUserId: carol.id, content: 'zanzibar direct' });
    await ok(gql(s.url, 'mutation($m: ID!) { deleteMessage(messageId: $m) }', { m: gone.id }, alice.token));

    expect(ids(await search(s.url, alice, 'zanzibar'))).toEqual([inGroup.id, open.id, privateToBob.id].sort());
    expect(ids(await search(s.url, bob, 'zanzibar'))).toEqual([inGroup.id, open.id, privateToBob.id].sort());
    expect(ids(await search(s.url, carol, 'zanzibar'))).toEqual([open.id, direct.id].sort());
    expect(ids(await search(s.url, eve, 'zanzibar'))).toEqual([direct.id]);
    // Nothing of a deleted message is found, not even by its sender.
    expect(ids(await search(s.url, alice, 'delete'))).toEqual([]);

    // One conversation: the same rules inside it; another's is refused as history refuses it.
    expect(ids(await search(s.url, bob, 'zanzibar', { c: { projectId: p.id } }))).toEqual([open.id, privateToBob.id].sort());
    expect(ids(await search(s.url, bob, 'zanzibar', { c: { projectId: p.id, userId: alice.id } }))).toEqual([privateToBob.id]);
    expect(ids(await search(s.url, carol, 'zanzibar', { c: { projectId: p.id } }))).toEqual([open.id]);
    expect(ids(await search(s.url, bob, 'zanzibar', { c: { groupId: g } }))).toEqual([inGroup.id]);
    expect(codeOf(await gql(s.url, SEARCH, { q: 'zanzibar', c: { groupId: g } }, eve.token))).toBe('FORBIDDEN');

    // Membership now: once Bob leaves the group (and the project), their messages are gone from his searches.
    await ok(gql(s.url, 'mutation($g: ID!) { leaveGroup(groupId: $g) }', { g }, bob.token));
    await ok(gql(s.url, 'mutation($p: ID!) { leaveProject(projectId: $p) }', { p: p.id }, bob.token));
    expect(ids(await search(s.url, bob, 'zanzibar'))).toEqual([]);
    // And a direct conversation is searched while its two users are friends, as its history is read.
    await ok(gql(s.url, 'mutation($u: ID!) { removeFriend(userId: $u) }', { u: eve.id }, carol.token));
    expect(ids(await search(s.url, carol, 'zanzibar'))).toEqual([open.id]);
  });

  it('should rank the best match first and page through every match once, by the typed client document too', async () => {
    const s = await createTestServer();
    const alice = await signup(s.url);
    const g = await groupWith(s.url, alice, 'Paging', []);
    const sent: string[] = [];
    for (let i = 0; i < 23; i++) sent.push((await sendMessage(s.url, alice.token, { groupId: g, content: `quokka number ${i} with a few more words to make it longer than the best one` })).id);
    const best = await sendMessage(s.url, alice.token, { groupId: g, content: 'quokka quokka' });
    sent.push(best.id);
    const first = (await ok(gql(s.url, SEARCH, { q: 'quokka', first: 10 }, alice.token))).searchMessages;
    expect(first.edges[0].node.message.id).toBe(best.id);
    expect(first.totalCount).toBe(24);
    expect(first.pageInfo).toMatchObject({ hasNextPage: true, hasPreviousPage: false });
    const seen = first.edges.map((e: { node: Hit }) => e.node.message.id);
    let after = first.pageInfo.endCursor;
    for (;;) {
      const page = (await request(s.url, SearchMessagesDocument, { query: 'quokka', first: 10, after }, alice.token)).searchMessages;
      seen.push(...page.edges.map((e) => e.node.message.id));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(seen).toHaveLength(24);
    expect([...seen].sort()).toEqual([...sent].sort());
    // Equal ranks: newest first.
    expect(seen.slice(1)).toEqual(sent.slice(0, 23).reverse());
    // A page of none says there is one to read (a client asking for totalCount alone), as every connection does.
    const none = (await ok(gql(s.url, SEARCH, { q: 'quokka', first: 0 }, alice.token))).searchMessages;
    expect([none.edges, none.pageInfo.hasNextPage, none.totalCount]).toEqual([[], true, 24]);
  });

  it('should look for a query of common words only among the newest messages of each conversation, under the same rules', async () => {
    const s = await createTestServer();
    const [alice, bob, carol, eve] = [await signup(s.url), await signup(s.url), await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Chatty', [bob]);
    const theirs = await groupWith(s.url, eve, 'Eve', []);
    const p = await buildProject(s.url, alice, { participants: [bob, carol] });
    const expected: string[] = [];
    for (let i = 0; i < 30; i++) expected.push((await sendMessage(s.url, i % 2 ? alice.token : bob.token, { groupId: g, content: `hello there ${i}` })).id);
    const gone = expected.pop()!;
    await ok(gql(s.url, 'mutation($m: ID!) { deleteMessage(messageId: $m) }', { m: gone }, alice.token));
    expected.push((await sendMessage(s.url, alice.token, { projectId: p.id, toUserId: bob.id, content: 'hello bob, between us' })).id);
    const eves = (await sendMessage(s.url, eve.token, { groupId: theirs, content: 'hello from eve' })).id;
    // Statistics as autovacuum would gather them: "hello" is in nearly every message.
    await sql(s.env.DATABASE_URL!, 'analyze messages');
    const [stats] = await sql(s.env.DATABASE_URL!, "select most_common_elems::text::text[] as e from pg_stats where tablename = 'messages_search_runs'");
    expect(stats.e).toContain('hello');

    const seen: string[] = [];
    let after: string | null = null;
    do {
      const page: any = (await ok(gql(s.url, SEARCH, { q: 'hello ', first: 20, after }, bob.token))).searchMessages;
      seen.push(...page.edges.map((e: { node: Hit }) => e.node.message.id));
      after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
    } while (after);
    expect([...seen].sort()).toEqual([...expected].sort());
    expect(ids(await search(s.url, carol, 'hello '))).toEqual([]);
    expect(ids(await search(s.url, eve, 'hello '))).toEqual([eves]);
    // With a rarer word, through the index.
    expect(ids(await search(s.url, bob, 'hello 2 '))).toEqual([expected[2]]);
  });

  it('should find every match of a word in a few percent of messages typed without a space after it, not only the newest messages', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Fruit', [bob]);
    // 10 of 320 messages (3%, under the 5% of a common word) say "orange", the oldest ones: past the
    // 300 newest of each of bob's two conversations (the lobby, this group) a query of common words is looked for among.
    const oranges: string[] = [];
    for (let i = 0; i < 10; i++) oranges.push((await sendMessage(s.url, alice.token, { groupId: g, content: `orange ${i}` })).id);
    for (let i = 0; i < 310; i += 40) {
      await Promise.all(Array.from({ length: Math.min(40, 310 - i) }, (_, j) => sendMessage(s.url, bob.token, { groupId: g, content: `filler ${i + j}` })));
    }
    await sql(s.env.DATABASE_URL!, 'analyze messages');
    const [stats] = await sql(s.env.DATABASE_URL!, "select most_common_elems::text::text[] as e from pg_stats where tablename = 'messages_search_runs'");
    expect(stats.e).toContain('orange');
    const all = async (q: string) => {
      const page = (await ok(gql(s.url, SEARCH, { q, first: 100 }, bob.token))).searchMessages;
      return [page.edges.map((e: { node: Hit }) => e.node.message.id).sort(), page.totalCount];
    };
    const expected = [[...oranges].sort(), 10];
    // Being typed (a prefix), whole, and whole with a space after it: the same 10.
    expect([await all('orang'), await all('orange'), await all('orange ')]).toEqual([expected, expected, expected]);
  });

  it('should refuse bad input with BAD_USER_INPUT and change nothing, and be rate-limited', async () => {
    const s = await createTestServer({ RATE_LIMIT_SEARCH: '5/1m' });
    const alice = await signup(s.url);
    const before = await snapshot(s.env.DATABASE_URL!);
    for (const [vars, field] of [
      [{ q: '' }, 'query'],
      [{ q: '   ' }, 'query'],
      [{ q: '!!! ??? ...' }, 'query'],
      [{ q: 'x'.repeat(2048) }, 'query'],
      // Every word must match: thirteen are refused, not cut to twelve; a mark alone is no word.
      [{ q: 'one two three four five six seven eight nine ten eleven twelve thirteen' }, 'query'],
      [{ q: '\u0301' }, 'query'],
      // Half of a surrogate pair, as a message refuses it.
      [{ q: 'abc\ud800def' }, 'query'],
      [{ q: 'ok', after: 'not-a-cursor' }, 'after'],
      [{ q: 'ok', after: Buffer.from('c1:["1|2026-01-01T00:00:00.000Z","00000000-0000-4000-8000-000000000000"]').toString('base64url') }, 'after'],
      // A search cursor of this scope, dated where JavaScript dates and PostgreSQL does not (an outside probe: INTERNAL_SERVER_ERROR).
      [{ q: 'ok', after: Buffer.from('c1.search:["1.000000|-004713-01-01T00:00:00.000Z","00000000-0000-4000-8000-000000000000"]').toString('base64url') }, 'after'],
      [{ q: 'ok', first: -1 }, 'first'],
      [{ q: 'ok', first: 1000 }, 'first'],
    ] as const) {
      const r = await gql(s.url, SEARCH, vars, alice.token);
      expect([vars, codeOf(r), r.errors?.[0].extensions?.field]).toEqual([vars, 'BAD_USER_INPUT', field]);
    }
    expect(await snapshot(s.env.DATABASE_URL!)).toEqual(before);
    expect(codeOf(await gql(s.url, SEARCH, { q: 'ok' }))).toBe('UNAUTHENTICATED');
    // Characters as people count them: 150 emoji (300 UTF-16 units) and a word are 156.
    expect((await ok(gql(s.url, SEARCH, { q: '🎉'.repeat(150) + ' party' }, alice.token))).searchMessages.edges).toEqual([]);
    // A refused search spends none of the limit: five searches (the one above among them) go through, the sixth does not.
    for (let i = 0; i < 4; i++) await ok(gql(s.url, SEARCH, { q: 'ok' }, alice.token));
    expect(codeOf(await gql(s.url, SEARCH, { q: 'ok' }, alice.token))).toBe('RATE_LIMITED');
    // Past the limit RATE_LIMITED answers first, before the search is looked at (CONFIGURATION.md; an
    // outside probe had a bad query, cursor or conversation answered as such).
    for (const vars of [{ q: '' }, { q: 'ok', after: 'not-a-cursor' }, { q: 'ok', c: { groupId: '00000000-0000-4000-8000-000000000000' } }]) {
      expect([vars, codeOf(await gql(s.url, SEARCH, vars, alice.token))]).toEqual([vars, 'RATE_LIMITED']);
    }
  });

  it('should show a short message whole whatever its emoji take in UTF-16, and find nothing for a word PostgreSQL cannot index', async () => {
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, alice, 'Whole', [bob]);
    // 101 characters, 171 UTF-16 units: whole, its runs of space kept (an outside probe had them squeezed).
    const word = `w${process.pid}x`;
    const short = `${'😀'.repeat(70)} ${word} one     two\n\n\n\nthree`;
    await sendMessage(s.url, alice.token, { groupId: g, content: short });
    expect((await search(s.url, bob, `${word} `)).map((h) => h.snippet)).toEqual([short.replace(word, `<mark>${word}</mark>`)]);
    // A letter newer than PostgreSQL's Unicode tables (Kawi) is no word to its parser: every word must
    // match, so a query holding one finds nothing (an outside probe: the other words alone matched).
    expect(await search(s.url, bob, `${word} \u{11f04} `)).toEqual([]);
    // Inside a word too: PostgreSQL reads it as space, and `W𑼄one` was looked for as `W one` (a verification probe).
    expect(await search(s.url, bob, `${word}\u{11f04}one `)).toEqual([]);
    expect(await search(s.url, bob, `${word}\u{11f04}`)).toEqual([]);
    expect(await search(s.url, bob, `${word} qqqq `)).toEqual([]);
    // A word of circled letters is a word to PostgreSQL's parser, and to the query (a verification probe:
    // left out, `W ⓗⓔⓛⓛⓞ` found every W).
    const circled = await sendMessage(s.url, alice.token, { groupId: g, content: `${word} \u24d7\u24d4\u24db\u24db\u24de` });
    expect(ids(await search(s.url, bob, `${word} \u24d7\u24d4\u24db\u24db\u24de `))).toEqual([circled.id]);
    // A mark the parser reads as space (Javanese's virama) splits the word in the message as in the
    // query, which finds it (a verification probe: every word with one found nothing).
    const javanese = await sendMessage(s.url, alice.token, { groupId: g, content: `${word} \ua9b2\ua98f\ua9c0\ua9b1\ua9ab jv` });
    expect(ids(await search(s.url, bob, `${word} \ua9b2\ua98f\ua9c0\ua9b1\ua9ab `))).toEqual([javanese.id]);
    expect((await ok(gql(s.url, SEARCH, { q: `${word} \u{11f04}` }, bob.token))).searchMessages.totalCount).toBe(0);
  });
});
