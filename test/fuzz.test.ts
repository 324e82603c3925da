import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { parse, print, separateOperations, type OperationDefinitionNode, type TypeNode } from 'graphql';
import WebSocket from 'ws';
import { eventually, gql, ok, sleep } from './helpers/graphql';
import { buildGroup, befriend, signup, type TestUser } from './helpers/factories';
import { createTestServer, type TestServer } from './helpers/server';
import { HOSTILE_STRINGS, sql } from './helpers/db';

/**
 * Hostile input at volume: generated and mutated documents, variables, raw HTTP bodies and
 * WebSocket frames from one attacker account, against a running server. Seeded, so a failure
 * replays: FUZZ_SEED=<n> npx jest test/fuzz.test.ts
 */
const SEED = Number(process.env.FUZZ_SEED ?? 20261122);
const HTTP_CASES = 5000;
const RAW_CASES = 1000;
const WS_SOCKETS = 160;
const FRAMES_PER_SOCKET = 25;
/**
 * On a busy machine each phase stops early rather than overrun, but only past its floor: one phase
 * taking the whole budget left the others unrun (a run beside other work got through 2,456 documents
 * in 40 s and no raw body or frame at all). Shares of the budget, and the least each phase runs.
 */
const BUDGET_MS = 40_000;
const PHASES = { http: { share: 0.6, floor: 2000 }, raw: { share: 0.15, floor: 300 }, ws: { share: 0.25, floor: 48 } } as const;

/** What only the victims may read: seen in any answer to the attacker, it is a leak. */
const SECRETS = ['zq-private-plans', 'zq-just-us', 'zq-reply', 'zq-secret-group'];

/** mulberry32: small, fast, and the same sequence for the same seed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  return { next, int, pick, chance: (p: number) => next() < p };
}

type Rng = ReturnType<typeof prng>;

// Every operation clients use, each as a standalone document with its fragments.
function corpus(): { name: string; source: string; op: OperationDefinitionNode }[] {
  const dir = join(__dirname, '..', 'operations');
  const doc = parse(readdirSync(dir).filter((f) => f.endsWith('.graphql')).map((f) => readFileSync(join(dir, f), 'utf8')).join('\n'));
  return Object.entries(separateOperations(doc))
    .filter(([name]) => !['Logout', 'DeleteAccount'].includes(name)) // they would end the attacker's session, not test anything new
    .map(([name, d]) => ({ name, source: print(d), op: d.definitions.find((x): x is OperationDefinitionNode => x.kind === 'OperationDefinition')! }));
}

const EXTRA_DOCS = [
  '{ __typename }',
  '{ me { id } }',
  'query { history(conversation: {}) { totalCount } }',
  'query { history(conversation: { groupId: "1", userId: "2", projectId: "3" }, last: -1) { totalCount } }',
  'query { users(first: 100000) { totalCount } }',
  'query { groups(first: -5, after: "////") { totalCount } }',
  'mutation { sendMessage(input: { content: "" }) { id } }',
  '{ me { ...F } } fragment F on User { ...F }',
  '{ me { id @skip(if: "yes") } }',
  'subscription { messageAdded { id } }',
  'query A { me { id } } query B { me { id } }',
  '{ __schema { types { name fields { name type { name ofType { name ofType { name } } } } } } }',
  '{ __type(name: "User") { name } }',
];

function typeName(t: TypeNode): string {
  return t.kind === 'NamedType' ? t.name.value : typeName(t.type);
}

function hostileString(r: Rng): string {
  return r.pick([
    ...HOSTILE_STRINGS,
    'a'.repeat(r.int(70_000)),
    '\uD800', // a lone surrogate
    '{"$ne": null}',
    '../../etc/passwd',
    '%00',
    String.fromCharCode(...Array.from({ length: 40 }, () => r.int(0xffff))),
    Buffer.alloc(r.int(3000)).toString('base64'),
    'not base64 !!!',
    'AAAA=AAA',
  ]);
}

function garbage(r: Rng, depth = 0): unknown {
  switch (r.int(depth > 4 ? 6 : 9)) {
    case 0:
      return null;
    case 1:
      return r.pick([0, -1, 1.5, 2 ** 31, -(2 ** 53), 1e308, Number.MAX_SAFE_INTEGER]);
    case 2:
      return r.chance(0.5);
    case 3:
    case 4:
      return hostileString(r);
    case 5:
      return r.pick(['', '0', 'null', 'undefined', 'NaN', '[]', '{}']);
    case 6:
      return Array.from({ length: r.int(5) }, () => garbage(r, depth + 1));
    case 7: {
      // Deep nesting: objects within objects.
      let v: any = 'x';
      for (let i = 0, n = r.int(200); i < n; i++) v = { a: v };
      return v;
    }
    default:
      return Object.fromEntries(Array.from({ length: r.int(4) }, () => [r.pick(['content', 'groupId', 'base64', 'fileName', '__proto__', 'constructor', 'x']), garbage(r, depth + 1)]));
  }
}

/** Documents mutated at the character or token level. */
function mutate(r: Rng, src: string): string {
  let s = src;
  for (let i = 0, n = 1 + r.int(3); i < n; i++) {
    const at = r.int(s.length + 1);
    switch (r.int(9)) {
      case 0:
        s = s.slice(0, at) + s.slice(at + 1 + r.int(20));
        break;
      case 1:
        s = s.slice(0, at) + r.pick(['{', '}', '(', ')', '[', ']', ':', '$', '@', '"', '...', '!', '#', '\\', '\u0000', ' on ', '=']) + s.slice(at);
        break;
      case 2:
        s = s.slice(0, at) + s.slice(at, at + r.int(60)).repeat(2 + r.int(4)) + s.slice(at);
        break;
      case 3:
        s = s.slice(0, at) + ` ${r.pick(['__typename', 'id', 'me { id }', 'edges { node { id } }', '__schema { types { name } }', 'a: me { id }'])} ` + s.slice(at);
        break;
      case 4:
        s = s.replace(/\b(first|last)\b/, r.pick(['first', 'last', 'before', 'after'])).replace(/Int/, r.pick(['String', 'Float', 'ID', 'Boolean']));
        break;
      case 5:
        s = '{'.repeat(r.int(300)) + s + '}'.repeat(r.int(300));
        break;
      case 6:
        s = s.slice(0, at) + JSON.stringify(hostileString(r)) + s.slice(at);
        break;
      case 7:
        s = s.split('').reverse().join('').slice(0, r.int(s.length));
        break;
      default:
        s = s.slice(0, at) + ' '.repeat(r.int(5)) + s.slice(at).replace(/[A-Za-z]/, (c) => String.fromCharCode(c.charCodeAt(0) ^ 1));
    }
  }
  return s;
}

interface Pools {
  ids: string[];
}

function variablesFor(r: Rng, op: OperationDefinitionNode | undefined, pools: Pools): unknown {
  if (!op || r.chance(0.1)) return garbage(r);
  const vars: Record<string, unknown> = {};
  for (const v of op.variableDefinitions ?? []) {
    const t = typeName(v.type);
    if (r.chance(0.15)) continue;
    if (r.chance(0.3)) {
      vars[v.variable.name.value] = garbage(r);
      continue;
    }
    switch (t) {
      case 'ID':
        vars[v.variable.name.value] = r.chance(0.8) ? r.pick(pools.ids) : garbage(r);
        break;
      case 'Int':
        vars[v.variable.name.value] = r.pick([0, 1, 10, 100, -1, 2 ** 31 - 1, 1000]);
        break;
      case 'Boolean':
        vars[v.variable.name.value] = r.chance(0.5);
        break;
      case 'String':
        vars[v.variable.name.value] = r.chance(0.5) ? `fuzz ${r.int(1e6)}` : hostileString(r);
        break;
      case 'ConversationInput':
        vars[v.variable.name.value] = { [r.pick(['groupId', 'userId', 'projectId'])]: r.pick(pools.ids), ...(r.chance(0.2) ? { userId: r.pick(pools.ids) } : {}) };
        break;
      case 'SendMessageInput':
        vars[v.variable.name.value] = {
          [r.pick(['groupId', 'toUserId', 'projectId'])]: r.pick(pools.ids),
          ...(r.chance(0.7) ? { content: r.chance(0.7) ? `hi ${r.int(1000)}` : hostileString(r) } : {}),
          ...(r.chance(0.3) ? { attachment: { fileName: r.pick(['a.txt', 'x.png', '../../a.txt', 'a.exe', '', 'ok.pdf']), base64: r.chance(0.5) ? 'aGVsbG8=' : hostileString(r) } } : {}),
          ...(r.chance(0.3) ? { clientMessageId: hostileString(r).slice(0, r.int(100)) } : {}),
        };
        break;
      default:
        vars[v.variable.name.value] = garbage(r);
    }
  }
  return vars;
}

/** The codes API.md lists; clients switch on these. */
const CONTRACT_CODES = new Set(['UNAUTHENTICATED', 'FORBIDDEN', 'BAD_USER_INPUT', 'NOT_FOUND', 'CONFLICT', 'RATE_LIMITED', 'PAYLOAD_TOO_LARGE', 'SERVICE_UNAVAILABLE', 'INTERNAL_SERVER_ERROR']);

const STACK = /\n\s+at .+\(|stacktrace|node_modules|\.ts:\d+/;

/** What a GraphQL answer must look like: errors with a code, no stack, never INTERNAL_SERVER_ERROR. */
function checkErrors(errors: unknown, where: string, problems: string[]): void {
  if (errors === undefined) return;
  if (!Array.isArray(errors) || !errors.length) return void problems.push(`${where}: errors is not a non-empty array: ${JSON.stringify(errors).slice(0, 200)}`);
  for (const e of errors as any[]) {
    const code = e?.extensions?.code;
    if (typeof e?.message !== 'string' || typeof code !== 'string') problems.push(`${where}: error without message or code: ${JSON.stringify(e).slice(0, 300)}`);
    else if (!CONTRACT_CODES.has(code)) problems.push(`${where}: code outside the contract: ${JSON.stringify(e).slice(0, 300)}`);
    else if (code === 'INTERNAL_SERVER_ERROR') problems.push(`${where}: INTERNAL_SERVER_ERROR: ${JSON.stringify(e).slice(0, 300)}`);
    if (STACK.test(JSON.stringify(e))) problems.push(`${where}: stack in error: ${JSON.stringify(e).slice(0, 300)}`);
  }
}

/** Answers by kind ('data' or the first error's code), to show the fuzz reaches past the parser. */
const tally: Record<string, number> = {};
const count = (k: string) => (tally[k] = (tally[k] ?? 0) + 1);

const OK_STATUS = new Set([200, 400, 401, 403, 404, 405, 413, 415]);

async function httpCase(url: string, body: string, headers: Record<string, string>, where: string, problems: string[]): Promise<void> {
  const res = await fetch(url, { method: 'POST', headers, body });
  const text = await res.text();
  if (!OK_STATUS.has(res.status)) problems.push(`${where}: status ${res.status}: ${text.slice(0, 300)} for ${body.slice(0, 300)}`);
  for (const secret of SECRETS) if (text.includes(secret)) problems.push(`${where}: leaked '${secret}' for ${body.slice(0, 300)}`);
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    return void problems.push(`${where}: not JSON (${res.status}): ${text.slice(0, 200)}`);
  }
  if (json.errors === undefined && json.data === undefined) problems.push(`${where}: neither data nor errors: ${text.slice(0, 200)}`);
  count(json.errors ? `http ${json.errors[0]?.extensions?.code}` : 'http data');
  checkErrors(json.errors, where, problems);
}

const WS_MESSAGE_TYPES = new Set(['connection_ack', 'next', 'error', 'complete', 'pong', 'ping']);
// 1000/1001 normal; 1008 rate; 1009 frame too big; 4400 bad message; 4401 subscribe before ack; 4403 bad token;
// 4408 no init; 4409 duplicate id; 4429 too many inits; 1013 too many sockets.
const WS_CLOSE_CODES = new Set([1000, 1001, 1005, 1006, 1008, 1009, 1013, 4400, 4401, 4403, 4406, 4408, 4409, 4429]);

function wsFrame(r: Rng, token: string, docs: { source: string; op?: OperationDefinitionNode }[], pools: Pools): string | Buffer {
  const id = r.chance(0.9) ? String(r.int(30)) : (garbage(r) as any);
  const d = r.pick(docs);
  // Mostly frames a socket survives (so later ones reach execution), sometimes one that ends it.
  if (r.chance(0.85)) {
    switch (r.int(6)) {
      case 0:
        return JSON.stringify({ type: 'ping', payload: r.chance(0.5) ? { x: hostileString(r).slice(0, 1000) } : undefined });
      case 1:
        return JSON.stringify({ type: 'complete', id: String(r.int(30)) });
      default:
        return JSON.stringify({
          type: 'subscribe',
          id: String(r.int(1000)),
          payload: { query: r.chance(0.6) ? d.source : mutate(r, d.source), variables: variablesFor(r, d.op, pools), ...(r.chance(0.1) ? { operationName: hostileString(r).slice(0, 50) } : {}) },
        });
    }
  }
  switch (r.int(8)) {
    case 0:
      return '{"type": "subscribe", "id": ' + r.pick(['1', '"a"', 'null', '{']) + r.pick(['', '}', ', "payload": ']);
    case 1:
      return JSON.stringify({ type: r.pick(['next', 'error', 'connection_ack', 'hello', '', 'SUBSCRIBE', 'pong']), id, payload: garbage(r) });
    case 2:
      return JSON.stringify({ type: 'connection_init', payload: r.chance(0.5) ? { token } : garbage(r) });
    case 3:
      return JSON.stringify({ type: 'subscribe', id, payload: { query: garbage(r), variables: garbage(r), operationName: garbage(r) } });
    case 4:
      return Buffer.from(Array.from({ length: r.int(200) }, () => r.int(256)));
    case 5:
      return JSON.stringify({ type: 'subscribe', id: '1', payload: { query: '{ me { id } }' } }) + r.pick(['', 'x']);
    default:
      return JSON.stringify(garbage(r));
  }
}

/** One socket: an opening, a burst of frames, then a short wait; every answer and the close checked. */
async function wsCase(wsUrl: string, r: Rng, token: string, docs: { source: string; op?: OperationDefinitionNode }[], pools: Pools, where: string, problems: string[]): Promise<void> {
  const protocol = r.chance(0.95) ? 'graphql-transport-ws' : r.pick(['graphql-ws', 'nonsense']);
  const socket = new WebSocket(wsUrl, protocol);
  let closeCode: number | undefined;
  const closed = new Promise<void>((res) => socket.once('close', (code) => ((closeCode = code), res())));
  socket.on('error', () => undefined);
  socket.on('message', (data) => {
    for (const secret of SECRETS) if (String(data).includes(secret)) problems.push(`${where}: leaked '${secret}'`);
    let m: any;
    try {
      m = JSON.parse(String(data));
    } catch {
      return void problems.push(`${where}: non-JSON frame from server: ${String(data).slice(0, 200)}`);
    }
    if (!WS_MESSAGE_TYPES.has(m?.type)) problems.push(`${where}: unexpected message type ${m?.type}`);
    count(`ws ${m.type === 'next' ? (m.payload?.errors ? m.payload.errors[0]?.extensions?.code : 'data') : m.type}`);
    if (m.type === 'error') checkErrors(m.payload, `${where} error`, problems);
    if (m.type === 'next') checkErrors(m.payload?.errors, `${where} next`, problems);
  });
  const opened = await new Promise<boolean>((res) => {
    socket.once('open', () => res(true));
    socket.once('error', () => res(false));
    socket.once('unexpected-response', () => res(false));
  });
  if (!opened) return;
  const opening = r.chance(0.7) ? 0 : 1 + r.int(3); // 0: init with the token, 1: bad token, 2: nothing, 3: subscribe first
  if (opening === 0) socket.send(JSON.stringify({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } }));
  if (opening === 1) socket.send(JSON.stringify({ type: 'connection_init', payload: { token: hostileString(r).slice(0, 600) } }));
  if (opening === 3) socket.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query: '{ me { id } }' } }));
  await sleep(20);
  for (let i = 0; i < FRAMES_PER_SOCKET && socket.readyState === WebSocket.OPEN; i++) {
    socket.send(wsFrame(r, token, docs, pools));
    if (r.chance(0.2)) await sleep(2);
  }
  await Promise.race([closed, sleep(150)]);
  if (socket.readyState === WebSocket.OPEN) socket.close(1000);
  await Promise.race([closed, sleep(1000)]);
  count(`ws close ${closeCode}`);
  if (closeCode !== undefined && !WS_CLOSE_CODES.has(closeCode)) problems.push(`${where}: close code ${closeCode}`);
  socket.terminate();
}

/** Everything the victims own, as one comparable value. */
async function victimsData(db: string, ids: string[]): Promise<unknown> {
  const q = (text: string) => sql(db, text, [ids]);
  return {
    users: await q('select id, username, display_name, password_hash, deleted_at from users where id = any($1::uuid[]) order by id'),
    messages: await q('select id, content, sender_id, group_id, recipient_id, conversation_key from messages where sender_id = any($1::uuid[]) order by id'),
    groups: await q('select id, name, is_private, owner_id from groups where owner_id = any($1::uuid[]) order by id'),
    members: await q('select group_id, user_id from group_members where group_id in (select id from groups where owner_id = any($1::uuid[])) order by 1, 2'),
    friendships: await q("select * from friendships where user_a_id = any($1::uuid[]) or user_b_id = any($1::uuid[]) order by 1"),
    sessions: await q('select id, user_id from sessions where user_id = any($1::uuid[]) order by id'),
  };
}

function heapAfterGc(gc: () => void): number {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
}

describe('fuzz', () => {
  it('should answer thousands of hostile documents, bodies and frames with GraphQL errors or protocol closes, leaving other users untouched', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const r = prng(SEED);
    const s: TestServer = await createTestServer({ NODE_ENV: 'production' });
    const db = s.env.DATABASE_URL!;

    // The victims: friends with a direct conversation, a private group with history and an attachment.
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const requestId = await befriend(s.url, a, b);
    const group = (await buildGroup(s.url, a, { name: 'zq-secret-group', isPrivate: true, members: [b] })).id;
    const SEND = 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { id attachment { id } } }';
    const m1 = (await ok(gql(s.url, SEND, { input: { groupId: group, content: 'zq-private-plans', attachment: { fileName: 'plan.txt', base64: 'cGxhbnM=' } } }, a.token))).sendMessage;
    const m2 = (await ok(gql(s.url, SEND, { input: { toUserId: b.id, content: 'zq-just-us' } }, a.token))).sendMessage;
    const m3 = (await ok(gql(s.url, SEND, { input: { groupId: group, content: 'zq-reply' } }, b.token))).sendMessage;

    const attacker: TestUser = await signup(s.url);
    const pools: Pools = {
      ids: [a.id, b.id, attacker.id, group, m1.id, m2.id, m3.id, m1.attachment.id, requestId, '00000000-0000-0000-0000-000000000000', 'not-an-id', '', "1' or '1'='1", '-1', 'a'.repeat(300)],
    };
    const victimIds = [a.id, b.id];
    const before = await victimsData(db, victimIds);

    const ops = corpus();
    const docs = [...ops.map((o) => ({ source: o.source, op: o.op })), ...EXTRA_DOCS.map((source) => ({ source, op: undefined }))];
    const problems: string[] = [];
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${attacker.token}` };
    const started = Date.now();
    let heapBaseline = 0;

    // 1. Documents and variables over HTTP, 8 at a time.
    let ran = 0;
    let documentsRan = 0;
    /** Whether a phase goes on after `done` cases: up to its floor always, then while its share of the budget lasts. */
    const phase = (name: keyof typeof PHASES) => {
      const until = Date.now() + BUDGET_MS * PHASES[name].share;
      return (done: number) => done < PHASES[name].floor || Date.now() < until;
    };
    const httpGoesOn = phase('http');
    for (let i = 0; i < HTTP_CASES && httpGoesOn(i); i += 8, ran += 8, documentsRan += 8) {
      if (i === 200) heapBaseline = heapAfterGc(gc); // after warm-up: caches and pools are filled
      await Promise.all(
        Array.from({ length: 8 }, (_, k) => {
          const d = r.pick(docs);
          const source = r.chance(0.5) ? d.source : mutate(r, d.source);
          const body = JSON.stringify({ query: source, variables: variablesFor(r, d.op, pools), ...(r.chance(0.05) ? { operationName: r.pick(['X', 'Me', '', 'A']) } : {}) });
          return httpCase(s.url, body, r.chance(0.05) ? { 'content-type': 'application/json' } : headers, `http #${i + k}`, problems);
        }),
      );
    }

    // 2. Raw bodies: broken JSON, wrong shapes and content types.
    const rawBodies = [
      () => '{"query": ',
      () => 'null',
      () => '[]',
      () => '"just a string"',
      () => JSON.stringify({ query: garbage(r), variables: garbage(r), operationName: garbage(r), extensions: garbage(r) }),
      () => JSON.stringify({ query: '{ me { id } }', variables: 'not an object' }),
      () => JSON.stringify([{ query: '{ me { id } }' }, { query: '{ me { id } }' }]),
      () => Buffer.from(Array.from({ length: r.int(500) }, () => r.int(256))).toString('latin1'),
      () => JSON.stringify({ query: '{ me { id } }' }).replace('me', '\uD800'),
      () => '{' + '"a":{'.repeat(5000) + '}'.repeat(5001),
    ];
    const rawGoesOn = phase('raw');
    let rawRan = 0;
    for (let i = 0; i < RAW_CASES && rawGoesOn(i); i += 6, ran += 6, rawRan += 6) {
      await Promise.all(
        Array.from({ length: 6 }, (_, k) =>
          httpCase(s.url, r.pick(rawBodies)(), { ...headers, 'content-type': r.pick(['application/json', 'application/json', 'application/graphql-response+json', 'text/plain', 'application/x-www-form-urlencoded']) }, `raw #${i + k}`, problems),
        ),
      );
    }

    // 3. WebSocket frames, 8 sockets at a time.
    const wsGoesOn = phase('ws');
    let socketsRan = 0;
    for (let i = 0; i < WS_SOCKETS && wsGoesOn(i); i += 8, ran += 8 * FRAMES_PER_SOCKET, socketsRan += 8) {
      await Promise.all(Array.from({ length: 8 }, (_, k) => wsCase(s.wsUrl, r, attacker.token, docs, pools, `ws #${i + k}`, problems)));
    }
    const elapsed = Date.now() - started;

    expect(problems.slice(0, 20)).toEqual([]);
    // The server still serves, and the victims' data is exactly as it was.
    expect((await ok(gql(s.url, '{ me { id } }', {}, a.token))).me.id).toBe(a.id);
    expect(await victimsData(db, victimIds)).toEqual(before);
    // The attacker learned nothing of the private group or the direct conversation.
    const leaked = await sql(db, "select count(*)::int as n from messages where sender_id = $1 and (group_id = $2 or recipient_id = any($3::uuid[]))", [attacker.id, group, victimIds]);
    expect(leaked[0].n).toBe(0);

    // Measured once the fuzz's subscriptions are released.
    await eventually(() => Object.values(s.fanout.active).every((n) => n === 0));
    const heapAfter = heapAfterGc(gc);
    const grownMb = (heapAfter - heapBaseline) / 1024 / 1024;
    process.stdout.write(
      `fuzz: seed ${SEED}, ${ran} cases (${documentsRan} of ${HTTP_CASES} documents + ${rawRan} of ${RAW_CASES} raw bodies + ${socketsRan} of ${WS_SOCKETS} sockets×${FRAMES_PER_SOCKET} frames) in ${elapsed} ms; heap ${Math.round(heapBaseline / 1048576)} MB -> ${Math.round(heapAfter / 1048576)} MB\n`,
    );
    process.stdout.write(`fuzz answers: ${JSON.stringify(tally)}\n`);
    // Well-formed operations with fitting variables get through: the fuzz exercises resolvers, not only
    // the parser. Counted against the documents that ran, as the budget may stop them early on a busy
    // machine: a whole run answers 5.6% with data (282 of 5,000), and one CI run got 238 against a
    // bound of 250 taken from the documents planned. A share, so that a failure shows it.
    expect(tally['http data'] / documentsRan).toBeGreaterThan(0.04);
    // Tolerance: jest's module registry and V8's code caches grow a little whatever the server does.
    expect(grownMb).toBeLessThan(25);
  }, 120_000);
});
