import { createClient as createWsClient, type Client as WsClient } from 'graphql-ws';
import { createClient as createSseClient, type Client as SseClient } from 'graphql-sse';
import WebSocket from 'ws';
import { createTestServer, describeRedis, type SpawnedTestServer } from './helpers/server';
import { TcpProxy } from './helpers/tcp-proxy';
import { alone } from './helpers/alone';
import { gql, sleep } from './helpers/graphql';
import { buildGroup, signup, type TestUser } from './helpers/factories';

/**
 * Half on graphql-ws, half on graphql-sse: 200, as the issue asks. ROLLING_CLIENTS=100 on a machine
 * shared with other heavy work, where some of 200 can take over the 10 s bound just to be accepted.
 */
const CLIENTS = Number(process.env.ROLLING_CLIENTS ?? 200);
const GROUP_SIZE = 10;
/** Each client sends about this often. */
const SEND_EVERY_MS = 4000;
const GRACE_S = 5;
const SHUTDOWN_S = 10;
/** Codes a send may fail with that a client retries with the same clientMessageId. */
const RETRYABLE = new Set(['SERVICE_UNAVAILABLE']);

const SEND = 'mutation($input: SendMessageInput!) { sendMessage(input: $input) { id clientMessageId } }';
const ADDED = 'subscription($c: ConversationInput) { messageAdded(conversation: $c) { id clientMessageId } }';
const HISTORY = 'query($c: ConversationInput!, $before: String) { history(conversation: $c, last: 100, before: $before) { edges { node { id clientMessageId } } pageInfo { hasPreviousPage startCursor } } }';
const PRESENCE = 'subscription($ids: [ID!]) { presenceChanged(userIds: $ids) { status user { id } } }';

/** One simulated user: subscribed to their group's messages, sending steadily, catching up by history after each reconnection. */
interface Sim {
  user: TestUser;
  groupId: string;
  kind: 'ws' | 'sse';
  /** Message ids as they arrived live, repeats kept. */
  live: string[];
  /** When each of `live` arrived (ms from the start): told when a check fails. */
  liveAt: number[];
  /** Every message id the client has, live or by catch-up. */
  seen: Set<string>;
  /** clientMessageId -> the id of the message the server acknowledged. */
  acked: Map<string, string>;
  /** Failed attempts: a transport failure ('transport') or the error's code. */
  failures: string[];
  /** How long each reconnection took (ms), from losing the connection to having it again. */
  gaps: number[];
  downSince?: number;
  /** What happened to its connection, with times relative to the start: told when a check fails. */
  log: string[];
  sending: Promise<void>;
  close(): Promise<void>;
}

async function historyOf(url: string, token: string, groupId: string): Promise<{ id: string; clientMessageId: string | null }[]> {
  const all: { id: string; clientMessageId: string | null }[] = [];
  let before: string | undefined;
  for (;;) {
    const r = await gql(url, HISTORY, { c: { groupId }, before }, token);
    if (r.errors) throw new Error(JSON.stringify(r.errors));
    all.unshift(...r.data.history.edges.map((e: any) => e.node));
    if (!r.data.history.pageInfo.hasPreviousPage) return all;
    before = r.data.history.pageInfo.startCursor;
  }
}

describeRedis('rolling restart', () => {
  jest.setTimeout(170_000);

  // Its bounds are times (every client back within 10 s): beside another worker's heavy suite on
  // two cores it took 71-73 s instead of ~28 and clients 10.4-15 s (CI, stops 43 and 46). It runs
  // last (test/setup/sequencer.js) and starts once the other worker's last suite is over.
  beforeAll(async () => {
    const waited = await alone(10 * 60_000);
    if (waited.length) process.stdout.write(`rolling: waited for ${waited.join(', ')} to end\n`);
  }, 10 * 60_000 + 5_000);

  it('should lose, repeat and strand nothing while each of three instances is restarted under load', async () => {
    const vars = { PRESENCE_GRACE: `${GRACE_S}s`, SHUTDOWN_TIMEOUT: `${SHUTDOWN_S}s`, WS_MAX_SOCKETS_PER_USER: '100' };
    const start = async (clean: boolean) => {
      const s = await createTestServer({ ...vars }, { spawn: true, clean });
      return s;
    };
    const instances: SpawnedTestServer[] = [await start(true)];
    instances.push(...(await Promise.all([start(false), start(false)])));
    const proxy = new TcpProxy(instances.map((s) => ({ host: '127.0.0.1', port: s.port })));
    await proxy.start();
    const http = `http://127.0.0.1:${proxy.port}/graphql`;
    const sims: Sim[] = [];
    const began = Date.now();
    const step = (what: string) => process.env.ROLLING_VERBOSE && process.stdout.write(`rolling +${Date.now() - began} ms: ${what}\n`);
    let running = true;
    let stop!: () => void;
    const stopped = new Promise<void>((resolve) => (stop = resolve));
    /** Waits `ms`, or until the run stops, leaving no timer behind to keep the jest worker from exiting. */
    const pause = (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        void stopped.then(() => (clearTimeout(timer), resolve()));
      });
    const watchers: WsClient[] = [];
    try {
      // Users in groups of GROUP_SIZE, made directly on the instances.
      const users: TestUser[] = [];
      for (let i = 0; i < CLIENTS; i += 12) users.push(...(await Promise.all(Array.from({ length: Math.min(12, CLIENTS - i) }, (_, k) => signup(instances[k % 3].url)))));
      const groups: string[] = [];
      for (let g = 0; g * GROUP_SIZE < CLIENTS; g += 4) {
        groups.push(
          ...(await Promise.all(
            Array.from({ length: Math.min(4, Math.ceil(CLIENTS / GROUP_SIZE) - g) }, async (_, k) => {
              const members = users.slice((g + k) * GROUP_SIZE, (g + k + 1) * GROUP_SIZE);
              return (await buildGroup(instances[0].url, members[0], { members: members.slice(1) })).id;
            }),
          )),
        );
      }

      const offline: { userId: string; at: number }[] = [];
      const makeSim = (user: TestUser, index: number): Sim => {
        const groupId = groups[Math.floor(index / GROUP_SIZE)];
        const kind: Sim['kind'] = index % 2 === 0 ? 'ws' : 'sse';
        const sim: Sim = { user, groupId, kind, live: [], liveAt: [], seen: new Set(), acked: new Map(), failures: [], gaps: [], log: [], sending: Promise.resolve(), close: async () => undefined };
        const note = (what: string) => sim.log.push(`${Date.now() - began} ${what}`);
        const down = () => {
          note('down');
          sim.downSince ??= Date.now();
        };
        // The recipe of docs/CLIENTS.md: on connecting, and after each reconnection, take what was said
        // meanwhile from history, paging back to what the client already has.
        const catchUp = async () => {
          // Once the (re-)sent subscription is registered, so nothing falls between the two.
          await sleep(300);
          let before: string | undefined;
          for (let attempt = 0; attempt < 40; ) {
            const r = await gql(http, HISTORY, { c: { groupId }, before }, user.token).catch(() => undefined);
            if (!r?.data) {
              attempt++;
              await sleep(250);
              continue;
            }
            const ids: string[] = r.data.history.edges.map((e: any) => e.node.id);
            const known = ids.some((id) => sim.seen.has(id));
            ids.forEach((id) => sim.seen.add(id));
            note(`caught up ${ids.length}`);
            if (known || !r.data.history.pageInfo.hasPreviousPage) return;
            before = r.data.history.pageInfo.startCursor;
          }
        };
        const up = (reconnected: boolean) => {
          note(`up${reconnected ? ' again' : ''}`);
          if (sim.downSince !== undefined) sim.gaps.push(Date.now() - sim.downSince);
          sim.downSince = undefined;
          void catchUp();
        };
        const onMessage = (m: { id: string }) => {
          sim.live.push(m.id);
          sim.liveAt.push(Date.now() - began);
          sim.seen.add(m.id);
        };
        const retryWait = async (n: number): Promise<void> => void (await sleep(100 + Math.random() * Math.min(1000, 100 * 2 ** n)));
        let send: (input: Record<string, unknown>) => Promise<{ id: string } | { code: string }>;
        if (kind === 'ws') {
          const client = createWsClient({
            url: http.replace('http', 'ws'),
            webSocketImpl: WebSocket,
            connectionParams: { authorization: `Bearer ${user.token}` },
            lazy: false,
            retryAttempts: Infinity,
            shouldRetry: () => true,
            retryWait,
            onNonLazyError: () => undefined,
            on: { connected: (_s, _p, wasRetry) => up(wasRetry), closed: down },
          });
          client.subscribe<any>({ query: ADDED, variables: { c: { groupId } } }, { next: (r) => r.data && onMessage(r.data.messageAdded), error: () => undefined, complete: () => undefined });
          send = (input) =>
            new Promise((resolve) => {
              let result: { id: string } | { code: string } = { code: 'transport' };
              client.subscribe<any>({ query: SEND, variables: { input } }, {
                next: (r) => (result = r.data ? r.data.sendMessage : { code: r.errors?.[0]?.extensions?.code ?? 'unknown' }),
                error: () => resolve({ code: 'transport' }),
                complete: () => resolve(result),
              });
            });
          sim.close = () => client.dispose() as Promise<void>;
        } else {
          const client: SseClient = createSseClient({
            url: http.replace(/\/graphql$/, '/graphql/stream'),
            fetchFn: fetch,
            headers: { authorization: `Bearer ${user.token}` },
            retryAttempts: Infinity,
            retry: retryWait,
          });
          client.subscribe<any>({ query: ADDED, variables: { c: { groupId } } }, { next: (r) => r.data && onMessage(r.data.messageAdded), error: () => undefined, complete: () => undefined }, {
            connecting: (reconnecting) => reconnecting && down(),
            connected: up,
          });
          send = async (input) => {
            const r = await gql(http, SEND, { input }, user.token).catch(() => undefined);
            if (!r) return { code: 'transport' };
            return r.data?.sendMessage ?? { code: r.errors?.[0]?.extensions?.code ?? 'unknown' };
          };
          sim.close = async () => client.dispose();
        }
        // Steady sends, each retried with its clientMessageId until acknowledged.
        sim.sending = (async () => {
          await sleep(Math.random() * SEND_EVERY_MS);
          for (let n = 0; running; n++) {
            const clientMessageId = `${user.id}:${n}`;
            for (;;) {
              const r = await send({ groupId, content: `m${n}`, clientMessageId });
              if ('id' in r) {
                note(`acked ${r.id}`);
                sim.acked.set(clientMessageId, r.id);
                sim.seen.add(r.id);
                break;
              }
              sim.failures.push(r.code);
              if (r.code !== 'transport' && !RETRYABLE.has(r.code)) break;
              await retryWait(2);
            }
            await pause(SEND_EVERY_MS * (0.5 + Math.random()));
          }
        })();
        return sim;
      };
      step('users and groups made');
      users.forEach((u, i) => sims.push(makeSim(u, i)));
      // Two watchers of the WebSocket users' presence, on connections of their own.
      const watched = sims.filter((s) => s.kind === 'ws').map((s) => s.user.id);
      for (const chunk of [watched.slice(0, 50), watched.slice(50, 100)].filter((c) => c.length)) {
        const watcher = createWsClient({
          url: http.replace('http', 'ws'),
          webSocketImpl: WebSocket,
          connectionParams: { authorization: `Bearer ${users[0].token}` },
          retryAttempts: Infinity,
          shouldRetry: () => true,
          lazy: false,
          onNonLazyError: () => undefined,
        });
        watcher.subscribe<any>({ query: PRESENCE, variables: { ids: chunk } }, {
          next: (r) => r.data?.presenceChanged.status === 'OFFLINE' && offline.push({ userId: r.data.presenceChanged.user.id, at: Date.now() }),
          error: () => undefined,
          complete: () => undefined,
        });
        watchers.push(watcher);
      }
      await sleep(3000);

      // Each instance in turn: SIGTERM (the balancer takes it out at once, as /readyz tells it), then a new one in its place.
      const exits: { ms: number; code: number | null }[] = [];
      for (let i = 0; i < instances.length; i++) {
        const old = instances[i];
        proxy.targets = proxy.targets.filter((t) => t.port !== old.port);
        const signalled = Date.now();
        step(`SIGTERM instance ${i}`);
        old.process.child.kill('SIGTERM');
        const code = await old.process.exited;
        exits.push({ ms: Date.now() - signalled, code });
        step(`instance ${i} exited ${code} after ${Date.now() - signalled} ms`);
        instances[i] = await start(false);
        proxy.targets.push({ host: '127.0.0.1', port: instances[i].port });
        step(`instance ${i} replaced`);
        await sleep(3000);
      }
      await sleep(2000);
      running = false;
      stop();
      await Promise.all(sims.map((s) => s.sending));
      step('sends settled');
      // The last sends' deliveries.
      await sleep(1500);

      expect(exits.every((e) => e.ms < SHUTDOWN_S * 1000 && e.code === 0)).toBe(true);
      // Every acknowledged message is in its group's history exactly once, under its clientMessageId.
      for (const groupId of groups) {
        const members = sims.filter((s) => s.groupId === groupId);
        const acked = new Map(members.flatMap((s) => [...s.acked]));
        const history = await historyOf(http, members[0].user.token, groupId);
        const byKey = new Map<string, string[]>();
        for (const m of history) byKey.set(m.clientMessageId!, [...(byKey.get(m.clientMessageId!) ?? []), m.id]);
        expect([...byKey].filter(([, ids]) => ids.length !== 1)).toEqual([]);
        expect(history.length).toBe(acked.size);
        for (const [key, id] of acked) expect(byKey.get(key)).toEqual([id]);
        // ...and reached every member once: live without repeats, the rest by catching up.
        for (const s of members) {
          expect(s.live.length).toBe(new Set(s.live).size);
          const missed = [...acked.values()].filter((id) => !s.seen.has(id));
          const sentBy = (id: string) => members.find((m) => [...m.acked.values()].includes(id))!;
          // Where the missed one stands in the group's order, and what reached this member live around it.
          const around = (id: string) => {
            const at = history.findIndex((m) => m.id === id);
            return history
              .slice(Math.max(0, at - 3), at + 4)
              .map((m) => `${m.id === id ? '*' : ''}${m.id.slice(0, 8)} ${s.live.includes(m.id) ? `live at ${s.liveAt[s.live.indexOf(m.id)]}` : s.seen.has(m.id) ? 'caught up' : 'missing'}`)
              .join(', ');
          };
          const story = () =>
            `${s.kind} ${s.user.id} missed ${missed.map((id) => `${id} (sender: ${sentBy(id).log.filter((l) => l.includes(id) || !l.includes('acked')).join(', ')}; in order: ${around(id)})`).join('; ')}\n  its own log: ${s.log.filter((l) => !l.includes('acked')).join(', ')}`;
          if (missed.length) throw new Error(story());
        }
      }
      const failures = sims.flatMap((s) => s.failures);
      expect(failures.filter((c) => c !== 'transport' && !RETRYABLE.has(c))).toEqual([]);
      // Every client is back, each time within 10 s.
      expect(sims.filter((s) => s.downSince !== undefined).map((s) => s.user.id)).toEqual([]);
      const gaps = sims.flatMap((s) => s.gaps);
      const slowest = (kind: Sim['kind']) => Math.max(0, ...sims.filter((s) => s.kind === kind).flatMap((s) => s.gaps));
      const late = sims.filter((s) => s.gaps.some((g) => g >= 10_000));
      if (late.length) throw new Error(`${late.length} clients took 10 s or more to reconnect (longest: ws ${slowest('ws')} ms, sse ${slowest('sse')} ms), e.g. ${late[0].kind}: ${late[0].log.filter((l) => !l.includes('acked')).join(', ')}`);
      // Nobody whose socket moved within PRESENCE_GRACE was shown OFFLINE.
      const movedInTime = new Set(sims.filter((s) => s.kind === 'ws' && s.gaps.every((g) => g < GRACE_S * 1000)).map((s) => s.user.id));
      expect(offline.filter((o) => movedInTime.has(o.userId))).toEqual([]);
      // The restarts did move clients: most reconnected at least once.
      expect(sims.filter((s) => s.gaps.length > 0).length).toBeGreaterThan(CLIENTS / 2);
      const sent = sims.reduce((n, s) => n + s.acked.size, 0);
      process.stdout.write(
        `rolling: ${CLIENTS} clients, ${sent} messages acknowledged, ${failures.length} failed attempts retried (${failures.filter((c) => c === 'transport').length} transport), ` +
          `${gaps.length} reconnections (longest: ws ${slowest('ws')} ms, sse ${slowest('sse')} ms), exits ${exits.map((e) => `${e.ms} ms`).join(', ')}\n`,
      );
    } finally {
      running = false;
      await Promise.all([...sims.map((s) => s.close().catch(() => undefined)), ...watchers.map((w) => w.dispose())]);
      await proxy.cut();
    }
  });
});
