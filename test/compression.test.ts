import { request } from 'node:http';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { createTestServer } from './helpers/server';

/** A GET with exactly these headers (fetch would add and undo gzip itself), answered as raw bytes. */
function get(url: string, headers: Record<string, string>): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    request(url, { headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

describe('static assets', () => {
  it('should send large assets gzipped to clients that accept gzip, and as they are to others', async () => {
    const s = await createTestServer();
    const url = new URL('/graphiql/assets/graphiql.min.js', s.url).href;
    const file = readFileSync(join(dirname(require.resolve('graphiql/package.json')), 'graphiql.min.js'));
    expect(file.length).toBeGreaterThan(1_000_000);

    for (const accept of ['gzip, deflate, br', 'br;q=1.0, gzip;q=0.8', '*']) {
      const r = await get(url, { 'accept-encoding': accept });
      expect([accept, r.status, r.headers['content-encoding'], r.headers.vary]).toEqual([accept, 200, 'gzip', 'Accept-Encoding']);
      expect(Number(r.headers['content-length'])).toBe(r.body.length);
      expect(r.body.length).toBeLessThan(file.length / 2);
      expect(gunzipSync(r.body).equals(file)).toBe(true);
    }
    for (const headers of [{}, { 'accept-encoding': 'identity' }, { 'accept-encoding': 'gzip;q=0, br' }] as Record<string, string>[]) {
      const r = await get(url, headers);
      expect([headers, r.headers['content-encoding']]).toEqual([headers, undefined]);
      expect(r.body.equals(file)).toBe(true);
    }
  });
});
