import path from 'node:path';

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
