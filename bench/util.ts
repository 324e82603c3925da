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
