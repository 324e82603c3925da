import http from 'node:http';
import { createClient, type Client, type ClientOptions, type ExecutionResult } from 'graphql-ws';
import WebSocket from 'ws';

export interface GqlResult<T = any> {
  status: number;
  data?: T;
  errors?: { message: string; extensions?: { code?: string; [k: string]: unknown }; path?: string[] }[];
  headers: Headers;
}

/**
 * Keeps connections open between a test's requests, as a browser does. Node's own client, not
 * fetch: undici's Request, Response and web streams cost 2-3 ms of CPU a request in a jest worker
 * (about 1 ms this way), and the suites make tens of thousands of requests on two cores.
 */
const agent = new http.Agent({ keepAlive: true });

/** One GraphQL request over HTTP, as a client sends it (`headers`: e.g. X-Forwarded-For to come from another address). */
export async function gql<T = any>(url: string, query: string, variables?: Record<string, unknown>, token?: string, headers: Record<string, string> = {}): Promise<GqlResult<T>> {
  const payload = Buffer.from(JSON.stringify({ query, variables }));
  const send = () => new Promise<{ status: number; headers: Headers; text: string }>((resolve, reject) => {
    const req = http.request(url, {
      method: 'POST',
      agent,
      headers: { 'content-type': 'application/json', 'content-length': payload.length, ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    });
    // A kept connection the server closed as idle just as this request went out (its keep-alive
    // timeout, 5 s): the server never read it, so it goes again on a new connection, as Node's
    // documentation advises (a CI run failed on it: read ECONNRESET after a pause in a test).
    req.on('error', (e: NodeJS.ErrnoException) => (req.reusedSocket && e.code === 'ECONNRESET' ? send().then(resolve, reject) : reject(e)));
    req.on('response', (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('error', reject);
      r.on('end', () => {
        const h = new Headers();
        for (const [k, v] of Object.entries(r.headers)) for (const one of ([] as (string | undefined)[]).concat(v)) if (one !== undefined) h.append(k, one);
        resolve({ status: r.statusCode!, headers: h, text: Buffer.concat(chunks).toString('utf8') });
      });
    });
    req.end(payload);
  });
  const res = await send();
  let body: any;
  try {
    body = JSON.parse(res.text);
  } catch {
    body = { errors: [{ message: res.text }] };
  }
  return { status: res.status, data: body.data ?? undefined, errors: body.errors, headers: res.headers };
}

/** The first error's code, or undefined. */
export function codeOf(r: GqlResult): string | undefined {
  return r.errors?.[0]?.extensions?.code;
}

/** Data or a thrown error naming what went wrong. */
export async function ok<T = any>(p: Promise<GqlResult<T>>): Promise<T> {
  const r = await p;
  if (r.errors?.length) throw new Error(`GraphQL errors: ${JSON.stringify(r.errors)}`);
  return r.data as T;
}

export interface WsClient {
  client: Client;
  /** Resolves once connected (connection_ack), rejects with the close event. */
  connected: Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
  dispose(): Promise<void>;
}

const openClients = new Set<WsClient>();

/**
 * A graphql-ws client; `token` goes in connectionParams unless `params` says otherwise. `options`
 * go to createClient (retries, connectionParams as a function); its `on` listeners are called too.
 */
export function wsClient(url: string, token?: string, params?: Record<string, unknown>, options: Partial<ClientOptions> = {}): WsClient {
  let resolveConnected!: () => void;
  let rejectConnected!: (e: unknown) => void;
  let resolveClosed!: (e: { code: number; reason: string }) => void;
  const connected = new Promise<void>((res, rej) => ((resolveConnected = res), (rejectConnected = rej)));
  const closed = new Promise<{ code: number; reason: string }>((res) => (resolveClosed = res));
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    lazy: false,
    retryAttempts: 0,
    connectionParams: params ?? (token ? { authorization: `Bearer ${token}` } : {}),
    // A close is the test's to check (`closed`): graphql-ws's default printed each one as a whole CloseEvent.
    onNonLazyError: () => undefined,
    ...options,
    on: {
      ...options.on,
      connected: (...args) => {
        resolveConnected();
        options.on?.connected?.(...args);
      },
      closed: (e: any) => {
        rejectConnected(e);
        resolveClosed({ code: e?.code, reason: e?.reason });
        options.on?.closed?.(e);
      },
    },
  });
  connected.catch(() => undefined);
  const w: WsClient = {
    client,
    connected,
    closed,
    async dispose() {
      openClients.delete(w);
      await client.dispose();
    },
  };
  openClients.add(w);
  return w;
}

export interface Subscription<T> {
  values: T[];
  errors: unknown[];
  /** Resolves with the n-th value (1-based) once it arrives, or rejects after `ms`. */
  nth(n: number, ms?: number): Promise<T>;
  /** Waits `ms` and returns what arrived in that time. */
  settle(ms: number): Promise<T[]>;
  done: Promise<void>;
  stop(): void;
}

/** What subscribe() needs of a client: graphql-ws's and graphql-sse's both subscribe this way. */
interface Subscribing {
  subscribe(request: { query: string; variables?: Record<string, unknown> }, sink: { next(r: ExecutionResult<any>): void; error(e: unknown): void; complete(): void }): () => void;
}

/**
 * Subscriptions on one socket whose results land in one log, in the order the socket got them (the
 * order a client applies them): `on` adds one, `line` making each result's data a line of the log.
 */
export function frameLog(w: { client: Subscribing }): { log: string[]; on(query: string, line: (data: any) => string, variables?: Record<string, unknown>): void } {
  const log: string[] = [];
  const on = (query: string, line: (data: any) => string, variables?: Record<string, unknown>) =>
    void w.client.subscribe({ query, variables }, { next: (r) => void (r.data && log.push(line(r.data))), error: () => undefined, complete: () => undefined });
  return { log, on };
}

/** Subscribes (over a graphql-ws or graphql-sse client) and collects every `next` payload's data. */
export function subscribe<T = any>(w: { client: Subscribing }, query: string, variables?: Record<string, unknown>): Subscription<T> {
  const values: T[] = [];
  const errors: unknown[] = [];
  const waiters: (() => void)[] = [];
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  const stop = w.client.subscribe(
    { query, variables },
    {
      next: (r: ExecutionResult<T>) => {
        if (r.errors) errors.push(...r.errors);
        if (r.data) values.push(r.data as T);
        waiters.splice(0).forEach((f) => f());
      },
      error: (e) => {
        errors.push(e);
        resolveDone();
        waiters.splice(0).forEach((f) => f());
      },
      complete: () => resolveDone(),
    },
  );
  return {
    values,
    errors,
    done,
    stop,
    nth(n, ms = 5000) {
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for value #${n}; got ${JSON.stringify(values)} errors ${JSON.stringify(errors)}`)), ms);
        const check = () => {
          if (values.length >= n) {
            clearTimeout(timer);
            resolve(values[n - 1]);
          } else waiters.push(check);
        };
        check();
      });
    },
    async settle(ms) {
      await new Promise((r) => setTimeout(r, ms));
      return values;
    },
  };
}

afterEach(async () => {
  await Promise.all([...openClients].map((c) => c.dispose()));
});

/** What listen() needs of a server: where to connect, and (an in-process TestServer) its fan-out's counts. */
interface Listenable {
  wsUrl: string;
  fanout?: { active: Record<string, number> };
}

// listen() calls on one server take turns, so each one's registration is the one it counts.
const listening = new WeakMap<object, Promise<unknown>>();

/**
 * A new socket for `user` with one subscription, resolved once the server runs it: an in-process
 * server's fan-out counts it (events published from then on reach it). A server in another process
 * shows no count, so there it is given REGISTER_MS instead.
 */
export async function listen<T = any>(server: Listenable, user: { token: string }, query: string, variables: Record<string, unknown> = {}): Promise<Subscription<T> & { ws: WsClient }> {
  const turn = (listening.get(server) ?? Promise.resolve()).then(async () => {
    const w = wsClient(server.wsUrl, user.token);
    await w.connected;
    const field = rootField(query);
    const active = server.fanout?.active;
    const before = active?.[field] ?? 0;
    const sub = subscribe<T>(w, query, variables);
    if (active) await eventually(() => (active[field] ?? 0) > before || sub.errors.length > 0);
    else await sleep(REGISTER_MS);
    return Object.assign(sub, { ws: w });
  });
  listening.set(server, turn.catch(() => undefined));
  return turn;
}

/** Resolves once `n` subscriptions of root field `field` run on the in-process server `s` (its fan-out's count). */
export function running(s: { fanout: { active: Record<string, number> } }, field: string, n: number): Promise<void> {
  return eventually(() => {
    expect(s.fanout.active[field] ?? 0).toBe(n);
    return true;
  }).then(() => undefined);
}

/** The wait for a subscription on a server that cannot say when it runs it (another process). */
export const REGISTER_MS = 150;

/** The root field a subscription document selects first (what the fan-out counts it under). */
function rootField(query: string): string {
  return /subscription\b[^{]*\{\s*(?:\w+\s*:\s*)?(\w+)/.exec(query)?.[1] ?? '';
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `fn` until it returns something truthy (which it returns: `eventually(() => values.find(...))`)
 * or `ms` pass, then throws with its last answer or error: an assertion inside (expect) that fails
 * is retried, and its message is what the timeout says.
 */
export async function eventually<T>(fn: () => Promise<T> | T, ms = 5000, every = 20): Promise<T> {
  const end = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await sleep(every);
  }
}
