import { readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** This jest run's folder of running suites (made by the global setup; a run without it marks under tmp). */
export const runningSuites = (): string => process.env.PARLEY_SUITES_DIR ?? path.join(tmpdir(), 'parley-suites');

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Other suites of this jest run running now (test/setup/suites.ts marks each): their files. */
function othersRunning(): string[] {
  const dir = runningSuites();
  let marks: string[];
  try {
    marks = readdirSync(dir);
  } catch {
    return [];
  }
  return marks
    .filter((f) => f !== String(process.pid) && alive(Number(f)))
    .map((f) => {
      try {
        return path.basename(readFileSync(path.join(dir, f), 'utf8'));
      } catch {
        return '';
      }
    })
    .filter(Boolean);
}

/**
 * Waits until no other suite of this jest run is running, at most `timeoutMs`; returns the suites
 * it waited for. For a suite whose bounds are about time (sorted last by test/setup/sequencer.js,
 * it waits only for the other workers' last suites).
 */
export async function alone(timeoutMs: number): Promise<string[]> {
  const waited = new Set<string>();
  const deadline = Date.now() + timeoutMs;
  for (let now = othersRunning(); now.length && Date.now() < deadline; now = othersRunning()) {
    now.forEach((s) => waited.add(s));
    await new Promise((r) => setTimeout(r, 250));
  }
  return [...waited];
}
