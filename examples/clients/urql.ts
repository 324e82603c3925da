// examples/clients/urql.ts: urql
import { Client, fetchExchange, subscriptionExchange } from '@urql/core';
import { HistoryDocument, MessageAddedDocument, SendMessageDocument, type MessagePartsFragment } from '../../generated/client/graphql';
import { missed, onceEach } from './missed';
import { createSocket } from './socket';

/** Joins a group's conversation: `onMessage` gets its newest page, then every message once, one's own included, also across reconnections. */
export async function joinChat(opts: { url: string; token: string; groupId: string; onMessage: (m: MessagePartsFragment) => void }) {
  const { url, token, groupId, onMessage } = opts;
  const { show, heard } = onceEach(onMessage);
  const page = async (before?: string) => (await client.query(HistoryDocument, { conversation: { groupId }, last: 50, before }).toPromise()).data?.history;
  // What was read or pushed as the socket came back, taken before it subscribes again: what is pushed after is newer than what it missed.
  const catchUp = async (resubscribed: Promise<void>) => {
    const shown = heard();
    await resubscribed;
    (await missed(page, shown)).forEach((m) => show(m));
  };
  const { socket, ready } = createSocket(url, token, (resubscribed) => void catchUp(resubscribed).catch(console.error));
  const client = new Client({
    url,
    preferGetMethod: false, // POST: Apollo Server's CSRF prevention refuses plain GETs
    requestPolicy: 'network-only',
    fetchOptions: { headers: { authorization: `Bearer ${token}` } },
    exchanges: [
      fetchExchange,
      subscriptionExchange({
        forwardSubscription: (req) => ({ subscribe: (sink) => ({ unsubscribe: socket.subscribe({ ...req, query: req.query ?? '' }, sink) }) }),
      }),
    ],
  });
  const live = client.subscription(MessageAddedDocument, { conversation: { groupId } }).subscribe(({ data }) => data && show(data.messageAdded));
  (await page())?.edges.forEach((e) => show(e.node)); // the newest page first: what was said before
  // graphql-ws acknowledges the connection, not each subscription: send only once connected...
  await ready;
  return {
    async send(content: string) {
      const { data, error } = await client.mutation(SendMessageDocument, { input: { groupId, content } }).toPromise();
      if (error) throw error;
      show(data!.sendMessage, true); // ...and take one's own message from the answer, whichever arrives first
      return data!.sendMessage;
    },
    async close() {
      live.unsubscribe();
      // While the server is away, graphql-ws rejects with the reconnection it gives up: nothing is left open.
      await Promise.resolve(socket.dispose()).catch(() => undefined);
    },
  };
}
