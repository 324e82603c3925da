import WebSocket from 'ws';

export interface RawOptions {
  origin?: string;
  /** The subprotocol to ask for; '' for none. @default graphql-transport-ws */
  protocol?: string;
  /** Answer the server's pings (ws does by default). */
  autoPong?: boolean;
}

export interface RawSocket {
  socket: WebSocket;
  messages: any[];
  opened: Promise<void>;
  closed: Promise<{ code: number; reason: string }>;
  send(msg: unknown): void;
  /** The next message of `type` (optionally with `id`), waiting up to `ms`. */
  next(type: string, id?: string, ms?: number): Promise<any>;
  /** Resolves once the server has read every frame sent before: it answers a ping in order. */
  sync(): Promise<void>;
}

/** A bare graphql-transport-ws socket, to send what a well-behaved client never would. */
function rawSocket(url: string, opts: RawOptions = {}): RawSocket {
  const socket = new WebSocket(url, opts.protocol === undefined ? 'graphql-transport-ws' : opts.protocol || [], { origin: opts.origin, autoPong: opts.autoPong ?? true });
  const messages: any[] = [];
  const waiters: (() => void)[] = [];
  socket.on('message', (d) => {
    messages.push(JSON.parse(String(d)));
    waiters.splice(0).forEach((f) => f());
  });
  socket.on('error', () => undefined);
  const opened = new Promise<void>((res, rej) => {
    socket.once('open', () => res());
    socket.once('unexpected-response', (_req, r) => rej(new Error(`upgrade refused: ${r.statusCode}`)));
    socket.once('error', rej);
  });
  opened.catch(() => undefined);
  const closed = new Promise<{ code: number; reason: string }>((res) => socket.once('close', (code, reason) => res({ code, reason: String(reason) })));
  let syncs = 0;
  const r: RawSocket = {
    socket,
    messages,
    opened,
    closed,
    send: (msg) => socket.send(typeof msg === 'string' ? msg : JSON.stringify(msg)),
    next(type, id, ms = 5000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ${type} message within ${ms} ms; got ${JSON.stringify(messages).slice(0, 500)}`)), ms);
        const check = () => {
          const i = messages.findIndex((m) => m.type === type && (id === undefined || m.id === id));
          if (i >= 0) {
            clearTimeout(timer);
            resolve(messages.splice(i, 1)[0]);
          } else waiters.push(check);
        };
        check();
      });
    },
    async sync() {
      const payload = { sync: ++syncs };
      r.send({ type: 'ping', payload });
      const pong = await Promise.race([r.next('pong'), closed.then((c) => Promise.reject(new Error(`closed ${c.code} before the pong`)))]);
      expect(pong).toEqual({ type: 'pong', payload });
    },
  };
  return r;
}

const rawSockets = new Set<RawSocket>();
/** A raw socket closed after the test. */
export function raw(url: string, opts: RawOptions = {}): RawSocket {
  const r = rawSocket(url, opts);
  rawSockets.add(r);
  return r;
}
afterEach(() => {
  for (const r of rawSockets) r.socket.terminate();
  rawSockets.clear();
});

/** A raw socket past connection_ack. */
export async function initialized(url: string, token: string): Promise<RawSocket> {
  const r = raw(url);
  await r.opened;
  r.send({ type: 'connection_init', payload: { authorization: `Bearer ${token}` } });
  await r.next('connection_ack');
  return r;
}

/**
 * An acknowledged socket that stops answering keep-alive pings. It answers them until it is
 * acknowledged: on a loaded CI run its connection_init took longer than a short round or two, and
 * it was cut before its ack.
 */
export async function muteAfterInit(url: string, token: string): Promise<RawSocket> {
  const mute = raw(url, { autoPong: false });
  const pong = () => mute.socket.pong();
  mute.socket.on('ping', pong);
  await mute.opened;
  mute.send({ type: 'connection_init', payload: { token } });
  await mute.next('connection_ack');
  mute.socket.off('ping', pong);
  return mute;
}
