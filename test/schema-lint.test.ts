import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildSchema, getNamedType, isInterfaceType, isObjectType, Kind, parse } from 'graphql';
import { ESLint } from 'eslint';
import { staleDescriptionKeys } from '../src/graphql/descriptions';

const ROOT = join(__dirname, '..');
const schema = buildSchema(readFileSync(join(ROOT, 'schema.graphql'), 'utf8'));

/** schema.graphql as GraphiQL's docs pane and Relay clients read it, and the operations clients use: linted by eslint.config.js. */
describe('schema lint', () => {
  it("should pass @graphql-eslint's schema-recommended and relay rules, and operations/ its operations-recommended (eslint.config.js)", async () => {
    // The config passed in rather than found: ESLint loads a config file by dynamic import, which jest's CommonJS can't.
    const eslint = new ESLint({ cwd: ROOT, overrideConfigFile: true, overrideConfig: require(join(ROOT, 'eslint.config.js')) });
    // Files named one by one: ESLint's glob search also loads by dynamic import.
    const files = ['schema.graphql', ...readdirSync(join(ROOT, 'operations')).filter((f) => f.endsWith('.graphql')).map((f) => `operations/${f}`)];
    const results = await eslint.lintFiles(files);
    expect(results.map((r) => r.filePath.slice(ROOT.length + 1))).toEqual(files);
    const messages = results.flatMap((r) => r.messages.map((m) => `${r.filePath.slice(ROOT.length + 1)}:${m.line} ${m.ruleId}: ${m.message}`));
    expect(messages).toEqual([]);
  });

  it('should give every edge a Node, but for search hits (the one exception in eslint.config.js)', () => {
    const node = schema.getType('Node');
    expect(isInterfaceType(node)).toBe(true);
    const edges = Object.values(schema.getTypeMap()).filter((t) => isObjectType(t) && t.name.endsWith('Edge'));
    expect(edges.length).toBeGreaterThanOrEqual(6);
    const notNodes = edges
      .map((e) => getNamedType((e as ReturnType<typeof schema.getQueryType> & object).getFields().node.type))
      .filter((t) => !(isObjectType(t) && t.getInterfaces().some((i) => i.name === 'Node')))
      .map((t) => t.name);
    expect(notNodes).toEqual(['SearchHit']);
  });

  it('should have a typed document in operations/ for every query, mutation and subscription', () => {
    const used = new Set<string>();
    for (const f of readdirSync(join(ROOT, 'operations')).filter((name) => name.endsWith('.graphql'))) {
      const doc = parse(readFileSync(join(ROOT, 'operations', f), 'utf8'));
      for (const def of doc.definitions) {
        if (def.kind !== Kind.OPERATION_DEFINITION) continue;
        const root = { query: 'Query', mutation: 'Mutation', subscription: 'Subscription' }[def.operation];
        for (const sel of def.selectionSet.selections) if (sel.kind === Kind.FIELD) used.add(`${root}.${sel.name.value}`);
      }
    }
    const roots = [schema.getQueryType()!, schema.getMutationType()!, schema.getSubscriptionType()!].flatMap((t) => Object.keys(t.getFields()).map((name) => `${t.name}.${name}`));
    expect(roots.filter((r) => !used.has(r))).toEqual([]);
  });

  it('should only describe what exists (src/graphql/descriptions.ts)', () => {
    expect(staleDescriptionKeys(schema)).toEqual([]);
  });
});
