import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

/** Debian's chromium; CHROMIUM_PATH overrides it. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Screenshots and other browser artifacts (git-ignored). */
export const ARTIFACTS = join(__dirname, '..', 'artifacts');

const open = new Set<Browser>();

/**
 * Headless Chromium through playwright-core. Browser tests are part of the suite: in CI a
 * missing Chromium fails them with the fix (elsewhere they are skipped, see helpers/tools).
 * @throws when Chromium is not installed.
 */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it with 'apt-get install -y chromium' (or set CHROMIUM_PATH). In CI, browser tests do not skip.`);
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-dev-shm-usage'],
  });
  open.add(browser);
  return browser;
}

export function artifactPath(name: string): string {
  mkdirSync(ARTIFACTS, { recursive: true });
  return join(ARTIFACTS, name);
}

afterEach(async () => {
  await Promise.all([...open].map((b) => b.close().catch(() => undefined)));
  open.clear();
});
