import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(__dirname, '..');
const COMPILER = join(ROOT, 'node_modules', '.bin', 'relay-compiler');

/** Runs relay-compiler over test/relay/chat.js against `schema` (SDL), in a folder of its own: its exit code, output and artifacts. */
function compile(schema: string): { status: number | null; output: string; artifacts: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'parley-relay-'));
  try {
    mkdirSync(join(dir, 'src'));
    copyFileSync(join(__dirname, 'relay', 'chat.js'), join(dir, 'src', 'chat.js'));
    writeFileSync(join(dir, 'schema.graphql'), schema);
    writeFileSync(join(dir, 'relay.config.json'), JSON.stringify({ src: './src', schema: './schema.graphql', language: 'javascript' }));
    const r = spawnSync(COMPILER, [], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    let artifacts: string[] = [];
    try {
      artifacts = readdirSync(join(dir, 'src', '__generated__')).sort();
    } catch {
      // none written
    }
    return { status: r.status, output: `${r.stdout}${r.stderr}`, artifacts };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Relay clients' view of the schema: Global Object Identification and connections, compiled by Relay itself. */
describe('Relay', () => {
  const schema = readFileSync(join(ROOT, 'schema.graphql'), 'utf8');

  it('should compile a @refetchable fragment on User and @connection on history and conversations against schema.graphql', () => {
    const r = compile(schema);
    expect([r.status, r.output]).toEqual([0, expect.stringContaining('Compilation completed')]);
    expect(r.artifacts).toEqual([
      'ChatHistoryPaginationQuery.graphql.js',
      'ChatHistory_query.graphql.js',
      'ChatScreenQuery.graphql.js',
      'SidebarPaginationQuery.graphql.js',
      'Sidebar_query.graphql.js',
      'UserCardRefetchQuery.graphql.js',
      'UserCard_user.graphql.js',
    ]);
  });

  it('should fail when the schema breaks them (the check can fail)', () => {
    const withoutNode = schema.replace('type User implements Node {', 'type User {');
    expect(withoutNode).not.toBe(schema);
    const r = compile(withoutNode);
    expect(r.status).not.toBe(0);
    expect(r.output).toMatch(/refetchable/i);
    // history without `before`: the backward @connection no longer compiles.
    const start = schema.indexOf('\n  history(');
    const end = schema.indexOf('): MessageConnection!', start);
    const args = schema.slice(start, end).replace(/\n\s*"""[^"]*"""\n\s*before: String\n/, '\n');
    const oneWay = schema.slice(0, start) + args + schema.slice(end);
    expect(oneWay).not.toBe(schema);
    const r2 = compile(oneWay);
    expect(r2.status).not.toBe(0);
    expect(r2.output).toMatch(/before/);
  });
});
