import net from 'node:net';
import { createTestServer, itRedis } from './helpers/server';
import { eventually } from './helpers/graphql';
import { loadEnv } from '../src/config/env';

/** Sends one raw HTTP request on an already open connection and reads the status line's code. */
function statusOn(socket: net.Socket, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let text = '';
    socket.on('data', (d) => {
      text += d;
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (m) resolve(Number(m[1]));
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`closed before answering: ${text}`)));
    socket.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
  });
}

describe('operations endpoints', () => {
  it('should answer /readyz with 503 from the moment shutdown starts, and serve the rest for SHUTDOWN_DELAY', async () => {
    const s = await createTestServer({ SHUTDOWN_DELAY: '1s' });
    expect((await fetch(new URL('/readyz', s.url))).status).toBe(200);
    // A load balancer's connection, open before the stop begins.
    const socket = net.connect(s.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const stopping = s.dispose();
    const status = await statusOn(socket, '/readyz');
    socket.destroy();
    // New connections are still served meanwhile: the load balancer stops sending, nothing is refused yet.
    const ready = await fetch(new URL('/readyz', s.url));
    const health = await fetch(new URL('/healthz', s.url));
    const started = Date.now();
    await stopping;
    expect(status).toBe(503);
    expect([ready.status, health.status]).toEqual([503, 200]);
    expect(Date.now() - started).toBeGreaterThan(500);
  });

  itRedis('should ask PostgreSQL and Redis at once for /readyz, so that its wait is the longer of theirs, not the sum', async () => {
    const s = await createTestServer();
    const redis = s.services.redis!;
    let answer!: (ok: boolean) => void;
    const ping = s.database.ping;
    s.database.ping = () => new Promise<boolean>((resolve) => (answer = resolve));
    const redisPing = jest.spyOn(redis, 'ping');
    try {
      const ready = fetch(new URL('/readyz', s.url));
      // Redis is asked while the database has not answered yet.
      await eventually(() => redisPing.mock.calls.length === 1);
      answer(true);
      expect((await ready).status).toBe(200);
    } finally {
      s.database.ping = ping;
      redisPing.mockRestore();
    }
  });

  it('should serve /metrics only with the bearer METRICS_TOKEN when it is set', async () => {
    const token = 'a-metrics-token-0123456789';
    const s = await createTestServer({ METRICS_TOKEN: token });
    const scrape = (authorization?: string) => fetch(new URL('/metrics', s.url), { headers: authorization ? { authorization } : {} });
    const refused = await scrape();
    expect([refused.status, ((await refused.json()) as any).errors[0].extensions.code]).toEqual([401, 'UNAUTHENTICATED']);
    expect((await scrape(`Bearer ${token}x`)).status).toBe(401);
    expect((await scrape(`Bearer ${token.slice(1)}`)).status).toBe(401);
    const ok = await scrape(`Bearer ${token}`);
    expect(ok.status).toBe(200);
    // The scheme in any case, as /graphql takes it.
    expect((await scrape(`bearer ${token}`)).status).toBe(200);
    expect(await ok.text()).toContain('parley_open_sockets');
    // The rest of the server does not ask for it.
    expect((await fetch(new URL('/healthz', s.url))).status).toBe(200);
  });

  it('should refuse at start a METRICS_TOKEN no scraper could send: a space, or a character beyond ASCII', () => {
    for (const token of ['😀'.repeat(16), ' abcdefghijklmnopq ', 'abcdefgh ijklmnopq', 'é'.repeat(17)]) {
      expect(() => loadEnv({ METRICS_TOKEN: token })).toThrow(/METRICS_TOKEN must be printable ASCII/);
    }
    expect(loadEnv({ METRICS_TOKEN: 'a-metrics-token-0123456789' }).METRICS_TOKEN).toBe('a-metrics-token-0123456789');
  });

  it('should serve /metrics on METRICS_PORT only, not on the main port', async () => {
    const s = await createTestServer({ METRICS_PORT: '0' });
    expect(s.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    expect(new URL(s.metricsUrl!).port).not.toBe(String(s.port));
    expect((await fetch(new URL('/metrics', s.url))).status).toBe(404);
    const elsewhere = await fetch(new URL('/nope', s.metricsUrl!));
    expect([elsewhere.status, ((await elsewhere.json()) as any).errors[0].extensions.code]).toEqual([404, 'NOT_FOUND']);
    const res = await fetch(s.metricsUrl!);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('parley_graphql_operations_total');
    // Nothing else is served there.
    expect((await fetch(new URL('/graphql', s.metricsUrl!))).status).toBe(404);
    await s.dispose();
    await expect(fetch(s.metricsUrl!)).rejects.toThrow();
  });
});
