import { workerDatabaseUrl, workerRedis } from './setup/workers';

describe('test workers on one PostgreSQL and one Redis', () => {
  it('should give every worker after the first a database, a Redis database and a key prefix of its own', () => {
    expect(workerDatabaseUrl('postgres://postgres@127.0.0.1:5432/test', 1)).toBe('postgres://postgres@127.0.0.1:5432/test');
    expect(workerDatabaseUrl('postgres://postgres@127.0.0.1:5432/test', 2)).toBe('postgres://postgres@127.0.0.1:5432/test_w2');
    expect(workerRedis('redis://127.0.0.1:6379', 1)).toEqual({ url: 'redis://127.0.0.1:6379', prefix: '' });
    expect(workerRedis('redis://127.0.0.1:6379', 3)).toEqual({ url: 'redis://127.0.0.1:6379/2', prefix: 'w3:' });
    // A Redis database named in REDIS_URL would be shared by every worker.
    expect(() => workerRedis('redis://127.0.0.1:6379/4', 2)).toThrow(/leave it out/);
  });

  it("should have set this worker's own names before the test file ran", () => {
    const n = Number(process.env.JEST_WORKER_ID);
    const db = new URL(process.env.DATABASE_URL!).pathname.slice(1);
    if (n > 1) {
      expect(db).toMatch(new RegExp(`_w${n}$`));
      if (process.env.REDIS_URL) expect([new URL(process.env.REDIS_URL).pathname, process.env.REDIS_KEY_PREFIX]).toEqual([`/${n - 1}`, expect.stringMatching(new RegExp(`w${n}:$`))]);
    } else {
      expect(db).not.toMatch(/_w\d+$/);
    }
  });
});
