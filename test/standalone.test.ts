import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..');

/**
 * Relative paths (`../…`) that a tracked file uses as a path: imported, required, resolved from
 * __dirname, linked from Markdown or HTML, or anywhere in a script or compose file. Strings
 * that are only data (a hostile file name in a test) are not paths and are left alone.
 */
const AS_PATH: [RegExp, RegExp][] = [
  [/\.(ts|js|mjs|cjs)$/, /(?:from\s+|require\(|import\(|__dirname,\s*|process\.cwd\(\),\s*)['"`]((?:\.\.\/)+[^'"`]*)/g],
  [/\.(md|html)$/, /(?:\]\(|href=["']?|src=["']?)((?:\.\.\/)+[^)\s"']*)/g],
  [/(^\.ci\/run|\.sh|\.ya?ml|Dockerfile|\.json)$/, /()((?:\.\.\/)+[\w@.\-/]*)/g],
];
function escapingReferences(): string[] {
  const files = execFileSync('git', ['ls-files'], { cwd: ROOT, encoding: 'utf8' })
    .split('\n')
    .filter((f) => f && !f.endsWith('package-lock.json'));
  const out: string[] = [];
  for (const file of files) {
    const pattern = AS_PATH.find(([kind]) => kind.test(file))?.[1];
    if (!pattern) continue;
    const text = readFileSync(path.join(ROOT, file), 'utf8');
    for (const m of text.matchAll(pattern)) {
      const ref = m[m.length - 1];
      const target = path.resolve(ROOT, path.dirname(file), ref);
      if (target !== ROOT && !target.startsWith(ROOT + path.sep)) out.push(`${file}: ${ref}`);
    }
  }
  return out;
}

/** A fresh clone has nothing beside it: no test, link or script may reach outside the repository. */
describe('the repository', () => {
  it('should not read or link anything outside itself', () => {
    expect(escapingReferences()).toEqual([]);
  });

  it('should keep its own copy of the contract', () => {
    expect(readFileSync(path.join(ROOT, 'docs/API.md'), 'utf8')).toMatch(/^# The public GraphQL contract/);
  });
});
