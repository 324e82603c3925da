import { createTestServer } from './helpers/server';
import { signup } from './helpers/factories';
import { gql } from './helpers/graphql';

const cur = (k: string, id: string) => Buffer.from('c1:' + JSON.stringify([k, id])).toString('base64url');

test('review probes', async () => {
  const uncaught: string[] = [];
  const h = (e: unknown) => uncaught.push(String(e));
  process.on('uncaughtException', h);
  const s = await createTestServer();
  const base = s.url.replace(/\/graphql$/, '');
  const u = await signup(s.url);
  const out: Record<string, unknown> = {};
  const p = await gql(s.url, 'mutation { createProject(title: "x") { id } }', {}, u.token);
  const pid = p.data.createProject.id;
  const bad = cur(new Date(-200000000000000).toISOString(), '00000000-0000-0000-0000-000000000001');
  out.k = new Date(-200000000000000).toISOString();
  out.projectActionsCursor = (await gql(s.url, 'query($b:String){ projectActions(before:$b){ totalCount edges { cursor } } }', { b: bad }, u.token)).errors;
  const lobby = (await gql(s.url, '{ groups(first: 10) { edges { node { id isLobby } } } }', {}, u.token)).data.groups.edges[0].node.id;
  out.historyCursor = (await gql(s.url, 'query($g:ID!,$b:String){ messages(conversation:{groupId:$g}, before:$b){ edges { cursor } } }', { g: lobby, b: bad }, u.token)).errors;
  for (const path of ['/graphiql/assets/constructor', '/graphiql/assets/__proto__', '/attachments/%E0%A4%A']) {
    try {
      const r = await fetch(base + path);
      out[path] = r.status;
    } catch (e) {
      out[path] = 'fetch failed: ' + String(e);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  out.uncaught = uncaught;
  process.off('uncaughtException', h);
  require('fs').writeFileSync('/tmp/r3/out.json', JSON.stringify(out, null, 2));
  void pid;
}, 60000);
