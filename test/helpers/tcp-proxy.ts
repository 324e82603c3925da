import net from 'node:net';

type Target = { host: string; port: number };

/**
 * A TCP proxy of the test's own in front of a real server (PostgreSQL here): `cut()` refuses new
 * connections and kills the open ones, as an outage does; `restore()` listens again on the same port;
 * `hold()` delays what clients send, as a slow link does. Given several targets it is a round-robin
 * load balancer: each new connection goes to the next target, and one that refuses is skipped for
 * the next (what a balancer's retry does); `targets` can be changed while it runs.
 */
export class TcpProxy {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  private held: [net.Socket, Buffer][] | undefined;
  /** What servers send, held too while `hold(true)` is on. */
  private heldReplies: [net.Socket, Buffer][] | undefined;
  private dropping = false;
  targets: Target[];
  private next = 0;

  constructor(target: Target | Target[]) {
    this.targets = Array.isArray(target) ? [...target] : [target];
  }

  /** An upstream connection, to the next target that accepts one (undefined when none does). */
  private connectUpstream(tries = this.targets.length): Promise<net.Socket | undefined> {
    if (tries <= 0 || !this.targets.length) return Promise.resolve(undefined);
    const target = this.targets[this.next++ % this.targets.length];
    return new Promise((resolve) => {
      const upstream = net.connect(target.port, target.host);
      upstream.once('connect', () => {
        upstream.removeAllListeners('error');
        resolve(upstream);
      });
      upstream.once('error', () => resolve(this.connectUpstream(tries - 1)));
    });
  }

  async start(): Promise<void> {
    const server = net.createServer((client) => {
      this.sockets.add(client);
      client.on('close', () => this.sockets.delete(client));
      client.on('error', () => undefined);
      // What the client sends before the upstream is chosen waits for it.
      const early: Buffer[] = [];
      const wait = (d: Buffer) => early.push(d);
      client.on('data', wait);
      client.pause();
      void this.connectUpstream().then((upstream) => {
        if (!upstream || client.destroyed) {
          upstream?.destroy();
          client.destroy();
          return;
        }
        this.sockets.add(upstream);
        upstream.on('close', () => this.sockets.delete(upstream));
        upstream.on('error', () => undefined);
        client.off('data', wait);
        for (const d of early) upstream.write(d);
        // What the client sends is held while `hold()` is on (a slow link one way); replies pass.
        client.on('data', (d: Buffer) => (this.held ? this.held.push([upstream, d]) : upstream.write(d)));
        client.resume();
        upstream.on('data', (d: Buffer) => (this.dropping ? undefined : this.heldReplies ? this.heldReplies.push([client, d]) : client.write(d)));
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  /** What servers send is lost until `cut()`: a statement runs and commits, its client never hears (a link that broke one way). */
  dropReplies(): void {
    this.dropping = true;
  }

  async cut(): Promise<void> {
    this.dropping = false;
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Holds everything clients send until `release()`; what the server sends still flows, unless
   * `both` (a stopped server, or a partition: nothing comes either way, and no connection drops).
   */
  hold(both = false): void {
    this.held ??= [];
    if (both) this.heldReplies ??= [];
  }

  release(): void {
    const held = this.held ?? [];
    const replies = this.heldReplies ?? [];
    this.held = undefined;
    this.heldReplies = undefined;
    for (const [s, d] of held) s.write(d);
    for (const [s, d] of replies) s.write(d);
  }

  restore(): Promise<void> {
    return this.start();
  }
}

/** A started proxy in front of the test's PostgreSQL (DATABASE_URL), and the URL that goes through it. */
export async function proxiedDatabase(): Promise<{ proxy: TcpProxy; url: string }> {
  const real = new URL(process.env.DATABASE_URL!);
  const proxy = new TcpProxy({ host: real.hostname, port: Number(real.port || 5432) });
  await proxy.start();
  const proxied = new URL(real);
  proxied.port = String(proxy.port);
  proxied.hostname = '127.0.0.1';
  return { proxy, url: proxied.toString() };
}

/** Runs `fn` with a proxy of the test's own in front of Redis (one that can hold what its clients send) and its URL; cut after. */
export async function throughRedisProxy(fn: (proxy: TcpProxy, proxiedUrl: string) => Promise<void>): Promise<void> {
  const redisUrl = new URL(process.env.REDIS_URL!);
  const proxy = new TcpProxy({ host: redisUrl.hostname, port: Number(redisUrl.port || 6379) });
  await proxy.start();
  try {
    await fn(proxy, `redis://127.0.0.1:${proxy.port}${redisUrl.pathname}`);
  } finally {
    await proxy.cut();
  }
}
