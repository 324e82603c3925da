import { readFileSync } from 'node:fs';
import path from 'node:path';
import { buildSchema, isNonNullType, Kind, parse, print, type DefinitionNode } from 'graphql';

/**
 * The public contract, kept in this repository as docs/API.md; external clients and acceptance
 * tests use those names. Every type, field, argument (with its type and default) and enum value
 * it lists must exist, unchanged, in the committed schema.graphql.
 */
const API_MD = path.resolve(__dirname, '../docs/API.md');

/**
 * Every ```graphql block of the contract (the base one and the additions, which `extend` the
 * root types), plus the fields the additions promise in prose: `# Message gains: a: T  b: U`, or
 * on the lines after it (`# Message gains:` then `#   a: T  b: U`), and the values an enum gains
 * (`# MessageEventKind gains: A B`).
 */
function contractDefinitions(): readonly DefinitionNode[] {
  const text = readFileSync(API_MD, 'utf8');
  const blocks = text.split('```graphql').slice(1).map((b) => b.split('```')[0]);
  if (!blocks.length) throw new Error(`no graphql block in ${API_MD}`);
  const gains = [...text.matchAll(/^# (\w+) gains:(.*)\n((?:#   .*\n)*)/gm)].map(([, type, inline, next]) => {
    const fields = `${inline} ${next.replace(/^#   /gm, '')}`.trim();
    return fields.includes(':') ? `extend type ${type} { ${fields} }` : `extend enum ${type} { ${fields} }`;
  });
  return [...blocks, ...gains].flatMap((b) => parse(b).definitions);
}

function differences(): string[] {
  const schema = buildSchema(readFileSync(path.resolve(__dirname, '../schema.graphql'), 'utf8'));
  const out: string[] = [];
  for (const def of contractDefinitions()) {
    if (!('name' in def) || !def.name) continue;
    const name = def.name.value;
    const type = schema.getType(name);
    if (!type) {
      out.push(`type ${name} is missing`);
      continue;
    }
    if (def.kind === Kind.ENUM_TYPE_DEFINITION || def.kind === Kind.ENUM_TYPE_EXTENSION) {
      const values = new Set((type as any).getValues().map((v: { name: string }) => v.name));
      for (const v of def.values ?? []) if (!values.has(v.name.value)) out.push(`enum value ${name}.${v.name.value} is missing`);
      continue;
    }
    if (def.kind !== Kind.OBJECT_TYPE_DEFINITION && def.kind !== Kind.OBJECT_TYPE_EXTENSION && def.kind !== Kind.INPUT_OBJECT_TYPE_DEFINITION) continue;
    const fields = (type as any).getFields() as Record<string, { type: unknown; args?: { name: string; type: unknown; defaultValue: unknown }[] }>;
    for (const f of def.fields ?? []) {
      const at = `${name}.${f.name.value}`;
      const got = fields[f.name.value];
      if (!got) {
        out.push(`${at} is missing`);
        continue;
      }
      if (String(got.type) !== print(f.type)) out.push(`${at} is ${String(got.type)}, the contract says ${print(f.type)}`);
      const args = 'arguments' in f ? (f.arguments ?? []) : [];
      for (const a of args) {
        const ga = got.args?.find((x) => x.name === a.name.value);
        if (!ga) {
          out.push(`${at}(${a.name.value}) is missing`);
          continue;
        }
        if (String(ga.type) !== print(a.type)) out.push(`${at}(${a.name.value}) is ${String(ga.type)}, the contract says ${print(a.type)}`);
        if (a.defaultValue && String(ga.defaultValue) !== print(a.defaultValue)) {
          out.push(`${at}(${a.name.value}) defaults to ${String(ga.defaultValue)}, the contract says ${print(a.defaultValue)}`);
        }
        // Nor a default the contract does not give: introspection shows it, and a client reads it as the contract's.
        if (!a.defaultValue && ga.defaultValue !== undefined) out.push(`${at}(${a.name.value}) defaults to ${String(ga.defaultValue)}, the contract gives no default`);
      }
      // Adding arguments is allowed, but not ones a contract client would have to send.
      for (const ga of got.args ?? []) {
        if (!args.some((a) => a.name.value === ga.name) && isNonNullType(ga.type) && ga.defaultValue === undefined) {
          out.push(`${at}(${ga.name}) is required but not in the contract`);
        }
      }
    }
  }
  return out;
}

describe('contract', () => {
  it('should expose every type, field, argument and default of docs/API.md in schema.graphql', () => {
    const defs = contractDefinitions();
    expect(defs.length).toBeGreaterThanOrEqual(20);
    // The additions' blocks are read too: their root extensions and the fields Message gains.
    expect(defs.filter((d) => d.kind === Kind.OBJECT_TYPE_EXTENSION).map((d) => (d as { name: { value: string } }).name.value)).toEqual(
      expect.arrayContaining(['Query', 'Mutation', 'Subscription', 'Message']),
    );
    expect(differences()).toEqual([]);
  });
});
