import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { Logger } from '../shared/logger';

/**
 * Developer pages, on outside production (ENABLE_GRAPHIQL): GraphiQL at /graphiql and the web
 * demo at /demo. Everything is served from this machine (node_modules and examples/web), never a
 * CDN, so both work offline.
 */

/** The repository root: the first folder above this file with a package.json (src/ and dist/src/ alike). */
function findRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

const pkgDir = (name: string) => dirname(require.resolve(`${name}/package.json`));

/** GraphiQL 3 ships UMD bundles that run on React 18's UMD builds: no bundler needed. */
const GRAPHIQL_ASSETS: Record<string, { file: () => string; type: string }> = {
  'react.production.min.js': { file: () => join(pkgDir('react'), 'umd/react.production.min.js'), type: 'text/javascript' },
  'react-dom.production.min.js': { file: () => join(pkgDir('react-dom'), 'umd/react-dom.production.min.js'), type: 'text/javascript' },
  'graphiql.min.js': { file: () => join(pkgDir('graphiql'), 'graphiql.min.js'), type: 'text/javascript' },
  'graphiql.min.css': { file: () => join(pkgDir('graphiql'), 'graphiql.min.css'), type: 'text/css' },
};

const DEFAULT_QUERY = `# Welcome to Parley.
#
# 1. Run Signup (or Login) below and copy the token from the result.
# 2. Open "Headers" at the bottom and set: { "Authorization": "Bearer <token>" }
#    The same header authenticates subscriptions (sent as graphql-ws connectionParams).
# 3. Try Me, then subscribe to MessageAdded in one tab and SendMessage from another.

mutation Signup {
  signup(username: "ada", password: "correct horse battery") { token user { id username } }
}

mutation Login {
  login(username: "ada", password: "correct horse battery") { token user { id status } }
}

query Me {
  me { id username status }
  groups(first: 10) { edges { node { id name isLobby memberCount } } }
}

subscription MessageAdded {
  messageAdded { id content createdAt sender { username } group { id } }
}

mutation SendMessage($groupId: ID!) {
  sendMessage(input: { groupId: $groupId, content: "Hello from GraphiQL" }) { id createdAt }
}
`;

function graphiqlPage(): string {
  // The fetcher is rebuilt when the Authorization header changes, so a new token reaches the
  // WebSocket too (graphql-ws sends connectionParams once, when the socket opens).
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Parley · GraphiQL</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/graphiql/assets/graphiql.min.css">
<style>html,body,#graphiql{height:100%;margin:0}</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="/graphiql/assets/react.production.min.js"></script>
<script src="/graphiql/assets/react-dom.production.min.js"></script>
<script src="/graphiql/assets/graphiql.min.js"></script>
<script>
(function () {
  var url = new URL('/graphql', location.href).href;
  var subscriptionUrl = url.replace(/^http/, 'ws');
  var fetchers = {};
  function authorizationOf(headers) {
    if (!headers) return '';
    for (var k in headers) if (k.toLowerCase() === 'authorization') return String(headers[k] || '');
    return '';
  }
  function fetcher(params, opts) {
    var auth = authorizationOf(opts && opts.headers);
    if (!fetchers[auth]) {
      fetchers[auth] = GraphiQL.createFetcher({ url: url, subscriptionUrl: subscriptionUrl, wsConnectionParams: auth ? { authorization: auth } : {} });
    }
    return fetchers[auth](params, opts);
  }
  window.parleyGraphiQL = { url: url, subscriptionUrl: subscriptionUrl };
  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: ${JSON.stringify(DEFAULT_QUERY)},
      defaultHeaders: '{\\n  "Authorization": ""\\n}',
      defaultEditorToolsVisibility: 'headers',
      shouldPersistHeaders: true,
    }),
  );
})();
</script>
</body>
</html>
`;
}

const root = findRoot();
const WEB_DIR = join(root, 'examples/web');
const WEB_BUNDLE = join(WEB_DIR, 'dist/app.js');

/**
 * Bundles the web demo (examples/web/src -> examples/web/dist/app.js) with esbuild.
 * @throws when esbuild is missing (it is a dev dependency) or the sources don't compile.
 */
export async function buildWebDemo(opts: { minify?: boolean } = {}): Promise<string> {
  const esbuild = await import('esbuild');
  await esbuild.build({
    entryPoints: [join(WEB_DIR, 'src/main.ts')],
    outfile: WEB_BUNDLE,
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    minify: opts.minify ?? true,
    sourcemap: false,
    logLevel: 'silent',
  });
  return WEB_BUNDLE;
}

let building: Promise<string> | undefined;

/** Smaller files go as they are: compressing them saves less than it costs. */
const GZIP_MIN_BYTES = 1024;
/** Gzipped copies by path, made once per version of the file (GraphiQL's bundle is 3.5 MB, 1 MB gzipped), not per request. */
const gzipped = new Map<string, { mtimeMs: number; body: Promise<Buffer> }>();
const gzipAsync = promisify(gzip);

/** Whether the client takes gzip (`Accept-Encoding: gzip`, or `*`, without `q=0`). */
export function acceptsGzip(req: IncomingMessage): boolean {
  const header = req.headers['accept-encoding'];
  if (typeof header !== 'string') return false;
  return header.split(',').some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(';');
    const q = params.map((p) => /^\s*q=([\d.]+)\s*$/.exec(p)).find(Boolean);
    return (coding.trim() === 'gzip' || coding.trim() === '*') && (!q || Number(q[1]) > 0);
  });
}

async function sendFile(req: IncomingMessage, res: ServerResponse, file: string, type: string, cache: string): Promise<void> {
  const headers: Record<string, string | number> = { 'content-type': `${type}; charset=utf-8`, 'cache-control': cache, 'x-content-type-options': 'nosniff' };
  const info = await stat(file);
  const compress = info.size >= GZIP_MIN_BYTES && acceptsGzip(req);
  if (info.size >= GZIP_MIN_BYTES) headers.vary = 'Accept-Encoding';
  let cached = compress ? gzipped.get(file) : undefined;
  if (compress && (!cached || cached.mtimeMs !== info.mtimeMs)) {
    const entry = { mtimeMs: info.mtimeMs, body: readFile(file).then((raw) => gzipAsync(raw, { level: 9 })) };
    gzipped.set(file, (cached = entry));
    // A failed read or compression is tried again by the next request rather than kept.
    entry.body.catch(() => gzipped.get(file) === entry && gzipped.delete(file));
  }
  const body = cached ? await cached.body : await readFile(file);
  if (cached) headers['content-encoding'] = 'gzip';
  res.writeHead(200, { ...headers, 'content-length': body.length });
  res.end(body);
}

function notFound(res: ServerResponse, what: string): void {
  res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
  res.end(`${what} not found\n`);
}

/**
 * Answers GET /graphiql, /graphiql/assets/*, /demo and /demo/*. Returns false for any other
 * path so the caller can go on routing.
 */
export function serveDevPages(req: IncomingMessage, res: ServerResponse, path: string, logger: Logger): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  if (path === '/graphiql' || path === '/graphiql/') {
    const html = graphiqlPage();
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(html), 'cache-control': 'no-cache' });
    res.end(html);
    return true;
  }
  const asset = /^\/graphiql\/assets\/([\w.-]+)$/.exec(path);
  if (asset) {
    // Own keys only: 'constructor' or 'toString' must be a 404, not Object's method.
    const a = Object.hasOwn(GRAPHIQL_ASSETS, asset[1]) ? GRAPHIQL_ASSETS[asset[1]] : undefined;
    if (!a) notFound(res, 'Asset');
    else sendFile(req, res, a.file(), a.type, 'public, max-age=86400').catch(() => notFound(res, 'Asset'));
    return true;
  }
  if (path === '/demo') {
    res.writeHead(301, { location: '/demo/' });
    res.end();
    return true;
  }
  if (path === '/demo/' || path === '/demo/index.html') {
    sendFile(req, res, join(WEB_DIR, 'index.html'), 'text/html', 'no-cache').catch(() => notFound(res, 'Demo'));
    return true;
  }
  if (path === '/demo/style.css') {
    sendFile(req, res, join(WEB_DIR, 'style.css'), 'text/css', 'no-cache').catch(() => notFound(res, 'Demo'));
    return true;
  }
  if (path === '/demo/app.js') {
    // Built on first use when missing or older than its sources, so `npm start` serves a current demo.
    (async () => {
      if (await bundleIsStale()) building ??= buildWebDemo().finally(() => (building = undefined));
      if (building) await building;
      await sendFile(req, res, WEB_BUNDLE, 'text/javascript', 'no-cache');
    })().catch((e) => {
      logger.warn({ err: e }, 'web demo unavailable (is esbuild installed? npm run build:web)');
      notFound(res, 'Demo bundle');
    });
    return true;
  }
  return false;
}

async function bundleIsStale(): Promise<boolean> {
  const built = await stat(WEB_BUNDLE).catch(() => null);
  if (!built) return true;
  const dir = join(WEB_DIR, 'src');
  const files = await readdir(dir).catch(() => [] as string[]);
  const times = await Promise.all(files.map((f) => stat(join(dir, f)).then((s) => s.mtimeMs)));
  return times.some((t) => t > built.mtimeMs);
}
