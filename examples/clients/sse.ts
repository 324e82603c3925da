// examples/clients/sse.ts: graphql-sse, where WebSockets are blocked (browsers, and Node 20 with its fetch)
import { createClient } from 'graphql-sse';

/**
 * Streams a group's messages over Server-Sent Events; returns what stops it. graphql-sse reconnects
 * by itself (a restarting server, a network blip), silently: what was sent meanwhile is not
 * streamed, so `onReconnect` runs then, to catch up with `history` (see docs/CLIENTS.md).
 */
export function streamMessages(opts: { url: string; token: string; groupId: string; onMessage: (content: string) => void; onReconnect?: () => void }): () => void {
  const sse = createClient({
    url: `${opts.url}/stream`,
    headers: { authorization: `Bearer ${opts.token}` },
    on: { connected: (reconnected) => reconnected && opts.onReconnect?.() },
  });
  const stop = sse.subscribe<{ messageAdded: { content: string } }>(
    { query: 'subscription($g: ID) { messageAdded(conversation: { groupId: $g }) { content } }', variables: { g: opts.groupId } },
    { next: ({ data }) => data && opts.onMessage(data.messageAdded.content), error: console.error, complete: () => sse.dispose() },
  );
  return () => (stop(), sse.dispose());
}
