// examples/clients/socket.ts: the graphql-ws client both snippets use
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';

/**
 * A graphql-ws client that keeps reconnecting, also while the server restarts (graphql-ws's
 * default `shouldRetry` gives up on a refused connection), but not with a refused token (4403).
 * `ready` resolves once the socket is connected and authenticated; `onReconnect` runs as each
 * reconnection is made, to catch up with what was sent while it was away, with a promise that
 * resolves once graphql-ws has sent the subscriptions again (right after `connected`): take what
 * was shown until then at once, and read `history` once it resolves (read before, a message sent
 * between that read and the server reading them was neither read nor pushed; what was shown taken
 * after, a message pushed meanwhile looked like the last one seen and ended the catch-up early).
 */
export function createSocket(url: string, token: string, onReconnect: (resubscribed: Promise<void>) => void): { socket: Client; ready: Promise<void> } {
  let connected!: () => void;
  const ready = new Promise<void>((resolve) => (connected = resolve));
  const socket = createClient({
    url: url.replace(/^http/, 'ws'), // http://localhost:4000/graphql -> ws://localhost:4000/graphql
    webSocketImpl: WebSocket, // Node; leave it out in a browser
    connectionParams: () => ({ authorization: `Bearer ${token}` }), // read at each (re)connection: a function may return a newer token
    retryAttempts: Infinity,
    shouldRetry: (e) => (e as { code?: number } | undefined)?.code !== 4403,
    retryWait: (n) => new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(30_000, 1000 * 2 ** n))),
    on: { connected: (_socket, _payload, wasRetry) => (wasRetry ? onReconnect(new Promise((resolve) => setTimeout(resolve, 100))) : connected()) },
  });
  return { socket, ready };
}
