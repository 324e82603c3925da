import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSchema, parse, validate } from 'graphql';

/** The README's API tour is read and copied by users: every example must run against the real schema. */
describe('README', () => {
  it('should only show operations that are valid against schema.graphql', () => {
    const schema = buildSchema(readFileSync(join(__dirname, '..', 'schema.graphql'), 'utf8'));
    const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
    const examples = [...readme.matchAll(/```graphql\n([\s\S]*?)```/g)]
      .flatMap((m) => m[1].split('\n'))
      .map((line) => line.replace(/#.*$/, '').trim())
      .filter(Boolean);
    expect(examples.length).toBeGreaterThan(15);
    const invalid = examples.map((op) => ({ op, errors: validate(schema, parse(op)).map((e) => e.message) })).filter((r) => r.errors.length);
    expect(invalid).toEqual([]);
  });

  it('should keep the two-command quick start', () => {
    const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
    const quick = /## Quick start\n\n```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
    expect(quick.split('\n').filter(Boolean).map((l) => l.split('#')[0].trim())).toEqual(['npm ci && npm start', 'npm test']);
  });

  it('should say that CI runs every suite, and CI should run them', () => {
    const readme = readFileSync(join(__dirname, '..', 'README.md'), 'utf8');
    const ci = readFileSync(join(__dirname, '..', '.ci', 'run'), 'utf8');
    const scripts = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')).scripts;
    expect(readme).toMatch(/CI \(`\.ci\/run`[^)]*\) runs `npm run test:all`/);
    expect(ci).toMatch(/npm run -s test:all -- --json/);
    // test:all selects no project: every one runs.
    expect(scripts['test:all']).not.toMatch(/selectProjects/);
  });
});
