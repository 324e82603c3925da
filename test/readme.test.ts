import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { buildSchema, Kind, NoUnusedFragmentsRule, parse, specifiedRules, validate, type DefinitionNode, type DocumentNode } from 'graphql';

const ROOT = join(__dirname, '..');
/** README.md and every page under docs/, as paths from the repository's root. */
const PAGES = ['README.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const read = (page: string) => readFileSync(join(ROOT, page), 'utf8');
/** A page without its fenced code blocks: links and headings as they render. */
const prose = (text: string) => text.replace(/^```[\s\S]*?^```/gm, '');

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

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

/** The docs are copied from as the README is: their GraphQL must run, their links must lead somewhere in the repo. */
describe('docs', () => {
  const schema = buildSchema(readFileSync(join(ROOT, 'schema.graphql'), 'utf8'));
  // A block may show several operations and the fragments they share: each operation is validated with them.
  const rules = specifiedRules.filter((r) => r !== NoUnusedFragmentsRule);

  it('should only show GraphQL operations that are valid against schema.graphql', () => {
    const invalid: { page: string; op: string; errors: string[] }[] = [];
    let operations = 0;
    for (const page of PAGES) {
      for (const [, block] of read(page).matchAll(/```graphql\n([\s\S]*?)```/g)) {
        let doc: DocumentNode;
        try {
          doc = parse(block);
        } catch (e) {
          invalid.push({ page, op: block, errors: [(e as Error).message] });
          continue;
        }
        // Blocks of SDL (the contract's type definitions) are schema.graphql's to check: test/contract.test.ts.
        const executable = (d: DefinitionNode) => d.kind === Kind.OPERATION_DEFINITION || d.kind === Kind.FRAGMENT_DEFINITION;
        if (!doc.definitions.every(executable)) continue;
        const fragments = doc.definitions.filter((d) => d.kind === Kind.FRAGMENT_DEFINITION);
        for (const op of doc.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION)) {
          operations++;
          const errors = validate(schema, { kind: Kind.DOCUMENT, definitions: [op, ...fragments] }, rules).map((e) => e.message);
          if (errors.length) invalid.push({ page, op: block.slice(op.loc!.start, op.loc!.end), errors });
        }
      }
    }
    expect(operations).toBeGreaterThan(40);
    expect(invalid).toEqual([]);
  });

  it('should link only to files of this repository that exist, and to headings that exist', () => {
    const broken: string[] = [];
    for (const page of PAGES) {
      for (const [, target] of prose(read(page)).matchAll(/\]\(([^)\s]+)\)/g)) {
        const [path, anchor] = target.split('#');
        if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('//')) {
          broken.push(`${page}: ${target} leads outside the repository`);
          continue;
        }
        const file = path ? resolve(ROOT, dirname(page), path) : join(ROOT, page);
        if (relative(ROOT, file).startsWith(`..${sep}`) || relative(ROOT, file) === '..') broken.push(`${page}: ${target} leads outside the repository`);
        else if (!existsSync(file)) broken.push(`${page}: ${target} names no file`);
        else if (anchor !== undefined && file.endsWith('.md')) {
          const headings = [...prose(readFileSync(file, 'utf8')).matchAll(/^#+ (.*)$/gm)].map((m) => slug(m[1]));
          if (!headings.includes(anchor)) broken.push(`${page}: ${target} names no heading`);
        }
      }
    }
    expect(broken).toEqual([]);
  });

  it('should only name npm scripts that exist', () => {
    const scripts = JSON.parse(read('package.json')).scripts as Record<string, string>;
    const named = PAGES.flatMap((page) => [...read(page).matchAll(/npm run (?:-s )?([\w:-]+)/g)].map((m) => ({ page, script: m[1] })));
    expect(named.length).toBeGreaterThan(10);
    expect(named.filter((n) => !(n.script in scripts))).toEqual([]);
  });

  it('should document every setting that src/config/env.ts reads in docs/CONFIGURATION.md', () => {
    // Every variable the one env module reads is named there as a quoted string ('PORT').
    const read = [...new Set([...readFileSync(join(ROOT, 'src/config/env.ts'), 'utf8').matchAll(/'([A-Z][A-Z0-9_]{2,})'/g)].map((m) => m[1]))];
    expect(read.length).toBeGreaterThan(40);
    const page = readFileSync(join(ROOT, 'docs/CONFIGURATION.md'), 'utf8');
    expect(read.filter((v) => !page.includes(`| \`${v}\` |`))).toEqual([]);
  });
});
