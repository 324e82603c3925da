import { rmSync } from 'node:fs';

export default async function globalTeardown(): Promise<void> {
  if (process.env.PARLEY_SUITES_DIR) rmSync(process.env.PARLEY_SUITES_DIR, { recursive: true, force: true });
  const pg = (globalThis as { __parleyPg?: { dispose(): Promise<void> } }).__parleyPg;
  await pg?.dispose();
}
