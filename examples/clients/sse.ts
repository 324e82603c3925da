// examples/clients/sse.ts: graphql-sse, where WebSockets are blocked (browsers, and Node 20 with its fetch)
import { createClient } from 'graphql-sse';

/** Streams a group's messages over Server-Sent Events; returns what stops it. */
export function streamMessages(opts: { url: string; token: string; groupId: string; onMessage: (content: string) => void }): () => void {
  const sse = createClient({ url: `${opts.url}/stream`, headers: { authorization: `Bearer ${opts.token}` } });
  const stop = sse.subscribe<{ messageAdded: { content: string } }>(
    { query: 'subscription($g: ID) { messageAdded(conversation: { groupId: $g }) { content } }', variables: { g: opts.groupId } },
    { next: ({ data }) => data && opts.onMessage(data.messageAdded.content), error: console.error, complete: () => sse.dispose() },
  );
  return () => (stop(), sse.dispose());
}
