import type { Page } from 'playwright-core';
import { buildWebDemo } from '../src/core/dev-pages';
import { artifactPath, launchChromium } from './helpers/browser';
import { gql, ok } from './helpers/graphql';
import { signup } from './helpers/factories';
import { createTestServer } from './helpers/server';
import { describeNeeding, tools } from './helpers/tools';

/** The web demo (examples/web) as two people use it, in headless Chromium. */

async function logIn(page: Page, username: string, password: string, mode: 'login' | 'signup'): Promise<void> {
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click(`#${mode}`);
  await page.waitForSelector('#app:not([hidden])');
}

async function say(page: Page, text: string): Promise<void> {
  await page.fill('#message', text);
  await page.click('#send');
}

const person = (page: Page, username: string, status: 'ONLINE' | 'OFFLINE') =>
  page.waitForSelector(`#people li[data-user="${username}"][data-status="${status}"]`, { timeout: 10_000 });

describeNeeding('chromium', tools.chromium)('web demo', () => {
  it('should let two users chat in the lobby, see each other come online and go offline, and get project notifications', async () => {
    await buildWebDemo();
    const s = await createTestServer({ PRESENCE_GRACE: '0.3s' });
    const demo = s.url.replace(/\/graphql$/, '/demo/');
    // Bob exists but is away: the demo must show him coming online.
    const bob = await signup(s.url);
    await ok(gql(s.url, 'mutation { logout }', {}, bob.token));

    const browser = await launchChromium();
    const [alicePage, bobPage] = await Promise.all([browser.newContext(), browser.newContext()]).then((cs) => Promise.all(cs.map((c) => c.newPage())));
    const errors: string[] = [];
    for (const p of [alicePage, bobPage]) p.on('pageerror', (e) => errors.push(e.message));

    await alicePage.goto(demo);
    const alice = { username: `alice_${process.pid}`, password: 'alice-password-1' };
    await logIn(alicePage, alice.username, alice.password, 'signup');
    await alicePage.waitForSelector('#groups li.current');
    expect(await alicePage.textContent('#chat-title')).toBeTruthy();
    await person(alicePage, alice.username, 'ONLINE');
    expect(await alicePage.$(`#people li[data-user="${bob.username}"][data-status="ONLINE"]`)).toBeNull();

    await bobPage.goto(demo);
    await logIn(bobPage, bob.username, bob.password, 'login');
    await bobPage.waitForSelector('#groups li.current');
    // Live: Alice's list changes on presenceChanged, without a reload.
    await person(alicePage, bob.username, 'ONLINE');
    await person(bobPage, alice.username, 'ONLINE');

    await say(alicePage, 'Hello Bob, this is the lobby');
    await bobPage.waitForSelector('#messages li:has-text("Hello Bob, this is the lobby")');
    await say(bobPage, 'Hi Alice!');
    await alicePage.waitForSelector('#messages li:has-text("Hi Alice!")');
    expect(await alicePage.locator('#messages li').count()).toBe(2);

    // Friends: Bob asks from the demo, Alice accepts from the demo.
    await bobPage.fill('#friend-username', alice.username);
    await bobPage.click('#add-friend button');
    await bobPage.waitForSelector(`#requests li:has-text("to @${alice.username}")`);
    await alicePage.click('#refresh-friends');
    await alicePage.click(`#requests li:has-text("from @${bob.username}") button:has-text("Accept")`);
    await alicePage.waitForSelector(`#friends li[data-user="${bob.username}"]`);

    // Project notifications arrive live, worded for the reader.
    const aliceToken = await alicePage.evaluate(() => JSON.parse((globalThis as any).sessionStorage.getItem('parley')).token as string);
    const project = (await ok(gql(s.url, 'mutation { createProject(title: "Demo launch") { id } }', {}, aliceToken))).createProject;
    await ok(gql(s.url, 'mutation($p: ID!, $u: ID!) { addProjectParticipant(projectId: $p, userId: $u) { id } }', { p: project.id, u: bob.id }, aliceToken));
    await bobPage.waitForSelector(`#notifications li[data-kind="ADDED_TO_PROJECT"]:has-text("Demo launch")`);

    await alicePage.screenshot({ path: artifactPath('demo-alice.png'), fullPage: true });
    await bobPage.screenshot({ path: artifactPath('demo-bob.png'), fullPage: true });

    // Bob closes the tab: after the grace period Alice sees him OFFLINE.
    await bobPage.context().close();
    await person(alicePage, bob.username, 'OFFLINE');
    await alicePage.screenshot({ path: artifactPath('demo-bob-offline.png'), fullPage: true });
    expect(errors).toEqual([]);
  }, 90_000);
});
