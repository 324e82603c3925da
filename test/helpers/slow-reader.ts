import { SendMessageDocument } from '../../generated/client/graphql';
import { attempt } from './factories';
import { running } from './graphql';
import { initialized, type RawSocket } from './raw-socket';
import type { TestServer } from './server';

/**
 * Stops reading on `socket` (subscribed to the lobby's messages) and sends large messages to the
 * lobby until the server gives up on a consumer that fell behind (WS_MAX_BUFFERED_BYTES).
 */
export async function floodUntilCut(s: TestServer, socket: RawSocket, lobby: string, token: string): Promise<void> {
  (socket.socket as any)._socket.pause();
  const big = 'x'.repeat(3900);
  for (let i = 0; i < 5000 && s.fanout.slowConsumersClosed === 0; i += 10) {
    await Promise.all([...Array(10).keys()].map((k) => attempt(s.url, SendMessageDocument, { input: { groupId: lobby, content: `${i + k} ${big}` } }, token)));
  }
}

/**
 * A socket of `token`'s on `query` (a messageAdded subscription) that stopped reading and was
 * given up on (floodUntilCut): the server's first and only slow consumer closed.
 */
export async function cutSlowReader(s: TestServer, token: string, lobby: string, query: string): Promise<RawSocket> {
  const socket = await initialized(s.wsUrl, token);
  socket.send({ id: 'slow', type: 'subscribe', payload: { query } });
  await running(s, 'messageAdded', 1);
  await floodUntilCut(s, socket, lobby, token);
  if (s.fanout.slowConsumersClosed !== 1) throw new Error(`slow consumers closed: ${s.fanout.slowConsumersClosed}, not 1`);
  return socket;
}
