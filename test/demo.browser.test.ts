import { readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import type { Page } from 'playwright-core';
import { buildWebDemo } from '../src/core/dev-pages';
import { artifactPath, launchChromium } from './helpers/browser';
import { gql, ok } from './helpers/graphql';
import { befriend, lobbyOf, signup } from './helpers/factories';
import { createTestServer } from './helpers/server';
import { describeNeeding, tools } from './helpers/tools';

/** The web demo (examples/web) as two people use it, in headless Chromium. */

/** A small PNG (a colour gradient), so the preview has something to show. */
function png(width: number, height: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const x of b) c = crcTable[(c ^ x) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const sum = Buffer.alloc(4);
    sum.writeUInt32BE(crc(body));
    return Buffer.concat([len, body, sum]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const rows = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) rows.set([80 + (x * 150) / width, 70, 200 - (y * 120) / height], y * (width * 3 + 1) + 1 + x * 3);
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header), chunk('IDAT', deflateSync(rows)), chunk('IEND', Buffer.alloc(0))]);
}

async function logIn(page: Page, username: string, password: string, mode: 'login' | 'signup'): Promise<void> {
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click(`#${mode}`);
  await page.waitForSelector('#app:not([hidden]) #groups li.current');
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill('#message', text);
  await page.click('#send');
  await page.waitForSelector(`#messages li.msg.mine:has-text("${text}")`);
}

/** How much of the open conversation's name and subtitle is cut off, in pixels each. */
const clipped = (page: Page) => page.evaluate(() => ['#chat-title', '#chat-sub'].map((sel) => (globalThis as any).document.querySelector(sel)).map((e) => e.scrollWidth - e.clientWidth));

const shot = (page: Page, name: string) => page.screenshot({ path: artifactPath(`demo-${name}.png`) });

const SEND = 'mutation($i: SendMessageInput!) { sendMessage(input: $i) { id } }';

/** A server with the demo built, Alice and Bob in a group of hers, and Bob's first messages. */
async function groupOfTwo(name: string, messages: (alice: { username: string }) => string[]) {
  await buildWebDemo();
  const s = await createTestServer();
  const [alice, bob] = [await signup(s.url), await signup(s.url)];
  const group = (await ok(gql(s.url, 'mutation($n: String!) { createGroup(name: $n) { id } }', { n: name }, alice.token))).createGroup.id;
  await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }', { g: group, u: bob.id }, alice.token));
  const sent: string[] = [];
  for (const content of messages(alice)) sent.push((await ok(gql(s.url, SEND, { i: { groupId: group, content } }, bob.token))).sendMessage.id);
  return { s, alice, bob, group, sent };
}

/** Alice's page of the demo, logged in; page errors gathered in `errors`. `insecure`: as over http at a LAN address, without crypto.randomUUID. */
async function alicesPage(s: { url: string }, alice: { username: string; password: string }, insecure = false) {
  const browser = await launchChromium();
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  if (insecure) await page.addInitScript(() => delete (Object.getPrototypeOf(crypto) as { randomUUID?: unknown }).randomUUID);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.setDefaultTimeout(10_000);
  await page.goto(s.url.replace(/\/graphql$/, '/demo/'));
  await logIn(page, alice.username, alice.password, 'login');
  return { browser, page, errors };
}

describeNeeding('chromium', tools.chromium)('web demo', () => {
  it('should let two people use every part of the API: groups, friends, direct messages with unread counts, read ticks, typing, edits and reactions, attachments, history, presence and projects', async () => {
    await buildWebDemo();
    const s = await createTestServer({ PRESENCE_GRACE: '0.3s' });
    const demo = s.url.replace(/\/graphql$/, '/demo/');
    // Bob exists but is away: the demo must show him coming online. Carol filled the lobby earlier.
    const bob = await signup(s.url);
    await ok(gql(s.url, 'mutation { logout }', {}, bob.token));
    const carol = await signup(s.url);
    const lobby = await lobbyOf(s.url, carol.token);
    for (let i = 1; i <= 35; i++) await ok(gql(s.url, 'mutation($g: ID!, $c: String!) { sendMessage(input: { groupId: $g, content: $c }) { id } }', { g: lobby, c: `earlier message ${i}` }, carol.token));

    const browser = await launchChromium();
    const desktop = { viewport: { width: 1280, height: 800 } };
    const [alicePage, bobPage] = await Promise.all([browser.newContext(desktop), browser.newContext(desktop)]).then((cs) => Promise.all(cs.map((c) => c.newPage())));
    const errors: string[] = [];
    for (const p of [alicePage, bobPage]) {
      p.on('pageerror', (e) => errors.push(e.message));
      p.on('dialog', (d) => void d.accept());
      p.setDefaultTimeout(10_000);
    }

    // Signed out: only the form, none of the app under it.
    await alicePage.goto(demo);
    await alicePage.waitForSelector('#auth-form');
    expect(await alicePage.isVisible('#auth-form')).toBe(true);
    for (const part of ['#app', '#sidebar', '#composer', '#tabbar', '#account']) expect(await alicePage.isVisible(part)).toBe(false);
    await shot(alicePage, '01-signed-out');

    const alice = { username: `alice_${process.pid}`, password: 'alice-password-1' };
    await logIn(alicePage, alice.username, alice.password, 'signup');
    expect(await alicePage.isVisible('#auth-form')).toBe(false);

    // History: the newest page, then "load older" brings the rest, oldest first, with dates.
    await alicePage.waitForSelector('#messages li.msg:has-text("earlier message 35")');
    expect(await alicePage.locator('#messages li.msg').count()).toBe(30);
    await alicePage.click('#load-older');
    await alicePage.waitForSelector('#messages li.msg .text:text-is("earlier message 1")');
    expect(await alicePage.locator('#load-older').isVisible()).toBe(false);
    const texts = await alicePage.locator('#messages li.msg .text').allTextContents();
    expect(texts[0]).toBe('earlier message 1');
    expect(texts.at(-1)).toBe('earlier message 35');
    expect(await alicePage.textContent('#messages li.day')).toBe('Today');
    await shot(alicePage, '02-lobby-history');

    // Presence, live.
    await alicePage.waitForSelector(`#people li[data-user="${alice.username}"][data-status="ONLINE"]`);
    expect(await alicePage.$(`#people li[data-user="${bob.username}"][data-status="ONLINE"]`)).toBeNull();
    await bobPage.goto(demo);
    await logIn(bobPage, bob.username, bob.password, 'login');
    await alicePage.waitForSelector(`#people li[data-user="${bob.username}"][data-status="ONLINE"]`);

    await say(alicePage, 'Hello Bob, this is the lobby');
    await bobPage.waitForSelector('#messages li.msg:has-text("Hello Bob, this is the lobby")');

    // Friends: Bob asks; Alice is told without reloading anything, and accepts.
    await bobPage.fill('#friend-username', alice.username);
    await bobPage.click('#add-friend button');
    await bobPage.waitForSelector(`#requests li.outgoing[data-user="${alice.username}"]`);
    await alicePage.waitForSelector(`#requests li.incoming[data-user="${bob.username}"]`, { timeout: 10_000 });
    await alicePage.waitForSelector(`.toast:has-text("@${bob.username} wants to be your friend")`);
    await shot(alicePage, '03-friend-request');
    await alicePage.click(`#requests li.incoming[data-user="${bob.username}"] button:has-text("Accept")`);
    await alicePage.waitForSelector(`#directs li[data-user="${bob.username}"]`);
    await bobPage.waitForSelector(`#directs li[data-user="${alice.username}"]`, { timeout: 10_000 });

    // A direct message arrives live: Bob, reading the lobby, gets a badge and opens it.
    await alicePage.click(`#directs li[data-user="${bob.username}"] button`);
    await alicePage.waitForSelector('#messages li.notice');
    await say(alicePage, 'psst, Bob: just between us');
    await bobPage.waitForSelector(`#directs li[data-user="${alice.username}"] .badge:text("1")`);
    // The recent list (conversations, kept live): newest first, with a preview and the unread count.
    const recentAlice = `#recent li:has(.name:text-is("${alice.username}"))`;
    await bobPage.waitForSelector(`${recentAlice} .badge:text("1")`);
    expect(await bobPage.textContent(`${recentAlice} .preview`)).toBe('psst, Bob: just between us');
    expect(await bobPage.locator('#recent li .name').first().textContent()).toBe(alice.username);
    await shot(bobPage, 'conv-1-unread');
    const aliceTick = '#messages li.msg.mine:has-text("psst, Bob: just between us") .tick';
    expect(await alicePage.getAttribute(aliceTick, 'class')).toBe('tick');
    await bobPage.click(`#directs li[data-user="${alice.username}"] button`);
    await bobPage.waitForSelector('#messages li.msg:has-text("psst, Bob: just between us")');
    // Opening it marks it read: the badges go, and Alice's message gets its read tick.
    await bobPage.waitForSelector(`${recentAlice}:not(:has(.badge))`);
    expect(await bobPage.locator('#directs .badge, #recent .badge').count()).toBe(0);
    await alicePage.waitForSelector(`${aliceTick}.read`);
    // Typing shows on the other side while Bob composes, and ends when he sends.
    await bobPage.fill('#message', 'Hi Al');
    await alicePage.waitForSelector(`#typing:text-is("${bob.username} is typing…")`);
    await shot(alicePage, 'conv-2-typing-read');
    await bobPage.fill('#message', 'Hi Alice, got it');
    await bobPage.click('#send');
    await alicePage.waitForSelector('#messages li.msg:has-text("Hi Alice, got it")');
    await alicePage.waitForSelector('#typing:text-is("")');

    // Reactions: counts on both sides, the viewer's own highlighted.
    const bobsMsg = 'li.msg:has-text("Hi Alice, got it")';
    await alicePage.click(`#messages ${bobsMsg} .msg-actions button[data-emoji="👍"]`);
    await alicePage.waitForSelector(`#messages ${bobsMsg} .reaction.mine[data-emoji="👍"] .count:text-is("1")`);
    await bobPage.waitForSelector(`#messages ${bobsMsg} .reaction:not(.mine)[data-emoji="👍"] .count:text-is("1")`);
    await bobPage.click(`#messages ${bobsMsg} .reaction[data-emoji="👍"]`);
    await alicePage.waitForSelector(`#messages ${bobsMsg} .reaction.mine[data-emoji="👍"] .count:text-is("2")`);
    await bobPage.waitForSelector(`#messages ${bobsMsg} .reaction.mine[data-emoji="👍"] .count:text-is("2")`);
    // An edit and a deletion reach the other side live.
    await say(alicePage, 'see you tomorow');
    const typo = await alicePage.getAttribute('#messages li.msg.mine:has-text("see you tomorow")', 'data-id');
    await bobPage.waitForSelector(`#messages li.msg[data-id="${typo}"]`);
    await alicePage.click(`#messages li.msg[data-id="${typo}"] .edit-message`);
    await alicePage.fill(`#messages li.msg[data-id="${typo}"] .edit-input`, 'see you tomorrow');
    await alicePage.press(`#messages li.msg[data-id="${typo}"] .edit-input`, 'Enter');
    await bobPage.waitForSelector(`#messages li.msg[data-id="${typo}"]:has(.text:text-is("see you tomorrow")) .edited`);
    await say(alicePage, 'wrong chat, sorry');
    const wrong = await alicePage.getAttribute('#messages li.msg.mine:has-text("wrong chat, sorry")', 'data-id');
    await bobPage.waitForSelector(`#messages li.msg[data-id="${wrong}"]`);
    await shot(bobPage, 'conv-3-edited-reactions');
    await alicePage.click(`#messages li.msg[data-id="${wrong}"] .delete-message`);
    await bobPage.waitForSelector(`#messages li.msg[data-id="${wrong}"] .text.deleted`);
    expect(await bobPage.locator('#messages li.msg:has-text("wrong chat, sorry")').count()).toBe(0);
    await bobPage.waitForSelector(`${recentAlice} .preview:text-is("message deleted")`);
    await shot(bobPage, 'conv-4-deleted');
    // A login elsewhere is told.
    await ok(gql(s.url, 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }', { u: bob.username, p: bob.password }));
    await bobPage.waitForSelector('.toast:has-text("Your account was signed in elsewhere")');

    // Attachments: an image shows as a preview on both sides (its bytes really loaded), a text file as a named chip.
    await alicePage.setInputFiles('#file', { name: 'chart.png', mimeType: 'image/png', buffer: png(240, 140) });
    await alicePage.waitForSelector('#pending:has-text("chart.png") img');
    await say(alicePage, 'the chart');
    const plan = Buffer.from('1. launch\n2. celebrate\n');
    await alicePage.setInputFiles('#file', { name: 'plan.txt', mimeType: 'text/plain', buffer: plan });
    await alicePage.waitForSelector('#pending:has-text("plan.txt")');
    await alicePage.click('#send');
    for (const p of [alicePage, bobPage]) {
      await p.waitForSelector('#messages li.msg .file:has-text("plan.txt")');
      await p.waitForFunction(() => {
        const img = (globalThis as any).document.querySelector('#messages li.msg .attachment img');
        return !!img && img.complete && img.naturalWidth === 240;
      });
    }
    expect(await bobPage.textContent('#messages li.msg .file')).toContain(`${plan.length} B`);
    // A signed Attachment.url is used as is; a plain one is fetched with the token into a blob URL.
    expect(await bobPage.getAttribute('#messages li.msg .attachment img', 'src')).toMatch(/^blob:|\?/);
    /** Downloads plan.txt from the chip; answers where the browser took it from. */
    const download = async () => {
      const [file] = await Promise.all([bobPage.waitForEvent('download'), bobPage.click('#messages li.msg .file')]);
      expect([file.suggestedFilename(), readFileSync(await file.path())]).toEqual(['plan.txt', plan]);
      return file.url();
    };
    expect(await download()).toMatch(/[?&]signature=/);
    await shot(bobPage, '04-direct-message-attachments');

    // Groups: Alice creates one, Bob sees it appear, joins and writes; Alice renames it, then deletes it.
    await alicePage.click('#new-group-toggle');
    await alicePage.fill('#new-group-name', 'design');
    await alicePage.click('#new-group button');
    await alicePage.waitForSelector('#chat-title:text("# design")');
    await bobPage.click('#groups li:has-text("design") button');
    await bobPage.click('#join-group');
    await bobPage.waitForSelector('#composer:not([hidden])');
    await say(bobPage, 'Joined design');
    await alicePage.waitForSelector('#messages li.msg:has-text("Joined design")');
    await alicePage.click('#details-toggle');
    await alicePage.waitForSelector(`#details .members li[data-user="${bob.username}"]`);
    await alicePage.fill('#rename-group-input', 'design-team');
    await alicePage.click('#rename-group button');
    await bobPage.waitForSelector('#chat-title:text("# design-team")');
    await shot(alicePage, '05-group-details');
    await alicePage.click('#details button:has-text("Delete group")');
    await bobPage.waitForSelector(`#groups li.current[data-group="${lobby}"]`);
    expect(await bobPage.locator('#groups li:has-text("design-team")').count()).toBe(0);
    // Out of the recent lists too, the deleter's and the member's (they stayed until a reload: an outside probe).
    for (const page of [alicePage, bobPage]) await page.waitForSelector('#recent li:has-text("design-team")', { state: 'detached' });

    // Projects: Alice creates one and adds Bob as a participant; Bob is told live; roles change live.
    await alicePage.click('#new-project-toggle');
    await alicePage.fill('#new-project-title', 'Demo launch');
    await alicePage.click('#new-project button');
    await alicePage.waitForSelector('#details #add-participant');
    await alicePage.fill('#add-participant-input', bob.username);
    // A live event redraws the details pane while Alice types (her other session renames the
    // project): what she typed stays, and the form sends it.
    const aliceApi = (await ok(gql(s.url, 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }', { u: alice.username, p: alice.password }))).login.token;
    const [project] = (await ok(gql(s.url, '{ projects { id } }', {}, aliceApi))).projects;
    await ok(gql(s.url, 'mutation($p: ID!) { renameProject(projectId: $p, title: "Demo launch!") { id } }', { p: project.id }, aliceApi));
    await alicePage.waitForSelector('#details #rename-project-input[value="Demo launch!"]');
    expect(await alicePage.inputValue('#add-participant-input')).toBe(bob.username);
    await ok(gql(s.url, 'mutation { logout }', {}, aliceApi));
    await alicePage.click('#add-participant button');
    await alicePage.waitForSelector(`#details .members li[data-user="${bob.username}"][data-role="Participant"]`);
    await bobPage.waitForSelector('#notifications li[data-kind="ADDED_TO_PROJECT"]:has-text("Demo launch")');
    await bobPage.waitForSelector('#projects li:has-text("Demo launch") .sub:text("participant")');
    await alicePage.click(`#details .members li[data-user="${bob.username}"] button:has-text("Make coach")`);
    await bobPage.waitForSelector('#notifications li[data-kind="COACH_DESIGNATED"]');
    await bobPage.waitForSelector('#projects li:has-text("Demo launch") .sub:text("coach")');
    await bobPage.click('#projects li:has-text("Demo launch") button');
    await say(bobPage, 'Ready for launch');
    await alicePage.waitForSelector('#messages li.msg:has-text("Ready for launch")');
    await shot(alicePage, '06-project-owner');
    await shot(bobPage, '07-project-coach');

    // A phone: one pane at a time, nothing wider than the screen. (The toasts of the last steps
    // are cleared first so the screenshots show the app.)
    await bobPage.setViewportSize({ width: 380, height: 760 });
    await bobPage.evaluate(() => (globalThis as any).document.getElementById('toasts').replaceChildren());
    const overflow = () => bobPage.evaluate(() => (globalThis as any).document.documentElement.scrollWidth as number);
    expect(await overflow()).toBeLessThanOrEqual(380);
    expect(await bobPage.isVisible('#sidebar')).toBe(false);
    await shot(bobPage, '08-phone-chat');
    await bobPage.click('#tabbar button[data-view="list"]');
    expect(await bobPage.isVisible('#sidebar')).toBe(true);
    expect(await bobPage.isVisible('#chat')).toBe(false);
    await shot(bobPage, '09-phone-list');
    await bobPage.click(`#directs li[data-user="${alice.username}"] button`);
    await bobPage.waitForSelector('#messages li.msg .attachment img');
    expect(await overflow()).toBeLessThanOrEqual(380);
    // Whom the conversation is with shows whole beside its buttons (it read "d.." and "@..": an outside probe).
    expect(await clipped(bobPage)).toEqual([0, 0]);
    await shot(bobPage, '10-phone-direct');
    await bobPage.click('#tabbar button[data-view="side"]');
    expect(await bobPage.isVisible('#notifications')).toBe(true);
    await shot(bobPage, '11-phone-people');

    // A link clicked after its signature expired still downloads: through the token instead.
    await bobPage.click('#tabbar button[data-view="chat"]');
    await bobPage.clock.setFixedTime(Date.now() + 60 * 60_000);
    expect(await download()).toMatch(/^blob:/);

    // The owner's project details (members, roles, forms) fit a phone too.
    await alicePage.setViewportSize({ width: 380, height: 760 });
    await alicePage.evaluate(() => (globalThis as any).document.getElementById('toasts').replaceChildren());
    expect(await alicePage.isVisible(`#details .members li[data-user="${bob.username}"] button:has-text("Withdraw coach")`)).toBe(true);
    const widths = await alicePage.evaluate(() => ['html', '#details'].map((sel) => (globalThis as any).document.querySelector(sel)).map((e) => e.scrollWidth - e.clientWidth));
    expect(widths).toEqual([0, 0]);
    await shot(alicePage, '12-phone-project-details');

    // A friendship's end takes the direct conversation out of both lists, live (it stayed until a reload).
    const bobApi = (await ok(gql(s.url, 'mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }', { u: bob.username, p: bob.password }))).login.token;
    const aliceId = (await ok(gql(s.url, 'query($u: String!) { users(search: $u) { edges { node { id username } } } }', { u: alice.username }, bobApi))).users.edges.find((e: any) => e.node.username === alice.username).node.id;
    await ok(gql(s.url, 'mutation($u: ID!) { removeFriend(userId: $u) }', { u: aliceId }, bobApi));
    for (const sel of [`#directs li[data-user="${alice.username}"]`, recentAlice]) await bobPage.waitForSelector(sel, { state: 'detached' });

    // Logging out leaves only the form; Bob sees Alice go offline.
    await alicePage.click('#logout');
    await alicePage.waitForSelector('#auth-form');
    expect(await alicePage.isVisible('#app')).toBe(false);
    await bobPage.click('#tabbar button[data-view="side"]');
    await bobPage.waitForSelector(`#people li[data-user="${alice.username}"][data-status="OFFLINE"]`, { timeout: 10_000 });
    expect(errors).toEqual([]);
  }, 60_000);

  it('should show a thread pane, the mention badge, a search box and the pinned list, all live', async () => {
    const { s, alice, bob, group, sent } = await groupOfTwo('Team', (a) => ['the deploy plan for friday', `@${a.username} can you check it?`]);
    const root = sent[0];
    const { browser, page, errors } = await alicesPage(s, alice);

    // The red @ badge on the group, gone once it is read.
    const groupItem = `#groups li[data-group="${group}"]`;
    await page.waitForSelector(`${groupItem} .mention-badge:text("@1")`);
    await shot(page, 'team-01-mention-badge');
    await page.click(`${groupItem} > button`);
    await page.waitForSelector('#messages li.msg:has-text("the deploy plan for friday")');
    await page.waitForSelector(`${groupItem} .mention-badge`, { state: 'detached' });

    // A thread: replies in the pane (mine and Bob's, live), not in the timeline; the root counts them.
    const rootItem = `#messages li.msg[data-id="${root}"]`;
    await page.hover(rootItem);
    await page.click(`${rootItem} .reply-in-thread`);
    await page.waitForSelector('#thread-pane:not([hidden]) #thread-root:has-text("the deploy plan for friday")');
    await page.fill('#thread-message', 'looks good to me');
    await page.click('#thread-send');
    await page.waitForSelector('#thread-replies li:has-text("looks good to me")');
    await ok(gql(s.url, SEND, { i: { groupId: group, content: 'thanks, shipping it', parentId: root } }, bob.token));
    await page.waitForSelector('#thread-replies li:has-text("thanks, shipping it")');
    await page.waitForSelector(`${rootItem} .open-thread:has-text("2 replies")`);
    expect(await page.locator('#messages li.msg:has-text("shipping it")').count()).toBe(0);
    await shot(page, 'team-02-thread');
    await page.click('#thread-close');
    expect(await page.isVisible('#thread-pane')).toBe(false);

    // Search: the hit with its marked words, and it opens its conversation.
    await page.fill('#search', 'deploy');
    await page.click('#search-form button');
    await page.waitForSelector('#search-results li.hit mark:text-is("deploy")');
    await shot(page, 'team-03-search');

    // Pins: pin from the message, listed, unpinned.
    await page.hover(rootItem);
    await page.click(`${rootItem} .pin-message`);
    await page.waitForSelector('#pins:not([hidden]) li:has-text("the deploy plan for friday")');
    await shot(page, 'team-04-pins');
    await page.click('#pins .unpin');
    await page.waitForSelector('#pins p:has-text("Nothing pinned yet.")');
    expect(errors).toEqual([]);
    await browser.close();
  }, 60_000);

  it("should reply in a direct conversation's thread, and keep a reply's text until it is sent", async () => {
    await buildWebDemo();
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    await befriend(s.url, alice, bob);
    const root = (await ok(gql(s.url, SEND, { i: { toUserId: alice.id, content: 'the root of a direct thread' } }, bob.token))).sendMessage.id;
    // Opened as a phone opens it, at the host's address over http: no crypto.randomUUID there (an outside probe: nothing could be sent).
    const { browser, page, errors } = await alicesPage(s, alice, true);
    expect(await page.evaluate(() => typeof crypto.randomUUID)).toBe('undefined');
    await page.click(`#directs li[data-user="${bob.username}"] button`);
    await page.fill('#message', 'sent without randomUUID');
    await page.click('#send');
    await page.waitForSelector('#messages li.msg:has-text("sent without randomUUID")');
    const rootItem = `#messages li.msg[data-id="${root}"]`;
    await page.hover(rootItem);
    await page.click(`${rootItem} .reply-in-thread`);
    await page.waitForSelector('#thread-pane:not([hidden]) #thread-root:has-text("the root of a direct thread")');
    // Every field is named for a screen reader, not by its placeholder alone (gone once text is typed: an outside probe).
    const unnamed = await page.$$eval('input:not([type=hidden]):not([type=file]), textarea, select', (fields) =>
      fields.filter((f) => !f.getAttribute('aria-label') && !f.getAttribute('aria-labelledby') && !(f as unknown as { labels: { length: number } | null }).labels?.length).map((f) => f.id || f.outerHTML),
    );
    expect(unnamed).toEqual([]);
    // A reply whose answer is lost keeps its text (it was cleared before the request).
    await page.route('**/graphql', async (route) => {
      if (!(route.request().postData() ?? '').includes('SendMessage')) return route.continue();
      await route.fetch();
      await route.abort();
    });
    await page.fill('#thread-message', 'my careful reply');
    await page.click('#thread-send');
    await page.waitForSelector('.toast.error');
    expect(await page.inputValue('#thread-message')).toBe('my careful reply');
    await page.unroute('**/graphql');
    // Sent again, twice at once (a double Enter): the first reply, stored once, by its clientMessageId
    // (it had none, and one per submit: an outside probe). With the direct conversation's `toUserId`
    // (its `userId` was refused: an outside probe).
    await page.press('#thread-message', 'Enter');
    await page.press('#thread-message', 'Enter');
    await page.waitForSelector('#thread-replies li:has-text("my careful reply")');
    expect(await page.inputValue('#thread-message')).toBe('');
    const thread = await ok(gql(s.url, 'query($m: ID!) { thread(messageId: $m) { edges { node { content } } } }', { m: root }, bob.token));
    expect(thread.thread.edges.map((e: any) => e.node.content)).toEqual(['my careful reply']);
    expect(errors).toEqual([]);
    await browser.close();
  }, 60_000);

  it("should drop a gone conversation's unread count, tick a message its reader answered, and show who went offline while the socket was down", async () => {
    await buildWebDemo();
    const s = await createTestServer();
    const [alice, bob] = [await signup(s.url), await signup(s.url)];
    await befriend(s.url, alice, bob);
    const group = (await ok(gql(s.url, 'mutation { createGroup(name: "Short-lived") { id } }', {}, bob.token))).createGroup.id;
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }', { g: group, u: alice.id }, bob.token));
    const browser = await launchChromium();
    const page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.setDefaultTimeout(15_000);
    // The page's socket goes through here: cut, then refused while `down`, as a restarting server would.
    let down = false;
    const sockets: { close: () => Promise<void> }[] = [];
    await page.routeWebSocket(/\/graphql/, (ws) => {
      if (down) return void ws.close({ code: 1012, reason: 'restarting' });
      ws.connectToServer();
      sockets.push(ws);
    });
    await page.goto(s.url.replace(/\/graphql$/, '/demo/'));
    await logIn(page, alice.username, alice.password, 'login');

    // Unread in a group, then the group is deleted: its count goes with it (an outside probe: "(2) Parley" stayed).
    for (const content of ['one', 'two']) await ok(gql(s.url, SEND, { i: { groupId: group, content } }, bob.token));
    await page.waitForFunction(() => (globalThis as any).document.title === '(2) Parley');
    await ok(gql(s.url, 'mutation($g: ID!) { deleteGroup(groupId: $g) }', { g: group }, bob.token));
    await page.waitForFunction(() => (globalThis as any).document.title === 'Parley');
    expect(await page.textContent('#tab-list-badge')).toBe('');
    // Past the sidebar's first page (50), a count stays when another conversation goes (a
    // verification probe: removed from an empty group, the oldest unread one's count was dropped).
    // Four at a time: a pool of ten connections answers a burst past it SERVICE_UNAVAILABLE.
    const inFours = async <T>(n: number, each: (i: number) => Promise<T>) => {
      const out: T[] = [];
      for (let i = 0; i < n; i += 4) out.push(...(await Promise.all(Array.from({ length: Math.min(4, n - i) }, (_, k) => each(i + k)))));
      return out;
    };
    const many = await inFours(52, async (i) => {
      const g: string = (await ok(gql(s.url, 'mutation($n: String!) { createGroup(name: $n) { id } }', { n: `g${i}` }, bob.token))).createGroup.id;
      await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { addGroupMember(groupId: $g, userId: $u) { id } }', { g, u: alice.id }, bob.token));
      return g;
    });
    // The first the oldest: past the page once the next 50 have news.
    await ok(gql(s.url, SEND, { i: { groupId: many[0], content: 'news' } }, bob.token));
    await inFours(50, (i) => ok(gql(s.url, SEND, { i: { groupId: many[i + 1], content: 'news' } }, bob.token)));
    await page.waitForFunction(() => (globalThis as any).document.title === '(51) Parley');
    const asked = page.waitForResponse((r) => (r.request().postData() ?? '').includes(many[0]));
    await ok(gql(s.url, 'mutation($g: ID!, $u: ID!) { removeGroupMember(groupId: $g, userId: $u) { id } }', { g: many[51], u: alice.id }, bob.token));
    await asked;
    await page.waitForFunction(() => (globalThis as any).document.title === '(51) Parley');
    expect(await page.textContent(`#groups li[data-group="${many[0]}"] .badge`)).toBe('1');

    // Bob answers from another client without marking read: his send moved his marker past Alice's message.
    await page.click(`#directs li[data-user="${bob.username}"] button`);
    await say(page, 'a question for Bob');
    const tick = '#messages li.msg.mine:has-text("a question for Bob") .tick';
    expect(await page.getAttribute(tick, 'class')).toBe('tick');
    await ok(gql(s.url, SEND, { i: { toUserId: alice.id, content: 'an answer' } }, bob.token));
    await page.waitForSelector(`${tick}.read`);

    // Bob logs out while Alice's socket is down: once it is back, the online list says so.
    const bobOnline = `#people li[data-user="${bob.username}"][data-status="ONLINE"]`;
    await page.waitForSelector(bobOnline);
    down = true;
    await Promise.all(sockets.splice(0).map((ws) => ws.close()));
    await ok(gql(s.url, 'mutation { logout }', {}, bob.token));
    down = false;
    await page.waitForSelector(`#people li[data-user="${bob.username}"][data-status="OFFLINE"]`, { timeout: 30_000 });
    expect(await page.$(bobOnline)).toBeNull();
    expect(errors).toEqual([]);
    await browser.close();
  }, 150_000);

  it("should keep what arrives while a conversation's history loads: a message, and an edit of one in the page", async () => {
    const { s, alice, bob, group, sent } = await groupOfTwo('Slow page', () => ['first draft']);
    const old = sent[0];
    const { browser, page, errors } = await alicesPage(s, alice);
    // The group's page is read, then held: what is sent and edited meanwhile comes live before it.
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let held = false;
    await page.route('**/graphql', async (route) => {
      const body = route.request().postData() ?? '';
      if (held || !body.includes('query History(') || !body.includes(group)) return route.continue();
      held = true;
      const response = await route.fetch();
      await released;
      await route.fulfill({ response });
    });
    await page.click(`#groups li[data-group="${group}"] > button`);
    while (!held) await new Promise((r) => setTimeout(r, 20));
    await ok(gql(s.url, SEND, { i: { groupId: group, content: 'sent while it loaded' } }, bob.token));
    await ok(gql(s.url, 'mutation($m: ID!) { editMessage(messageId: $m, content: "final text") { id } }', { m: old }, bob.token));
    await new Promise((r) => setTimeout(r, 500));
    release();
    // Replaced by the page read before them, both were lost until the group was opened again (an outside probe).
    await page.waitForSelector('#messages li.msg:has-text("sent while it loaded")');
    await page.waitForSelector(`#messages li.msg[data-id="${old}"]:has-text("final text")`);
    expect(await page.locator('#messages li.msg:has-text("first draft")').count()).toBe(0);
    expect(errors).toEqual([]);
    await browser.close();
  }, 60_000);

  it('should store a send once when its answer was lost and it is sent again, and refuse a file over the limit before sending it', async () => {
    const { s, alice, group } = await groupOfTwo('Weekend hiking crew 2026', () => []);
    const { browser, page, errors } = await alicesPage(s, alice);
    await page.click(`#groups li[data-group="${group}"] > button`);
    // On a phone the group's name shows whole beside its buttons (it read "# Weekend hiking…": an outside probe).
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForSelector('#chat-title:has-text("Weekend hiking crew 2026")');
    expect(await clipped(page)).toEqual([0, 0]);
    // The first send reaches the server, and its answer is lost on the way back.
    let lost = 0;
    await page.route('**/graphql', async (route) => {
      if (lost || !(route.request().postData() ?? '').includes('mutation SendMessage(')) return route.continue();
      lost++;
      await route.fetch();
      await route.abort('connectionreset');
    });
    await page.fill('#message', 'only once please');
    await page.click('#send');
    await page.waitForSelector('#toasts :text("Failed to fetch")');
    // Still in the composer: sent again as a user would, it is the same message (a new key stored it twice).
    expect(await page.inputValue('#message')).toBe('only once please');
    await page.click('#send');
    await page.waitForFunction(() => (globalThis as any).document.getElementById('message').value === '');
    const history = await ok(gql(s.url, 'query($g: ID!) { history(conversation: { groupId: $g }, last: 10) { edges { node { content } } } }', { g: group }, alice.token));
    expect(history.history.edges.map((e: { node: { content: string } }) => e.node.content)).toEqual(['only once please']);
    expect(await page.locator('#messages li.msg:has-text("only once please")').count()).toBe(1);
    // A file over ATTACHMENT_MAX_BYTES is refused before it is read or sent, in words, not in bytes of a body.
    await page.setInputFiles('#file', { name: 'big.txt', mimeType: 'text/plain', buffer: Buffer.alloc(5 * 1024 * 1024 + 1, 'a') });
    await page.waitForSelector('#toasts :text("big.txt is too large to send: 5,242,881 bytes, over the 5.0 MB (5,242,880 bytes) a file may be.")');
    expect(await page.isVisible('#pending')).toBe(false);
    expect(errors).toEqual([]);
    await browser.close();
  }, 60_000);

  it('should load an older page once however often it is asked, keeping what changed in it meanwhile', async () => {
    const { s, alice, bob, group, sent } = await groupOfTwo('Long talk', () => Array.from({ length: 35 }, (_, i) => `note ${i + 1}.`));
    const { browser, page, errors } = await alicesPage(s, alice);
    await page.click(`#groups li[data-group="${group}"] > button`);
    await page.waitForSelector('#messages li.msg:has-text("note 35.")');
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    let older = 0;
    await page.route('**/graphql', async (route) => {
      const body = route.request().postData() ?? '';
      if (!body.includes('query History(') || !body.includes('"before"')) return route.continue();
      older++;
      const response = await route.fetch();
      await released;
      await route.fulfill({ response });
    });
    // Two clicks, as a double click: the same page was asked twice and shown twice (an outside probe).
    await page.click('#load-older');
    await page.click('#load-older');
    while (!older) await new Promise((r) => setTimeout(r, 20));
    await ok(gql(s.url, 'mutation($m: ID!) { editMessage(messageId: $m, content: "note 1, edited") { id } }', { m: sent[0] }, bob.token));
    await new Promise((r) => setTimeout(r, 500));
    release();
    // The edit came while the page read before it was on its way: it was lost until a reopen.
    await page.waitForSelector(`#messages li.msg[data-id="${sent[0]}"]:has-text("note 1, edited")`);
    expect(await page.locator('#messages li.msg').count()).toBe(35);
    expect(older).toBe(1);
    expect(errors).toEqual([]);
    await browser.close();
  }, 60_000);
});
