import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { ApolloServerPlugin } from '@apollo/server';

/** How long a drain waits for the first request of a connection it accepted just before. */
const FIRST_REQUEST_MS = 500;

/**
 * Drains the HTTP server when Apollo stops, as Apollo's ApolloServerPluginDrainHttpServer does:
 * the server stops accepting; a connection with no request in flight is ended at once (one whose
 * first request has not come yet, once it is answered or FIRST_REQUEST_MS passed), one with
 * requests when its last response is sent; after `graceMs` every connection left is ended, then
 * destroyed. Apollo's kept each connection with a close listener of its own (a once() wrapper,
 * its bound state and a closure: ~200 B) for as long as it lived, every WebSocket included; here
 * a connection costs an entry in one Map, and the listeners are shared.
 */
export function drainHttpServer(server: Server, graceMs: number): ApolloServerPlugin & { stopped(): boolean } {
  /** Requests in flight, by connection. */
  const inFlight = new Map<Socket, number>();
  /** Connections whose first request has not been read yet. */
  const fresh = new WeakSet<Socket>();
  /** Each connection's latest response not yet sent, and those the drain told to close their connection. */
  const latest = new Map<Socket, ServerResponse>();
  const closing = new WeakSet<ServerResponse>();
  let stopped = false;

  /**
   * From the drain on, a connection's last answer says `Connection: close`, so that its client
   * sends its next request elsewhere instead of on a connection about to end (a request written
   * as the end crossed it was reset unanswered, and its client could not tell whether it ran: an
   * outside probe, 1-3 a stop with 8 keep-alive clients). Only the last: a request read behind it
   * on the same connection still gets its own answer (503).
   */
  function closeAfter(res: ServerResponse): void {
    if (res.headersSent || !res.shouldKeepAlive) return;
    res.shouldKeepAlive = false;
    closing.add(res);
  }

  function gone(this: Socket): void {
    inFlight.delete(this);
    // An answer never finished (its client went first) is forgotten with its connection.
    latest.delete(this);
  }
  function answered(this: ServerResponse): void {
    const socket = this.req.socket;
    if (latest.get(socket) === this) latest.delete(socket);
    // A connection that closed first is gone for good: not counted again.
    if (!inFlight.has(socket)) return;
    const left = (inFlight.get(socket) ?? 1) - 1;
    inFlight.set(socket, left);
    if (stopped && left === 0) socket.end();
  }

  server.on('connection', (socket: Socket) => {
    inFlight.set(socket, 0);
    fresh.add(socket);
    socket.on('close', gone);
  });
  // A WebSocket's upgrade is its first request (its socket is closed with 1001 before the drain).
  // Heard by no one else (the WebSocket server closed), it is destroyed, as Node does with no listener.
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    fresh.delete(req.socket);
    if (server.listenerCount('upgrade') === 1) socket.destroy();
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    fresh.delete(req.socket);
    inFlight.set(req.socket, (inFlight.get(req.socket) ?? 0) + 1);
    res.on('finish', answered);
    // Another request behind it on this connection: the one before keeps the connection for it.
    const before = latest.get(req.socket);
    if (before && closing.has(before) && !before.headersSent) {
      before.shouldKeepAlive = true;
      closing.delete(before);
    }
    latest.set(req.socket, res);
    if (stopped) closeAfter(res);
  });

  async function stop(): Promise<void> {
    // Requests that arrived in this turn are counted first.
    await new Promise((resolve) => setImmediate(resolve));
    stopped = true;
    for (const res of latest.values()) closeAfter(res);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // A connection accepted whose first request is still on its way (a client's burst opens many)
    // is given FIRST_REQUEST_MS for it: read, it is refused (503, not run) and its connection closed
    // with the answer. Ended at once, it met the request with a reset, and its client could not
    // tell whether it ran (an outside probe: 72-111 resets a stop under a burst of sends, none 503).
    const late = setTimeout(() => {
      for (const [socket, requests] of inFlight) if (requests === 0) socket.end();
    }, Math.min(FIRST_REQUEST_MS, graceMs));
    for (const [socket, requests] of inFlight) if (requests === 0 && !fresh.has(socket)) socket.end();
    const grace = setTimeout(() => {
      for (const socket of inFlight.keys()) socket.end();
      setImmediate(() => {
        for (const socket of inFlight.keys()) socket.destroy();
      });
    }, graceMs);
    await closed;
    clearTimeout(late);
    clearTimeout(grace);
  }

  return {
    async serverWillStart() {
      return { drainServer: stop };
    },
    /**
     * Whether draining began: a request parsed from here on (one that sat unread on a connection
     * ended as idle) is to be refused, not run: its answer could no longer be written, and the
     * client would take a write it made for one that failed (an outside probe, 4 of 7 stops).
     */
    stopped: () => stopped,
  };
}
