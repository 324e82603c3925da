import { readFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';

/** A positive integer setting from the environment, or `def`; anything else stops the bench with one line. */
export function positive(name: string, def: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) {
    process.stderr.write(`bench:${path.basename(process.argv[1] ?? 'bench', '.ts')}: ${name} must be a positive integer, got '${raw}'\n`);
    process.exit(1);
  }
  return Number(raw);
}

/**
 * A setting the bench can't do without (DATABASE_URL, REDIS_URL): unset stops it with one line.
 * No default: a bench empties what it is given (a Redis is flushed), so it never picks a local
 * server of its own accord (the README says to set both).
 */
export function required(name: string, what: string): string {
  const value = process.env[name];
  if (value) return value;
  process.stderr.write(`bench:${path.basename(process.argv[1] ?? 'bench', '.ts')}: set ${name} (${what})\n`);
  process.exit(2);
}

/** One line of the report. */
export const out = (line = '') => process.stdout.write(`${line}\n`);

/** One SQL statement on its own connection; the rows. */
export async function query<T extends pg.QueryResultRow = any>(url: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}

/**
 * Creates the database of `url` when it does not exist. Benches fill or empty it, so its name
 * must match `allowed` (one containing 'bench', say); any other stops here.
 */
export async function ensureDatabase(url: string, allowed: RegExp, doing: string): Promise<void> {
  const u = new URL(url);
  const name = decodeURIComponent(u.pathname.slice(1));
  if (!allowed.test(name)) throw new Error(`refusing to ${doing} database '${name}': its name must match ${allowed}`);
  u.pathname = '/postgres';
  if (!(await query(u.toString(), 'select 1 from pg_database where datname = $1', [name])).length) {
    await query(u.toString(), `create database "${name.replace(/"/g, '""')}"`);
    out(`created database ${name}`);
  }
}

/**
 * CPU time (user + system, ms) each process has spent so far, from /proc/<pid>/stat (fields 14
 * and 15, in clock ticks of 10 ms); a process gone is left out. Linux only.
 */
export function procCpuMs(pids: readonly number[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // The command name (field 2) may hold spaces: fields are counted after its closing parenthesis.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(pid, (Number(fields[11]) + Number(fields[12])) * 10);
    } catch {
      // exited
    }
  }
  return out;
}

/**
 * The CPU time (ms) processes spent since `before` (procCpuMs): those still running, and all of
 * those in `born` not in `before` (started since).
 */
export function cpuSince(before: Map<number, number>, born: readonly number[] = []): number {
  let ms = 0;
  for (const [pid, now] of procCpuMs([...new Set([...before.keys(), ...born])])) ms += now - (before.get(pid) ?? 0);
  return ms;
}
