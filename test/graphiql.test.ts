import type { Page } from 'playwright-core';
import { artifactPath, launchChromium } from './helpers/browser';
import { eventually, gql, ok } from './helpers/graphql';
import { signup } from './helpers/factories';
import { createTestServer, type TestServer } from './helpers/server';
import { itNeeding, tools } from './helpers/tools';

const origin = (s: TestServer) => s.url.replace(/\/graphql$/, '');

/** Every asset the page loads, as written in its HTML. */
function assetsOf(html: string): string[] {
  return [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]);
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

  it('should not serve GraphiQL when ENABLE_GRAPHIQL is off (the production default)', async () => {
    const s = await createTestServer({ ENABLE_GRAPHIQL: 'false' });
    expect((await fetch(`${origin(s)}/graphiql`)).status).toBe(404);
    expect((await fetch(`${origin(s)}/graphiql/assets/graphiql.min.js`)).status).toBe(404);
    expect((await fetch(`${origin(s)}/demo/`)).status).toBe(404);
  });

  itNeeding('chromium', tools.chromium)('should render in Chromium offline, run { __typename }, and run a subscription with the token from the header editor', async () => {
    const s = await createTestServer();
    const alice = await signup(s.url);
    const lobby = (await ok(gql(s.url, '{ groups(first: 50) { edges { node { id isLobby } } } }', {}, alice.token))).groups.edges.find((e: any) => e.node.isLobby).node.id;
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
    await page.goto(`${origin(s)}/graphiql`);
    await page.waitForSelector('.graphiql-container .graphiql-query-editor .CodeMirror');
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
  }, 60_000);
});
