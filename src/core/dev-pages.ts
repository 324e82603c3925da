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
  // GraphiQL's bundle has graphql-ws inside but doesn't expose it: the page makes its own client (see graphiqlPage).
  'graphql-ws.min.js': { file: () => join(pkgDir('graphql-ws'), 'umd/graphql-ws.min.js'), type: 'text/javascript' },
};

/**
 * The tabs a first visit opens with: the common operations, ready to run. The header editor of
 * each starts with the last Authorization header used on this browser (see graphiqlPage).
 */
const DEFAULT_TABS: { query: string; variables?: string }[] = [
  {
    query: `# Welcome to Parley. Run Signup (or Login), then put the token in the Headers below:
#   { "Authorization": "Bearer <token>" }
# New tabs start with the headers you last edited, a tab whose Authorization is left ""
# uses that token too ({} sends none), and subscriptions use them as well
# (sent as graphql-ws connectionParams). A subscription without a valid token shows the
# socket's close reason (4403 Forbidden) as an error.

mutation Signup($username: String!, $password: String!) {
  signup(username: $username, password: $password) { token expiresAt user { id username } }
}

mutation Login($username: String!, $password: String!) {
  login(username: $username, password: $password) { token expiresAt user { id username status } }
}
`,
    variables: '{\n  "username": "ada",\n  "password": "correct horse battery"\n}',
  },
  {
    query: `# Who am I, and the groups I can see (the lobby reaches everyone).
query Me {
  me { id username displayName status }
  groups(first: 20) { edges { node { id name isLobby isPrivate memberCount } } }
}
`,
  },
  {
    query: `# 1. Run Groups and copy the lobby's id (isLobby: true) into the variables.
# 2. Run History: the newest messages, oldest first. Page back with "before": pageInfo.startCursor.
query Groups {
  groups(first: 50) { edges { node { id name isLobby memberCount } } }
}

query History($groupId: ID!, $before: String) {
  history(conversation: { groupId: $groupId }, last: 20, before: $before) {
    pageInfo { hasPreviousPage startCursor }
    edges { node { id content createdAt sender { username } attachment { fileName mimeType url } } }
  }
}
`,
    variables: '{\n  "groupId": "<the lobby id from Groups>",\n  "before": null\n}',
  },
  {
    query: `# To a group (groupId), a friend (toUserId) or a project (projectId).
mutation SendMessage($groupId: ID!) {
  sendMessage(input: { groupId: $groupId, content: "Hello from GraphiQL" }) { id createdAt }
}
`,
    variables: '{\n  "groupId": "<a group id from Me>"\n}',
  },
  {
    query: `# Every conversation you are in; pass conversation: { groupId | userId | projectId } for one.
subscription MessageAdded {
  messageAdded { id content createdAt sender { username } group { id name } recipient { username } project { title } }
}
`,
  },
  {
    query: `query OnlineUsers {
  onlineUsers(first: 50) { totalCount edges { node { id username status lastSeenAt } } }
}

subscription PresenceChanged {
  presenceChanged { status lastSeenAt user { id username } }
}
`,
  },
  {
    query: `query Friends {
  friends { id username status }
  friendRequests { id status from { username } to { username } }
}

mutation SendFriendRequest($userId: ID!) {
  sendFriendRequest(userId: $userId) { id status }
}
`,
    variables: '{\n  "userId": "<a user id from OnlineUsers>"\n}',
  },
  {
    query: `# Projects, and the inbox of what happened in them (worded for you).
query Projects {
  projects { id title viewerRole owner { username } coaches { username } participants { username } }
  projectActions(last: 20) { edges { node { kind message createdAt } } }
}

mutation CreateProject {
  createProject(title: "Launch") { id title }
}

subscription ProjectAction {
  projectAction { kind message createdAt project { title } }
}
`,
  },
];

/** What a tab added with "+" shows: GraphiQL's own default is a wall of comments about GraphiQL. */
const NEW_TAB_QUERY = '# A new tab keeps the headers you last edited.\n\nquery WhoAmI {\n  me { id username }\n}\n';

function graphiqlPage(): string {
  // One graphql-ws client per Authorization value: connectionParams go out once, when the
  // socket opens, so a new token needs its own socket. graphql-ws retries a 4403 close ("might
  // grant access after retry"), which left GraphiQL spinning for a minute: here a 4403 ends the
  // operation at once with the close reason as a GraphQL error in the response pane.
  // The headers last edited (in any tab) are kept in localStorage and passed to GraphiQL as
  // defaultHeaders, so "+" opens a tab that is already signed in (graphql-yoga does the same).
  // JSON in a <script>: "<" is escaped so no text can close the element.
  const json = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Parley · GraphiQL</title>
<link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/graphiql/assets/graphiql.min.css">
<style>html,body,#graphiql{height:100%;margin:0}</style>
</head>
<body>
<div id="graphiql">Loading GraphiQL…</div>
<script src="/graphiql/assets/react.production.min.js"></script>
<script src="/graphiql/assets/react-dom.production.min.js"></script>
<script src="/graphiql/assets/graphiql.min.js"></script>
<script src="/graphiql/assets/graphql-ws.min.js"></script>
<script>
(function () {
  var url = new URL('/graphql', location.href).href;
  var subscriptionUrl = url.replace(/^http/, 'ws');
  var HEADERS_KEY = 'parley:graphiql:headers';
  var EMPTY_HEADERS = '{\\n  "Authorization": ""\\n}';
  var clients = {};
  var fetchers = {};

  function authorizationOf(headers) {
    if (!headers) return '';
    for (var k in headers) if (k.toLowerCase() === 'authorization') return String(headers[k] || '');
    return '';
  }
  function isClose(e) { return !!e && typeof e.code === 'number' && 'reason' in e; }

  /** The client's subscribe, with a 4403 close (or any close that ends it) turned into a result with errors. */
  function wsClientFor(auth) {
    if (clients[auth]) return clients[auth];
    var client = graphqlWs.createClient({
      url: subscriptionUrl,
      connectionParams: auth ? { authorization: auth } : {},
      lazy: true,
      shouldRetry: function (e) { return isClose(e) && e.code !== 4403; },
    });
    clients[auth] = {
      subscribe: function (payload, sink) {
        return client.subscribe(payload, {
          next: function (v) { sink.next(v); },
          complete: function () { sink.complete(); },
          error: function (e) {
            if (!isClose(e)) return sink.error(e);
            var hint = e.code === 4403
              ? (auth ? ' The token in the Authorization header is not valid (expired or logged out): log in again.' : ' Subscriptions need a token: set { "Authorization": "Bearer <token>" } in Headers.')
              : '';
            sink.next({ errors: [{ message: 'The subscription socket was closed: ' + e.code + ' ' + (e.reason || '') + '.' + hint, extensions: { code: e.code === 4403 ? 'UNAUTHENTICATED' : 'SOCKET_CLOSED', closeCode: e.code, closeReason: e.reason || '' } }] });
            sink.complete();
          },
        });
      },
    };
    return clients[auth];
  }

  /** Whether the headers are the untouched template: an Authorization key, left empty. */
  function blankAuthorization(headers) {
    if (!headers) return false;
    for (var k in headers) if (k.toLowerCase() === 'authorization') return headers[k] === '';
    return false;
  }

  function fetcher(params, opts) {
    // A tab opened before the token was entered (the first visit's eight) still shows the
    // template: it runs with the token last entered in any tab, rather than none.
    if (opts && blankAuthorization(opts.headers)) {
      var saved = JSON.parse(savedHeaders());
      if (authorizationOf(saved)) {
        // The blank one goes whatever its case ("authorization" beside a saved "Authorization" made two).
        var headers = {};
        for (var k in opts.headers) if (k.toLowerCase() !== 'authorization') headers[k] = opts.headers[k];
        opts = Object.assign({}, opts, { headers: Object.assign(headers, saved) });
      }
    }
    var auth = authorizationOf(opts && opts.headers);
    if (!fetchers[auth]) fetchers[auth] = GraphiQL.createFetcher({ url: url, wsClient: wsClientFor(auth) });
    return fetchers[auth](params, opts);
  }

  function savedHeaders() {
    try {
      var h = localStorage.getItem(HEADERS_KEY);
      if (h && JSON.parse(h) && typeof JSON.parse(h) === 'object') return h;
    } catch (e) {}
    return EMPTY_HEADERS;
  }

  var tabs = ${json(DEFAULT_TABS)};
  function App() {
    var state = React.useState(savedHeaders);
    var headers = state[0];
    var defaultTabs = React.useState(function () {
      return tabs.map(function (t) { return { query: t.query, variables: t.variables, headers: headers }; });
    })[0];
    // GraphiQL 3 opens a first visit's first tab with its query but an empty variables editor (it
    // takes the query from defaultTabs and the variables only from storage, where nothing is until
    // an edit): Signup ran without them (an outside probe). A later visit matched the stored active
    // tab by query, variables and headers, found none (no variables stored) and opened an empty
    // copy of it. Given here: the first tab's variables on a first visit; after, what storage
    // lacks of the stored active tab (what it holds, newer, GraphiQL reads itself).
    var initial = React.useState(function () {
      try {
        var stored = JSON.parse(localStorage.getItem('graphiql:tabState') || 'null');
        if (!stored) return { variables: tabs[0].variables };
        var active = stored.tabs && stored.tabs[stored.activeTabIndex];
        if (!active) return {};
        var missing = function (key, value) { return localStorage.getItem('graphiql:' + key) === null ? value : undefined; };
        return { query: missing('query', active.query), variables: missing('variables', active.variables), headers: missing('headers', active.headers) };
      } catch (e) { return {}; }
    })[0];
    return React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultTabs: defaultTabs,
      query: initial.query,
      variables: initial.variables,
      headers: initial.headers,
      defaultQuery: ${json(NEW_TAB_QUERY)},
      defaultHeaders: headers,
      onEditHeaders: function (value) {
        try {
          var parsed = JSON.parse(value);
          if (!parsed || typeof parsed !== 'object') return;
        } catch (e) { return; } // half-typed: keep the last complete headers
        // Switching to a tab that still shows the template reports its headers as an edit: that
        // replaced the token just entered in another tab, and "+" then opened tabs without it.
        if (blankAuthorization(parsed) && authorizationOf(JSON.parse(savedHeaders()))) return;
        try { localStorage.setItem(HEADERS_KEY, value); } catch (e) {}
        state[1](value);
      },
      defaultEditorToolsVisibility: 'headers',
      shouldPersistHeaders: true,
    });
  }

  window.parleyGraphiQL = { url: url, subscriptionUrl: subscriptionUrl };
  ReactDOM.createRoot(document.getElementById('graphiql')).render(React.createElement(App));
})();
</script>
</body>
</html>
`;
}

const root = findRoot();
const WEB_DIR = join(root, 'examples/web');
const WEB_BUNDLE = join(WEB_DIR, 'dist/app.js');

/** Whether the web demo is here to serve: a checkout has it, the container image leaves it out. */
let demo: boolean | undefined;
export const hasDemo = (): boolean => (demo ??= existsSync(join(WEB_DIR, 'index.html')));

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
  // A browser opening the address the server prints (or its root) gets GraphiQL, not the CSRF
  // refusal Apollo Server gives a bare GET of /graphql (an outside probe: a newcomer's first click).
  if ((path === '/graphql' || path === '/') && !req.url?.includes('?') && req.headers.accept?.includes('text/html')) {
    res.writeHead(302, { location: '/graphiql' });
    res.end();
    return true;
  }
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
  // Without the demo its paths are any unknown path's: a JSON 404 with its code.
  if ((path === '/demo' || path.startsWith('/demo/')) && !hasDemo()) return false;
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
