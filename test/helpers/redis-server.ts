import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { sleep } from './graphql';
import { sparePorts } from './ports';

/** A redis-server of the test's own on a spare port, to stop and restart at will. */
export class OwnRedis {
  private proc?: ChildProcess;
  private chosen?: number;
  constructor(port?: number) {
    this.chosen = port;
  }

  /** Picked on the first start and kept, so a restarted server answers at the same address. */
  get port(): number {
    if (this.chosen === undefined) throw new Error('OwnRedis: start() it before asking for its port');
    return this.chosen;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Where it keeps its data between a stop({ save: true }) and the next start (a stop without it leaves none). */
  private readonly dir = mkdtempSync(path.join(os.tmpdir(), 'parley-redis-'));

  async start(): Promise<void> {
    this.chosen ??= await sparePorts();
    mkdirSync(this.dir, { recursive: true });
    this.proc = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      const r = new Redis(this.url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
      r.on('error', () => undefined);
      try {
        await r.connect();
        await r.ping();
        r.disconnect();
        return;
      } catch {
        r.disconnect();
        await sleep(50);
      }
    }
    throw new Error(`redis-server did not start on ${this.port}`);
  }

  /** Empties it while it runs (FLUSHALL), as an eviction or an operator would. */
  async flushall(): Promise<void> {
    const r = new Redis(this.url);
    try {
      await r.flushall();
    } finally {
      r.disconnect();
    }
  }

  /** Stalls it (SIGSTOP): connections stay open, nothing is answered, until resume(). */
  pause(): void {
    this.proc?.kill('SIGSTOP');
  }

  resume(): void {
    this.proc?.kill('SIGCONT');
  }

  /** Stops it; with `save`, as a restart that keeps its data (the next start loads it). */
  async stop(opts: { save?: boolean } = {}): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    if (opts.save) {
      const r = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
      r.on('error', () => undefined);
      await r.connect();
      await r.shutdown('SAVE').catch(() => undefined);
      r.disconnect();
    } else p.kill('SIGKILL');
    await exited;
    // Without `save`, nothing is kept: the folder goes too (a run of the suite left twenty in the temp folder).
    if (!opts.save) rmSync(this.dir, { recursive: true, force: true });
  }
}
