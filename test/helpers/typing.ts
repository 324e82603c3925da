import { gql, listen, ok, sleep } from './graphql';
import { createTestServer } from './server';
import { buildGroup, sendMessage, signup } from './factories';

/**
 * Alice starts typing through instance A while no one is on B; then B takes the group's channel
 * (Carol's socket) and Carol sends through it, which has B ask the typing store whether anyone
 * started typing there lately; then Alice sends through B. Returns how long Bob (on A) waited
 * for her typing to end after that send, and the `typing` flags he saw. With a 5 s lapse, a
 * send that B let pass without ending her typing shows as a wait of about 5 s.
 */
export async function typingBegunBeforeTheChannel(env: Record<string, string>): Promise<{ waitedMs: number; flags: boolean[] }> {
  const a = await createTestServer({ ...env, TYPING_TIMEOUT: '5s' }, { captureLogs: true });
  const b = await createTestServer({ ...env, TYPING_TIMEOUT: '5s' }, { clean: false, captureLogs: true });
  const [alice, bob, carol] = [await signup(a.url), await signup(a.url), await signup(a.url)];
  const g = (await buildGroup(a.url, alice, { name: 'Begun elsewhere', members: [bob, carol] })).id;
  const c = { groupId: g };
  const bobSees = await listen<any>(a, bob, 'subscription($c: ConversationInput) { typing(conversation: $c) { typing } }', { c });
  await ok(gql(a.url, 'mutation($c: ConversationInput!) { setTyping(conversation: $c) }', { c }, alice.token));
  await bobSees.nth(1);
  await listen(b, carol, 'subscription { messageAdded { id } }');
  await sendMessage(b.url, carol.token, { groupId: g, content: 'carol' });
  await sleep(100);
  const sent = Date.now();
  await sendMessage(b.url, alice.token, { groupId: g, content: 'alice' });
  await bobSees.nth(2).catch((e: Error) => {
    // What went wrong where (a refused command, a failed publish) is in the instances' warnings.
    const warnings = [a, b].flatMap((s, i) => s.logs.filter((l) => Number(l.json.level) >= 40).map((l) => `${'AB'[i]}: ${l.raw}`));
    throw new Error(`${e.message}\n${warnings.join('\n') || 'no warnings logged'}`);
  });
  return { waitedMs: Date.now() - sent, flags: bobSees.values.map((v) => v.typing.typing) };
}
