import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { WebhookEvent } from '../../src/modules/notification/notification.webhook';

/** One POST the receiver accepted. */
export interface Received {
  raw: string;
  body: WebhookEvent;
  signature: string;
  /** Its Authorization header, if any. */
  authorization?: string;
}

export interface Receiver {
  url: string;
  /** Events answered 2xx, in arrival order. */
  got: Received[];
  /** POSTs answered with something else while it was "down". */
  refused: number;
  /** What it answers from now on: 200 (up) or an error status (down). */
  answer(status: number): void;
  /** How long it takes to answer from now on (a slow push service). */
  delay(ms: number): void;
  /** POSTs it has read and not answered yet. */
  inflight: number;
  /** POSTs whose sender went away before the answer (not deliveries). */
  abandoned: number;
  of(userId: string): Received[];
  close(): Promise<void>;
}

/** A real HTTP webhook receiver on a local port, as an app backend runs one. */
export async function startReceiver(): Promise<Receiver> {
  let status = 200;
  let delayMs = 0;
  const r: Receiver = {
    url: '',
    got: [],
    refused: 0,
    inflight: 0,
    abandoned: 0,
    answer: (s) => void (status = s),
    delay: (ms) => void (delayMs = ms),
    of: (userId) => r.got.filter((g) => g.body.recipientId === userId),
    close: () => new Promise((res) => server.close(() => res())),
  };
  const server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      const [answer, wait] = [status, delayMs];
      r.inflight++;
      // An answer the client gave up on (it went away) is not a delivery.
      let gone = false;
      res.on('close', () => {
        if (res.writableFinished) return;
        gone = true;
        r.abandoned++;
      });
      setTimeout(() => {
        r.inflight--;
        if (gone) return;
        if (answer >= 200 && answer < 300) r.got.push({ raw, body: JSON.parse(raw), signature: String(req.headers['parley-signature']), authorization: req.headers.authorization });
        else r.refused++;
        res.writeHead(answer).end();
      }, wait);
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  server.unref();
  r.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/parley`;
  return r;
}

type Verify = (secret: string, header: string, rawBody: string, toleranceSeconds?: number, now?: number) => boolean;

/** The verification snippet exactly as docs/API.md shows it, compiled: what a receiver copies is what is tested. */
export function documentedVerifier(): Verify {
  const doc = readFileSync(join(__dirname, '..', '..', 'docs', 'API.md'), 'utf8');
  const code = /```js\n\/\/ verify-parley-signature\n([\s\S]*?)```/.exec(doc)?.[1];
  if (!code) throw new Error('docs/API.md has no verify-parley-signature snippet');
  return new Function('require', `${code}\nreturn verifyParleySignature;`)(require) as Verify;
}

/** The tour's example receiver (docs/TOUR.md, its one ```js block under "Offline notifications"), as a reader copies it. */
export function documentedReceiverSource(): string {
  const tour = readFileSync(join(__dirname, '..', '..', 'docs', 'TOUR.md'), 'utf8');
  const section = tour.slice(tour.indexOf('## Offline notifications (webhooks)'));
  const code = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  if (!code) throw new Error('docs/TOUR.md has no receiver example under "Offline notifications (webhooks)"');
  return code;
}
