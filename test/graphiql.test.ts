import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSchema, parse, validate } from 'graphql';
import type { Page } from 'playwright-core';
import { artifactPath, launchChromium } from './helpers/browser';
import { eventually, gql, ok } from './helpers/graphql';
import { lobbyOf, signup } from './helpers/factories';
import { createTestServer, type TestServer } from './helpers/server';
import { itNeeding, tools } from './helpers/tools';

const origin = (s: TestServer) => s.url.replace(/\/graphql$/, '');

/** Every asset the page loads, as written in its HTML. */
function assetsOf(html: string): string[] {
  // A data: URL (the empty icon) is inline: nothing is fetched.
  return [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]).filter((a) => !a.startsWith('data:'));
}

/** Sets the CodeMirror editor whose text matches `current` (GraphiQL 3 keeps the instance on the element). */
async function setEditor(page: Page, selector: string, value: string, current?: RegExp): Promise<void> {
  await page.evaluate(
    ([sel, val, pattern]) => {
      // Runs in the page: DOM globals, which this Node-typed project doesn't declare.
      const doc = (globalThis as any).document;
      const editors = [...doc.querySelectorAll(sel)] as { CodeMirror: { getValue(): string; setValue(v: string): void } }[];
      const editor = pattern ? editors.find((e) => new RegExp(pattern).test(e.CodeMirror.getValue())) : editors[0];
      if (!editor) throw new Error(`no editor ${sel}`);
      editor.CodeMirror.setValue(val);
    },
    [selector, value, current?.source ?? ''] as const,
  );
}

/**
 * Puts one operation in the query editor and executes it. GraphiQL re-parses the editor after a
 * debounce; going through two operations (the execute button becomes a menu) and back to one
 * makes sure it has parsed the operation we click for.
 */
async function run(page: Page, operation: string): Promise<void> {
  await setEditor(page, '.graphiql-query-editor .CodeMirror', `${operation}\nquery Settle { __typename }`);
  await page.waitForSelector('.graphiql-execute-button[aria-haspopup]');
  await setEditor(page, '.graphiql-query-editor .CodeMirror', operation);
  await page.waitForSelector('.graphiql-execute-button:not([aria-haspopup])');
  await page.click('.graphiql-execute-button');
}

/** The text of every CodeMirror editor under `selector` (GraphiQL keeps the hidden ones mounted too). */
const editorTexts = (page: Page, selector: string) =>
  page.evaluate((sel) => [...(globalThis as any).document.querySelectorAll(sel)].map((e: any) => e.CodeMirror.getValue() as string), selector);

/** Resolves once GraphiQL has drawn its editors on `page` (after a load or a reload). */
const editorsUp = (page: Page) => page.waitForSelector('.graphiql-container .graphiql-query-editor .CodeMirror');

/** A fresh browser's page on this server's GraphiQL, its editors drawn. */
async function openGraphiQL(s: TestServer): Promise<Page> {
  const page = await (await launchChromium()).newPage();
  await page.goto(`${origin(s)}/graphiql`);
  await editorsUp(page);
  return page;
}

const tabTitles = (page: Page) => page.locator('.graphiql-tab .graphiql-tab-button').allTextContents();

const responseText = (page: Page) =>
  page.evaluate(() => (globalThis as any).document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue() as string);

describe('GraphiQL', () => {
  it('should serve the page and every asset from this server, with no CDN', async () => {
    const s = await createTestServer();
    const res = await fetch(`${origin(s)}/graphiql`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    const html = await res.text();
    const assets = assetsOf(html);
    expect(assets).toEqual(expect.arrayContaining(['/graphiql/assets/graphiql.min.js', '/graphiql/assets/graphiql.min.css', '/graphiql/assets/react.production.min.js']));
    // Offline: nothing comes from another host.
    expect(assets.every((a) => a.startsWith('/'))).toBe(true);
    for (const a of assets) {
      const r = await fetch(origin(s) + a);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toMatch(a.endsWith('.css') ? /text\/css/ : /javascript/);
      expect((await r.arrayBuffer()).byteLength).toBeGreaterThan(1000);
    }
    expect((await fetch(`${origin(s)}/graphiql/assets/..%2Fpackage.json`)).status).toBe(404);
    expect((await fetch(`${origin(s)}/graphiql/assets/nothing.js`)).status).toBe(404);
    // Names an object has from Object.prototype are not assets either (one used to crash the process).
    for (const name of ['constructor', '__proto__', 'toString']) expect((await fetch(`${origin(s)}/graphiql/assets/${name}`)).status).toBe(404);
  });

  it('should open with tabs whose operations are valid against the schema', async () => {
    const s = await createTestServer();
    const html = await (await fetch(`${origin(s)}/graphiql`)).text();
    const tabs = JSON.parse(/var tabs = (.*);\n/.exec(html)![1]) as { query: string; variables?: string }[];
    expect(tabs.length).toBeGreaterThanOrEqual(6);
    const schema = buildSchema(readFileSync(join(__dirname, '..', 'schema.graphql'), 'utf8'));
    for (const tab of tabs) {
      expect(validate(schema, parse(tab.query)).map((e) => e.message)).toEqual([]);
      if (tab.variables) JSON.parse(tab.variables);
    }
    const operations = tabs.flatMap((t) => [...t.query.matchAll(/^(?:query|mutation|subscription) (\w+)/gm)].map((m) => m[1]));
    expect(operations).toEqual(expect.arrayContaining(['Signup', 'Login', 'Me', 'History', 'SendMessage', 'MessageAdded', 'PresenceChanged', 'ProjectAction']));
  });

  it("should send a browser opening /graphql or / to GraphiQL, and name it in a 404; a client's GET is answered as before", async () => {
    const s = await createTestServer();
    const html = { accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8' };
    for (const path of ['/graphql', '/']) {
      const r = await fetch(`${origin(s)}${path}`, { headers: html, redirect: 'manual' });
      expect([path, r.status, r.headers.get('location')]).toEqual([path, 302, '/graphiql']);
    }
    // A GET with a query, or from a client asking for JSON, is GraphQL's, as before.
    const get = await fetch(`${origin(s)}/graphql?query=${encodeURIComponent('{ __typename }')}`, { headers: { ...html, 'apollo-require-preflight': 'true' }, redirect: 'manual' });
    expect([get.status, await get.json()]).toEqual([200, { data: { __typename: 'Query' } }]);
    expect((await fetch(`${origin(s)}/graphql`, { headers: { accept: 'application/json' }, redirect: 'manual' })).status).toBe(400);
    const missing = await fetch(`${origin(s)}/nothing`);
    expect([missing.status, (await missing.json() as any).errors[0].message]).toEqual([404, 'Nothing is served at this path: GraphQL is at /graphql (GraphiQL at /graphiql, the demo at /demo/).']);
  });

  it('should not serve GraphiQL when ENABLE_GRAPHIQL is off (the production default)', async () => {
    const s = await createTestServer({ ENABLE_GRAPHIQL: 'false' });
    expect((await fetch(`${origin(s)}/graphiql`)).status).toBe(404);
    expect((await fetch(`${origin(s)}/graphiql/assets/graphiql.min.js`)).status).toBe(404);
    expect((await fetch(`${origin(s)}/demo/`)).status).toBe(404);
    // Nor point to it.
    expect((await fetch(`${origin(s)}/graphql`, { headers: { accept: 'text/html' }, redirect: 'manual' })).status).toBe(400);
    expect(((await (await fetch(`${origin(s)}/nothing`)).json()) as any).errors[0].message).toBe('Nothing is served at this path: GraphQL is at /graphql.');
  });

  itNeeding('chromium', tools.chromium)('should render in Chromium offline, run { __typename }, and run a subscription with the token from the header editor', async () => {
    const s = await createTestServer();
    const alice = await signup(s.url);
    const lobby = await lobbyOf(s.url, alice.token);
    const browser = await launchChromium();
    const page = await browser.newPage();
    const foreign: string[] = [];
    // Any request to another host would mean a CDN: refuse it and remember it.
    await page.route('**/*', (route) => {
      const u = new URL(route.request().url());
      if (u.hostname === '127.0.0.1' || u.hostname === 'localhost') return route.continue();
      foreign.push(u.href);
      return route.abort();
    });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    // Nothing it asks for is missing.
    const failed: string[] = [];
    page.on('response', (r) => void (r.status() >= 400 && failed.push(`${r.status()} ${r.url()}`)));
    await page.goto(`${origin(s)}/graphiql`);
    await editorsUp(page);
    expect(await page.evaluate(() => (globalThis as any).parleyGraphiQL)).toEqual({ url: s.url.replace('localhost', '127.0.0.1'), subscriptionUrl: s.wsUrl.replace('localhost', '127.0.0.1') });

    await run(page, '{ __typename }');
    await eventually(async () => (await responseText(page)).includes('"__typename": "Query"'), 10_000);

    // The token goes in the header editor; the subscription carries it over graphql-ws.
    await setEditor(page, '.graphiql-editor-tool .CodeMirror', JSON.stringify({ Authorization: `Bearer ${alice.token}` }), /Authorization/);
    await run(page, 'subscription { messageAdded { content sender { username } } }');
    await eventually(() => s.fanout.active.messageAdded === 1, 10_000);
    await ok(gql(s.url, 'mutation($g: ID!) { sendMessage(input: { groupId: $g, content: "seen in GraphiQL" }) { id } }', { g: lobby }, alice.token));
    await eventually(async () => (await responseText(page)).includes('seen in GraphiQL'), 10_000);
    await page.screenshot({ path: artifactPath('graphiql.png') });

    expect(foreign).toEqual([]);
    expect(pageErrors).toEqual([]);
    expect(failed).toEqual([]);
  }, 60_000);

  itNeeding('chromium', tools.chromium)('should end a subscription refused with 4403 at once, with the close reason as an error', async () => {
    const s = await createTestServer();
    const page = await openGraphiQL(s);

    // No token: the server closes the socket 4403. graphql-ws alone retries that for about a minute.
    await run(page, 'subscription { messageAdded { id } }');
    await eventually(async () => (await responseText(page)).includes('4403 Forbidden'), 5_000);
    const shown = JSON.parse(await responseText(page));
    expect(shown.errors[0]).toMatchObject({ message: expect.stringContaining('Subscriptions need a token'), extensions: { code: 'UNAUTHENTICATED', closeCode: 4403 } });
    // Not spinning: the execute button offers to run again rather than to stop.
    await page.waitForSelector('.graphiql-execute-button[aria-label="Execute query (Ctrl-Enter)"]', { timeout: 5_000 });

    // A token that was revoked gets the same answer, worded for it.
    const alice = await signup(s.url);
    await ok(gql(s.url, 'mutation { logout }', {}, alice.token));
    await setEditor(page, '.graphiql-editor-tool .CodeMirror', JSON.stringify({ Authorization: `Bearer ${alice.token}` }), /Authorization/);
    await run(page, 'subscription { presenceChanged { status } }');
    await eventually(async () => (await responseText(page)).includes('not valid'), 5_000);
    await page.screenshot({ path: artifactPath('graphiql-4403.png') });
  }, 60_000);

  itNeeding('chromium', tools.chromium)("should run the first tab's Signup with its own variables on a first visit, and keep a later visit's own", async () => {
    const s = await createTestServer();
    const page = await openGraphiQL(s);
    const first = '{\n  "username": "ada",\n  "password": "correct horse battery"\n}';
    await eventually(async () => (await editorTexts(page, '.graphiql-editor-tool .CodeMirror')).includes(first), 5_000);
    // Two operations: the execute button offers them; Signup runs with the tab's variables.
    await page.click('.graphiql-execute-button');
    await page.click('[role="menuitem"]:has-text("Signup")');
    await eventually(async () => (await responseText(page)).includes('"username": "ada"'), 10_000);
    expect(JSON.parse(await responseText(page)).data.signup.token).toEqual(expect.any(String));
    const titles = ['Signup', 'Me', 'Groups', 'SendMessage', 'MessageAdded', 'OnlineUsers', 'Friends', 'Projects'];
    // The next visit opens the same tabs, Signup's with its variables (an empty copy of it opened beside, and Signup failed there).
    await page.reload();
    await editorsUp(page);
    await eventually(async () => (await editorTexts(page, '.graphiql-editor-tool .CodeMirror')).includes(first), 5_000);
    expect(await tabTitles(page)).toEqual(titles);
    // What was last in its editor, once GraphiQL kept it, rather than the first tab's again.
    const mine = '{ "username": "bob", "password": "another horse battery" }';
    await setEditor(page, '.graphiql-editor-tool .CodeMirror', mine, /"ada"/);
    const kept = () => page.evaluate(() => (globalThis as any).localStorage.getItem('graphiql:tabState') as string);
    await eventually(async () => (await kept()).includes(JSON.stringify(mine)), 5_000);
    await page.reload();
    await editorsUp(page);
    await eventually(async () => (await editorTexts(page, '.graphiql-editor-tool .CodeMirror')).includes(mine), 5_000);
    expect(await tabTitles(page)).toEqual(titles);
  }, 60_000);

  itNeeding('chromium', tools.chromium)('should open with the common operations as tabs, and carry the last headers to a new tab and the next visit', async () => {
    const s = await createTestServer();
    const alice = await signup(s.url);
    const page = await openGraphiQL(s);
    expect(await tabTitles(page)).toEqual(['Signup', 'Me', 'Groups', 'SendMessage', 'MessageAdded', 'OnlineUsers', 'Friends', 'Projects']);

    // The Me tab answers once the header holds a token.
    await page.click('.graphiql-tab-button:has-text("Me")');
    const auth = JSON.stringify({ Authorization: `Bearer ${alice.token}` }, null, 2);
    await setEditor(page, '.graphiql-editor-tool .CodeMirror', auth, /Authorization/);
    await run(page, 'query Me { me { username } }');
    await eventually(async () => (await responseText(page)).includes(`"username": "${alice.username}"`), 10_000);

    // Another of the first tabs, its Authorization still empty, runs with that token too; visiting it keeps the token for "+".
    await page.click('.graphiql-tab-button:has-text("Groups")');
    await run(page, 'query Me2 { me { username } }');
    await eventually(async () => (await responseText(page)).includes(`"username": "${alice.username}"`), 10_000);

    // "+" opens a tab whose headers are the ones just edited, ready for a subscription.
    const before = (await tabTitles(page)).length;
    await page.click('.graphiql-tab-add');
    await eventually(async () => (await tabTitles(page)).length === before + 1, 5_000);
    await eventually(async () => (await editorTexts(page, '.graphiql-editor-tool .CodeMirror')).includes(auth), 5_000);
    await run(page, 'subscription { messageAdded { content } }');
    await eventually(() => s.fanout.active.messageAdded === 1, 10_000);

    // The next visit (same browser) starts new tabs with them too.
    await page.reload();
    await editorsUp(page);
    await page.click('.graphiql-tab-add');
    await eventually(async () => (await editorTexts(page, '.graphiql-editor-tool .CodeMirror')).includes(auth), 5_000);
    await page.screenshot({ path: artifactPath('graphiql-tabs.png') });
  }, 60_000);
});
