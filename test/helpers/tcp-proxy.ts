import net from 'node:net';

/**
 * A TCP proxy of the test's own in front of a real server (PostgreSQL here): `cut()` refuses new
 * connections and kills the open ones, as an outage does; `restore()` listens again on the same port;
 * `hold()` delays what clients send, as a slow link does.
 */
export class TcpProxy {
  private server?: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;
  private held: [net.Socket, Buffer][] | undefined;

  constructor(private readonly target: { host: string; port: number }) {}

  async start(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.target.port, this.target.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      // What the client sends is held while `hold()` is on (a slow link one way); replies pass.
      client.on('data', (d: Buffer) => (this.held ? this.held.push([upstream, d]) : upstream.write(d)));
      upstream.pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Holds everything clients send until `release()`; what the server sends still flows. */
  hold(): void {
    this.held ??= [];
  }

  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const [s, d] of held) s.write(d);
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
