// examples/clients/apollo.ts: Apollo Client 4
import { ApolloClient, HttpLink, InMemoryCache, split } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { OperationTypeNode } from 'graphql';
import { HistoryDocument, MessageAddedDocument, SendMessageDocument, type MessagePartsFragment } from '../../generated/client/graphql';
import introspection from '../../generated/client/possible-types';
import { missed, onceEach } from './missed';
import { createSocket } from './socket';

/** Joins a group's conversation: `onMessage` gets its newest page, then every message once, one's own included, also across reconnections. */
export async function joinChat(opts: { url: string; token: string; groupId: string; onMessage: (m: MessagePartsFragment) => void }) {
  const { url, token, groupId, onMessage } = opts;
  const { show, heard } = onceEach(onMessage);
  const page = async (before?: string) =>
    (await client.query({ query: HistoryDocument, variables: { conversation: { groupId }, last: 50, before }, fetchPolicy: 'network-only' })).data?.history;
  // What was read or pushed as the socket came back, taken before it subscribes again: what is pushed after is newer than what it missed.
  const catchUp = async (resubscribed: Promise<void>) => {
    const shown = heard();
    await resubscribed;
    (await missed(page, shown)).forEach((m) => show(m));
  };
  const { socket, ready } = createSocket(url, token, (resubscribed) => void catchUp(resubscribed).catch(console.error));
  const client = new ApolloClient({
    link: split(
      ({ operationType }) => operationType === OperationTypeNode.SUBSCRIPTION,
      new GraphQLWsLink(socket),
      new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` } }),
    ),
    cache: new InMemoryCache({
      possibleTypes: introspection.possibleTypes, // what implements Node, for `node`/`nodes` answers
      typePolicies: { Message: { fields: { reactions: { merge: false } } } }, // counts have no id: the newest list wins
    }),
  });
  const live = client.subscribe({ query: MessageAddedDocument, variables: { conversation: { groupId } } }).subscribe(({ data }) => data && show(data.messageAdded));
  (await page())?.edges.forEach((e) => show(e.node)); // the newest page first: what was said before
  // graphql-ws acknowledges the connection, not each subscription: send only once connected...
  await ready;
  return {
    async send(content: string) {
      const { data } = await client.mutate({ mutation: SendMessageDocument, variables: { input: { groupId, content } } });
      show(data!.sendMessage, true); // ...and take one's own message from the answer, whichever arrives first
      return data!.sendMessage;
    },
    async close() {
      live.unsubscribe();
      client.stop();
      // While the server is away, graphql-ws rejects with the reconnection it gives up: nothing is left open.
      await Promise.resolve(socket.dispose()).catch(() => undefined);
    },
  };
}
