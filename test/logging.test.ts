import http from 'node:http';
import { Configuration } from '@mikro-orm/core';
import { loadEnv } from '../src/config/env';
import { ormConfig } from '../src/core/mikro-orm.config';
import { createLogger } from '../src/shared/logger';
import { eventually, sleep } from './helpers/graphql';
import { lobbyOf, signup } from './helpers/factories';
import { OwnRedis } from './helpers/redis-server';
import { captureLines, createTestServer } from './helpers/server';
import { itNeeding, tools } from './helpers/tools';

describe('request logging', () => {
  itNeeding('redis-server', tools.redisServer)('should put the request id on every line logged while a request is handled, services included', async () => {
    const redis = new OwnRedis();
    await redis.start();
    let stopped = false;
    const s = await createTestServer({ LOG_LEVEL: 'debug', REDIS_URL: redis.url }, { captureLogs: true });
    const lines = s.logs;
    try {
      const a = await signup(s.url);
      const lobby = await lobbyOf(s.url, a.token);
      // Redis away: the presence service and the pub/sub log warnings of their own during the request.
      await redis.stop();
      stopped = true;
      await eventually(async () => (await fetch(new URL('/readyz', s.url))).status === 503, 5000);

      const res = await fetch(s.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${a.token}`, 'x-request-id': 'rid-logging-1' },
        body: JSON.stringify({ query: 'mutation($g: ID!) { sendMessage(input: { groupId: $g, content: "logged" }) { id } }', variables: { g: lobby } }),
      });
      expect(res.headers.get('x-request-id')).toBe('rid-logging-1');
      expect(((await res.json()) as any).data.sendMessage.id).toEqual(expect.any(String));
      await eventually(() => lines.some((l) => l.json.msg === 'request' && l.json.requestId === 'rid-logging-1'));

      const ofRequest = lines.filter((l) => l.json.requestId === 'rid-logging-1');
      const messages = ofRequest.map((l) => l.json.msg as string);
      expect(messages).toEqual(expect.arrayContaining(['request', expect.stringMatching(/^publish failed/)]));
      expect(ofRequest.find((l) => l.json.msg === 'request')!.json).toMatchObject({ method: 'POST', status: 200 });
      // The pub/sub logs through its own logger, not ctx.logger, and still carries the id.
      expect(lines.filter((l) => /^publish failed/.test(l.json.msg)).every((l) => l.json.requestId === 'rid-logging-1')).toBe(true);
      // The key appears once per line, also on ctx.logger's lines that bind it themselves.
      expect(ofRequest.every((l) => l.raw.split('"requestId"').length === 2)).toBe(true);
      // Lines outside any request carry none.
      expect(lines.filter((l) => l.json.msg === 'redis connection error').every((l) => l.json.requestId === undefined)).toBe(true);
      // Another send failing as Redis is still away: its line too, at debug and without the stack
      // the first carried (one warning in 10 s, however many sends fail).
      await fetch(s.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${a.token}`, 'x-request-id': 'rid-logging-2' },
        body: JSON.stringify({ query: 'mutation($g: ID!) { sendMessage(input: { groupId: $g, content: "logged again" }) { id } }', variables: { g: lobby } }),
      });
      const failedLines = () => lines.filter((l) => /^publish failed/.test(l.json.msg));
      await eventually(() => failedLines().some((l) => l.json.requestId === 'rid-logging-2'));
      const failed = failedLines();
      expect(failed[0].json.err.stack).toEqual(expect.any(String));
      const again = failed.find((l) => l.json.requestId === 'rid-logging-2')!.json;
      expect([again.err, typeof again.reason]).toEqual([undefined, 'string']);
      expect([failed[0].json.level, again.level]).toEqual(['warn', 'debug']);
    } finally {
      await s.dispose();
      if (!stopped) await redis.stop();
    }
  });

  itNeeding('redis-server', tools.redisServer)("should warn once, not err each tick, when the presence sweep's slot can't be claimed with Redis away", async () => {
    const redis = new OwnRedis();
    await redis.start();
    const s = await createTestServer({ LOG_LEVEL: 'debug', REDIS_URL: redis.url, PRESENCE_SWEEP_CRON: '* * * * * *' }, { captureLogs: true, jobs: true });
    try {
      await redis.stop();
      const ofSweep = () => s.logs.filter((l) => l.json.job === 'presence-sweep');
      // Two ticks at least, each skipped (before, each said so as an error).
      await eventually(() => ofSweep().filter((l) => /presence sweep skipped|Run coordinator failed/.test(l.json.msg)).length >= 2, 8000);
      expect(ofSweep().filter((l) => ['error', 'fatal'].includes(l.json.level)).map((l) => l.json.msg)).toEqual([]);
      expect(ofSweep().filter((l) => l.json.level === 'warn' && /presence sweep skipped/.test(l.json.msg))).toHaveLength(1);
    } finally {
      await s.dispose();
      await redis.stop();
    }
  }, 30_000);

  it('should log no error when a client hangs up before its body is whole, with or without a token, and still answer the next request', async () => {
    const s = await createTestServer({ LOG_LEVEL: 'debug' }, { captureLogs: true });
    const a = await signup(s.url);
    const { port } = new URL(s.url);
    for (const [path, token] of [['/graphql', null], ['/graphql', a.token], ['/graphql/stream', a.token]] as const) {
      const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', headers: { accept: 'text/event-stream', 'content-type': 'application/json', 'content-length': 100, ...(token ? { authorization: `Bearer ${token}` } : {}) } });
      req.on('error', () => undefined);
      let answered: number | undefined;
      req.on('response', (res) => (answered = res.statusCode));
      // Half a body, then gone; the server has read the half.
      req.write('{"query":"{ me { id } }');
      await sleep(100);
      req.destroy();
      await sleep(150);
      expect(answered).toBeUndefined();
    }
    const me = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${a.token}` }, body: JSON.stringify({ query: '{ me { id } }' }) });
    expect(((await me.json()) as any).data.me.id).toBe(a.id);
    expect(s.logs.filter((l) => ['error', 'fatal'].includes(l.json.level)).map((l) => l.json.msg)).toEqual([]);
    // The lines are there to read: a failure would have been among them.
    expect(s.logs.some((l) => l.json.msg === 'request' && l.json.status === 200)).toBe(true);
  });
});

describe('log format', () => {
  it('should write JSON lines with ISO times and level names', async () => {
    const { lines, stream } = captureLines();
    const logger = createLogger({ LOG_LEVEL: 'info', LOG_PRETTY: false }, {}, stream);
    logger.info({ answer: 42 }, 'hello');
    logger.child({ part: 'x' }).warn('careful');
    await eventually(() => lines.length === 2);
    expect(lines[0].json).toMatchObject({ level: 'info', msg: 'hello', answer: 42 });
    expect(lines[1].json).toMatchObject({ level: 'warn', msg: 'careful', part: 'x' });
    for (const { json } of lines) {
      expect(json.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(Math.abs(Date.parse(json.time) - Date.now())).toBeLessThan(60_000);
    }
  });

  it("should keep ANSI colours out of the ORM's lines (its migrator's, say), which JSON logs would carry as escapes", async () => {
    const { lines, stream } = captureLines();
    const logger = createLogger({ LOG_LEVEL: 'trace', LOG_PRETTY: false }, {}, stream);
    const config = new Configuration(ormConfig({ clientUrl: 'postgres://nobody@127.0.0.1:1/none', poolMax: 1, logger, entities: [] }), false);
    config.getLogger().log('migrator', "Applied 'Migration1'", { enabled: true });
    await eventually(() => lines.length === 1);
    expect(lines[0].json.msg).toBe("[migrator] Applied 'Migration1'");
    expect(lines[0].raw).not.toContain('\\u001b');
  });

  it('should default to JSON whenever stdout is not a terminal, and to pretty logs only in development on one', () => {
    expect(loadEnv({ NODE_ENV: 'development' }, false).LOG_PRETTY).toBe(false);
    expect(loadEnv({ NODE_ENV: 'development' }, true).LOG_PRETTY).toBe(true);
    expect(loadEnv({ NODE_ENV: 'production' }, true).LOG_PRETTY).toBe(false);
    expect(loadEnv({ NODE_ENV: 'test' }, true).LOG_PRETTY).toBe(false);
    // Said explicitly, it wins either way.
    expect(loadEnv({ NODE_ENV: 'development', LOG_PRETTY: 'true' }, false).LOG_PRETTY).toBe(true);
    expect(loadEnv({ NODE_ENV: 'development', LOG_PRETTY: 'false' }, true).LOG_PRETTY).toBe(false);
  });
});

describe('request ids', () => {
  it('should write one access line at debug for every HTTP request, the stream endpoint, the probes, a preflight and a 404 too', async () => {
    const s = await createTestServer({ LOG_LEVEL: 'debug' }, { captureLogs: true });
    const u = await signup(s.url);
    const asked: [string, RequestInit, number][] = [
      ['/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{ __typename }"}' }, 200],
      ['/graphql', { method: 'OPTIONS', headers: { origin: 'http://app.example', 'access-control-request-method': 'POST' } }, 204],
      ['/graphql/stream', { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${u.token}` }, body: '{"query":"{ me { id } }"}' }, 200],
      ['/graphql/stream', { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream' }, body: '{"query":"{ me { id } }"}' }, 401],
      ['/healthz', {}, 200],
      ['/readyz', {}, 200],
      ['/metrics', {}, 200],
      ['/no-such-page', {}, 404],
    ];
    for (const [path, init, status] of asked) {
      const id = `access-${path}-${status}`;
      const r = await fetch(new URL(path, s.url), { ...init, headers: { ...(init.headers as Record<string, string>), 'x-request-id': id } });
      await r.arrayBuffer();
      expect([path, r.status]).toEqual([path, status]);
      // Only /graphql's was written (an outside probe: 7 of 9 requests left none).
      const lines = await eventually(() => {
        const found = s.logs.filter((l) => l.json.msg === 'request' && l.json.requestId === id);
        return found.length ? found : undefined;
      });
      expect(lines!.map((l) => l.json)).toEqual([expect.objectContaining({ method: init.method ?? 'GET', path, status, ms: expect.any(Number) })]);
    }
  });

  it('should answer every HTTP request with its x-request-id (the client’s, else a new one) and nosniff, on the stream endpoint, the probes and a 404 too', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const root = new URL('/', s.url);
    const asked: [string, RequestInit][] = [
      ['/graphql', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"query":"{ __typename }"}' }],
      ['/graphql/stream', { method: 'POST', headers: { 'content-type': 'application/json', accept: 'text/event-stream', authorization: `Bearer ${u.token}` }, body: '{"query":"{ me { id } }"}' }],
      ['/graphql/stream', { method: 'PUT' }],
      ['/healthz', {}],
      ['/no-such-page', {}],
    ];
    for (const [path, init] of asked) {
      const given = await fetch(new URL(path, root), { ...init, headers: { ...(init.headers as Record<string, string>), 'x-request-id': `rid-${path}` } });
      const made = await fetch(new URL(path, root), init);
      await Promise.all([given.arrayBuffer(), made.arrayBuffer()]);
      expect([path, given.status, given.headers.get('x-request-id')]).toEqual([path, given.status, `rid-${path}`]);
      expect([path, given.headers.get('x-content-type-options')]).toEqual([path, 'nosniff']);
      expect([path, made.headers.get('x-request-id')]).toEqual([path, expect.stringMatching(/^[0-9a-f-]{36}$/)]);
    }
  });
});
