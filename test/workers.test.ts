import { applyWorker, ofWorker, workerDatabaseUrl, workerRedis } from './setup/workers';

describe('test workers on one PostgreSQL and one Redis', () => {
  it('should give every worker after the first a database, a Redis database and a key prefix of its own', () => {
    expect(workerDatabaseUrl('postgres://postgres@127.0.0.1:5432/test', 1)).toBe('postgres://postgres@127.0.0.1:5432/test');
    expect(workerDatabaseUrl('postgres://postgres@127.0.0.1:5432/test', 2)).toBe('postgres://postgres@127.0.0.1:5432/test_w2');
    expect(workerRedis('redis://127.0.0.1:6379', 1)).toEqual({ url: 'redis://127.0.0.1:6379', prefix: '' });
    expect(workerRedis('redis://127.0.0.1:6379', 3)).toEqual({ url: 'redis://127.0.0.1:6379/2', prefix: 'w3:' });
    // A Redis database named in REDIS_URL would be shared by every worker.
    expect(() => workerRedis('redis://127.0.0.1:6379/4', 2)).toThrow(/leave it out/);
  });

  it("should point worker 2's environment at its own names, adding to a prefix already set, and leave worker 1's as given", () => {
    const given = { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test', REDIS_URL: 'redis://127.0.0.1:6379', REDIS_KEY_PREFIX: 'ci:' };
    const first = { ...given };
    applyWorker(first, 1);
    expect(first).toEqual(given);
    const second = { ...given };
    applyWorker(second, 2);
    expect(second).toEqual({ DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/test_w2', REDIS_URL: 'redis://127.0.0.1:6379/1', REDIS_KEY_PREFIX: 'ci:w2:' });
  });

  it("should tell each worker's channels apart on the shared Redis", () => {
    expect(['parley.conv:g:1', 'w2:parley.conv:g:1'].map((c) => ofWorker(c, 1, ''))).toEqual([true, false]);
    expect(['parley.conv:g:1', 'w2:parley.conv:g:1', 'w3:parley.conv:g:1'].map((c) => ofWorker(c, 2, 'w2:'))).toEqual([false, true, false]);
    expect(['ci:parley.presence.changed', 'ci:w2:parley.presence.changed'].map((c) => ofWorker(c, 1, 'ci:'))).toEqual([true, false]);
  });

  it('should run the worker set-up before every test file, in both projects', () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const config = require('../jest.config.js') as { projects: { setupFiles: string[] }[] };
    for (const project of config.projects) expect(project.setupFiles).toContain('<rootDir>/test/setup/worker-env.ts');
    const n = Number(process.env.JEST_WORKER_ID);
    const db = new URL(process.env.DATABASE_URL!).pathname.slice(1);
    if (n > 1) expect(db).toMatch(new RegExp(`_w${n}$`));
    else expect(db).not.toMatch(/_w\d+$/);
    // Set by the set-up itself, so a set-up file left listed but emptied fails in worker 1 too.
    expect(process.env.PARLEY_TEST_WORKER_SET_UP).toBe(String(n));
  });
});
