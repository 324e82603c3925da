import { eventually, wsClient } from './helpers/graphql';
import { createTestServer } from './helpers/server';
import { buildGroup, sendMessage, signup } from './helpers/factories';
import { sql } from './helpers/db';
import { startReceiver, type Receiver } from './helpers/webhook-receiver';

const SECRET = 'whsec_test_0123456789abcdef';

/** An instance killed (SIGKILL) with events queued: nothing is lost, a restarted instance delivers them. */
describe('notifications after a crash', () => {
  let receiver: Receiver;
  beforeEach(async () => {
    receiver = await startReceiver();
  });
  afterEach(async () => {
    await receiver.close();
  });

  it('should deliver events queued by an instance killed with SIGKILL once one starts again', async () => {
    const vars = { WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: SECRET, WEBHOOK_COALESCE: '0', PRESENCE_GRACE: '0.2' };
    // The receiver is down: the events wait in the outbox, some tried already.
    receiver.answer(503);
    const doomed = await createTestServer(vars, { spawn: true });
    const [a, b, c] = [await signup(doomed.url), await signup(doomed.url), await signup(doomed.url)];
    const group = await buildGroup(doomed.url, a, { members: [b, c] });
    const texts = ['before', 'the', 'crash'];
    for (const text of texts) await sendMessage(doomed.url, a.token, { groupId: group.id, content: text });
    const pending = () => sql<{ n: number }>(doomed.env.DATABASE_URL!, "select count(*)::int as n from notification_outbox where state = 'PENDING'");
    await eventually(async () => (await pending())[0].n === 6 && receiver.refused > 0, 15_000, 100);
    await doomed.kill();
    receiver.answer(200);
    expect(receiver.got).toEqual([]);

    const revived = await createTestServer(vars, { clean: false, jobs: true });
    // A lease the dead instance held runs out after 30 s; every other event goes at once.
    await eventually(() => receiver.got.length >= 6, 45_000, 100);
    for (const u of [b, c]) expect(receiver.of(u.id).map((e) => e.body.preview)).toEqual(texts);
    expect(new Set(receiver.got.map((e) => e.body.id)).size).toBe(6);
    // The receiver records a request before its answer reaches the instance, which then marks the row DELIVERED.
    await eventually(async () => (await pending())[0].n === 0, 5_000, 50);
    await revived.dispose();
  }, 90_000);

  it("should announce a message to a user whose only socket was on a killed instance, without waiting for that instance's list to lapse", async () => {
    const vars = { WEBHOOK_URL: receiver.url, WEBHOOK_SECRET: SECRET, WEBHOOK_COALESCE: '0', PRESENCE_GRACE: '0.2' };
    const live = await createTestServer(vars, { jobs: true });
    // PRESENCE_TIMEOUT's default: the doomed instance's socket list would count for 30 s after the kill.
    const doomed = await createTestServer(vars, { spawn: true, clean: false });
    const [alice, bob, carol] = [await signup(live.url), await signup(live.url), await signup(live.url)];
    const group = await buildGroup(live.url, alice, { members: [bob, carol] });
    const bobOnline = wsClient(doomed.wsUrl, bob.token);
    await bobOnline.connected;
    // Carol, never connected, is the barrier: once she is told, the round that read the message decided Bob's too.
    await sendMessage(live.url, alice.token, { groupId: group.id, content: 'while connected' });
    await eventually(() => receiver.of(carol.id).length === 1, 10_000, 50);
    expect(receiver.of(bob.id)).toEqual([]);

    await doomed.kill();
    await sendMessage(live.url, alice.token, { groupId: group.id, content: 'after the kill' });
    await eventually(() => receiver.of(bob.id).length === 1, 15_000, 50);
    expect(receiver.of(bob.id)[0].body.preview).toBe('after the kill');
    await bobOnline.dispose();
    await live.dispose();
  }, 60_000);
});
