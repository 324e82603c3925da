// examples/clients/socket.ts: the graphql-ws client both snippets use
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';

/**
 * A graphql-ws client that keeps reconnecting, also while the server restarts (graphql-ws's
 * default `shouldRetry` gives up on a refused connection), but not with a refused token (4403).
 * `ready` resolves once the socket is connected and authenticated; `onReconnect` runs after each
 * reconnection, to catch up with what was sent while it was away: once graphql-ws has sent the
 * subscriptions again, right after `connected` (caught up before, a message sent between that read
 * and the server reading them was neither read nor pushed).
 */
export function createSocket(url: string, token: string, onReconnect: () => void): { socket: Client; ready: Promise<void> } {
  let connected!: () => void;
  const ready = new Promise<void>((resolve) => (connected = resolve));
  const socket = createClient({
    url: url.replace(/^http/, 'ws'), // http://localhost:4000/graphql -> ws://localhost:4000/graphql
    webSocketImpl: WebSocket, // Node; leave it out in a browser
    connectionParams: () => ({ authorization: `Bearer ${token}` }), // read at each (re)connection: a function may return a newer token
    retryAttempts: Infinity,
    shouldRetry: (e) => (e as { code?: number } | undefined)?.code !== 4403,
    retryWait: (n) => new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(30_000, 1000 * 2 ** n))),
    on: { connected: (_socket, _payload, wasRetry) => (wasRetry ? setTimeout(onReconnect, 100) : connected()) },
  });
  return { socket, ready };
}
