import type { IncomingMessage, Server } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { GraphQLFormattedError, GraphQLSchema } from 'graphql';
import { WebSocketServer, type WebSocket } from 'ws';
import { useServer } from 'graphql-ws/use/ws';
import type { Services } from '../core/services';
import { clientIp } from '../core/http';
import { Topic } from '../shared/pubsub/topics';
import { bearerToken, createContext, type Viewer } from './context';
import { createFanout, type FanoutContext, type FanoutStats } from './fanout';

interface SocketState {
  viewer: Viewer;
  ip: string;
}

export interface WebSocketHandle {
  wss: WebSocketServer;
  fanout: FanoutStats;
  /** Closes every socket with `code` (1001 on shutdown). */
  closeAll(code: number, reason: string): void;
  dispose(): Promise<void>;
}

/**
 * graphql-ws on the GraphQL path. A socket authenticates once, in connection_init (or
 * the upgrade's Authorization header); without a valid token it is closed 4403.
 */
export function attachWebSocket(
  server: Server,
  schema: GraphQLSchema,
  services: Services,
  opts: { maxPayload: number; formatError: (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError },
): WebSocketHandle {
  const { logger } = services;
  const wss = new WebSocketServer({ server, path: '/graphql', maxPayload: opts.maxPayload });
  const sockets = new Map<WebSocket, SocketState>();
  const fanout = createFanout({
    maxBufferedBytes: services.env.WS_MAX_BUFFERED_BYTES,
    formatError: (e) => opts.formatError(e.toJSON(), e),
  });

  const serverCleanup = useServer<Record<string, unknown>, { state?: SocketState }>(
    {
      schema,
      connectionInitWaitTimeout: 3000,
      subscribe: fanout.subscribe,
      onConnect: async (ctx) => {
        const params = ctx.connectionParams ?? {};
        const req = ctx.extra.request as IncomingMessage;
        const token = bearerToken(params.authorization ?? params.Authorization ?? params.token ?? req.headers.authorization);
        const viewer = token ? await services.auth.authenticate(token).catch(() => null) : null;
        if (!viewer) return false; // graphql-ws closes with 4403 Forbidden
        const state = { viewer, ip: clientIp(req, services.env) };
        ctx.extra.state = state;
        sockets.set(ctx.extra.socket, state);
        await services.memberships.track(viewer.userId);
        services.presence.socketOpened(viewer.userId);
        return true;
      },
      onClose: (ctx) => {
        const state = ctx.extra.state;
        sockets.delete(ctx.extra.socket);
        if (!state) return;
        services.memberships.untrack(state.viewer.userId);
        services.presence.socketClosed(state.viewer.userId);
      },
      onSubscribe: (ctx) => {
        const state = ctx.extra.state;
        if (state) void services.presence.touch(state.viewer.userId);
      },
      context: (ctx, id, payload) => {
        const state = ctx.extra.state!;
        const requestId = randomUUID();
        const context: FanoutContext = createContext(services, state.viewer, { ip: state.ip, requestId, logger: logger.child({ requestId }) }, { freshPerEvent: true });
        context.operation = { id, socket: ctx.extra.socket, query: payload.query, variables: payload.variables, operationName: payload.operationName };
        return context;
      },
    },
    wss,
  );

  // A revoked token closes every socket opened with it, on every instance.
  const off = services.pubsub.on(Topic.SessionsRevoked, (p) => {
    const hashes = new Set(p.tokenHashes);
    for (const [socket, state] of sockets) {
      if (hashes.has(state.viewer.tokenHash)) socket.close(4403, 'Forbidden');
    }
  });

  return {
    wss,
    fanout: fanout.stats,
    closeAll(code, reason) {
      for (const client of wss.clients) client.close(code, reason);
    },
    async dispose() {
      off();
      for (const client of wss.clients) client.close(1001, 'Going away');
      await serverCleanup.dispose();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      for (const client of wss.clients) client.terminate();
    },
  };
}
