import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { sleep } from './graphql';
import { sparePorts } from './ports';


/** A three-master Redis Cluster of the test's own (no replicas), on consecutive spare ports. */
export class OwnRedisCluster {
  private readonly procs: ChildProcess[] = [];
  private readonly dir = mkdtempSync(join(tmpdir(), 'parley-cluster-'));
  ports: number[] = [];

  constructor(private readonly firstPort?: number) {}

  /** host:port,host:port,… as REDIS_CLUSTER_NODES takes it. */
  get nodes(): string {
    return this.ports.map((p) => `127.0.0.1:${p}`).join(',');
  }

  async start(): Promise<void> {
    // Each node also listens on its port + 10000 (the cluster bus).
    const first = this.firstPort ?? (await sparePorts(3, 10_000));
    this.ports = [first, first + 1, first + 2];
    for (const port of this.ports) this.procs.push(this.spawnNode(port));
    for (const port of this.ports) await this.waitFor(port, async (r) => (await r.ping()) === 'PONG');
    const created = spawnSync('redis-cli', ['--cluster', 'create', ...this.ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8' });
    if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stderr || created.stdout}`);
    await this.settled();
  }

  /**
   * Waits until every node says the cluster is up and all give the same slot map: after a slot
   * moves, a node that has not yet heard of it refuses every command (CLUSTERDOWN), for a gossip
   * round or more, and a test starting then lost what its instances published there.
   */
  async settled(): Promise<void> {
    const view = async (r: Redis) => ((await r.cluster('INFO')).includes('cluster_state:ok') ? JSON.stringify(await r.cluster('SLOTS')) : undefined);
    for (let i = 0; i < 200; i++) {
      const views = await Promise.all(this.ports.map((port) => this.ask(port, view)));
      if (views[0] !== undefined && views.every((v) => v === views[0])) return;
      await sleep(50);
    }
    throw new Error('redis cluster did not settle');
  }

  private spawnNode(port: number): ChildProcess {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--cluster-enabled', 'yes', '--cluster-config-file', join(this.dir, `nodes-${port}.conf`), '--dir', this.dir];
    return spawn('redis-server', args, { stdio: 'ignore' });
  }

  /** Kills the `i`th node (SIGKILL): its shard is down, with no replica to take over. */
  async kill(i: number): Promise<void> {
    const p = this.procs[i];
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }

  /** Starts the `i`th node again, from its cluster config (its slots and peers), and waits until it answers. */
  async restart(i: number): Promise<void> {
    this.procs[i] = this.spawnNode(this.ports[i]);
    await this.waitFor(this.ports[i], async (r) => (await r.ping()) === 'PONG');
  }

  private async waitFor(port: number, ok: (r: Redis) => Promise<boolean>): Promise<void> {
    for (let i = 0; i < 200; i++) {
      if (await this.ask(port, ok)) return;
      await sleep(50);
    }
    throw new Error(`redis cluster node ${port} did not become ready`);
  }

  /** What `question` answers of the node at `port`, on a connection of its own; undefined when the node can't answer. */
  private async ask<T>(port: number, question: (r: Redis) => Promise<T>): Promise<T | undefined> {
    const r = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return await question(r);
    } catch {
      return undefined;
    } finally {
      r.disconnect();
    }
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.procs.map((p) => {
        if (p.exitCode !== null || p.signalCode !== null) return undefined;
        const exited = new Promise((r) => p.once('exit', r));
        p.kill('SIGKILL');
        return exited;
      }),
    );
    rmSync(this.dir, { recursive: true, force: true });
  }
}
