import { SendMessageDocument } from '../../generated/client/graphql';
import { attempt } from './factories';
import type { RawSocket } from './raw-socket';
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
