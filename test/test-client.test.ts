import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gql } from './helpers/graphql';

describe("the tests' HTTP client", () => {
  it('should send again, on a new connection, a request whose kept connection the server closed unread', async () => {
    // The second request on any connection finds it reset, as when a server's keep-alive timeout
    // closes an idle connection just as the client reuses it.
    const perSocket = new WeakMap<object, number>();
    let answered = 0;
    const server = http.createServer((req, res) => {
      const n = (perSocket.get(req.socket) ?? 0) + 1;
      perSocket.set(req.socket, n);
      if (n > 1) return void req.socket.resetAndDestroy();
      answered++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ data: { n: answered } }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/graphql`;
    try {
      expect((await gql(url, '{ n }')).data).toEqual({ n: 1 });
      expect((await gql(url, '{ n }')).data).toEqual({ n: 2 });
      expect(answered).toBe(2);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});
