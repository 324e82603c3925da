import WebSocket from 'ws';
import { eventually, listen, running } from './helpers/graphql';
import { buildGroup, signup, lobbyOf, sendMessage } from './helpers/factories';
import { initialized, muteAfterInit, raw } from './helpers/raw-socket';
import { createTestServer } from './helpers/server';

/**
 * Parley serves graphql-transport-ws itself (src/graphql/ws.ts) rather than through graphql-ws's
 * server; these are the protocol's rules as graphql-ws clients rely on them, frame by frame.
 */
const SEND = 'mutation($g: ID!, $t: String!) { sendMessage(input: { groupId: $g, content: $t }) { id } }';
const MESSAGES = 'subscription { messageAdded { content } }';

describe('graphql-transport-ws', () => {
  it('should refuse a socket without the graphql-transport-ws subprotocol with 4406', async () => {
    const s = await createTestServer();
    const r = raw(s.wsUrl, { protocol: '' });
    await r.opened;
    expect((await r.closed).code).toBe(4406);
  });

  it("should tell a client of the legacy graphql-ws subprotocol 4406 after its handshake, not drop it in the handshake", async () => {
    const s = await createTestServer();
    // Refused in the handshake, a standard client (ws, browsers) failed the socket itself with 1006.
    const r = raw(s.wsUrl, { protocol: 'graphql-ws' });
    await r.opened;
    expect(r.socket.protocol).toBe('graphql-ws');
    expect(await r.closed).toEqual({ code: 4406, reason: 'Subprotocol not acceptable' });
  });

  it('should acknowledge one connection_init and close a second with 4429', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const r = await initialized(s.wsUrl, u.token);
    r.send({ type: 'connection_init', payload: { authorization: `Bearer ${u.token}` } });
    expect(await r.closed).toEqual({ code: 4429, reason: 'Too many initialisation requests' });
  });

  it('should take the token from the upgrade request when connection_init has none', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const socket = new WebSocket(s.wsUrl, 'graphql-transport-ws', { headers: { authorization: `Bearer ${u.token}` } });
    const frames: any[] = [];
    socket.on('message', (m) => frames.push(JSON.parse(String(m))));
    await new Promise((r) => socket.once('open', r));
    socket.send(JSON.stringify({ type: 'connection_init' }));
    await eventually(() => frames.length > 0);
    // Then a ping: nothing else comes before its pong.
    socket.send(JSON.stringify({ type: 'ping' }));
    await eventually(() => frames.some((f) => f.type === 'pong'));
    expect(frames).toEqual([{ type: 'connection_ack' }, { type: 'pong' }]);
    socket.terminate();
  });

  it('should refuse subscribe before connection_ack with 4401', async () => {
    const s = await createTestServer();
    const r = raw(s.wsUrl);
    await r.opened;
    r.send({ id: '1', type: 'subscribe', payload: { query: MESSAGES } });
    expect((await r.closed).code).toBe(4401);
  });

  it('should answer ping with pong, echoing its payload', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const r = await initialized(s.wsUrl, u.token);
    r.send({ type: 'ping' });
    expect(await r.next('pong')).toEqual({ type: 'pong' });
    r.send({ type: 'ping', payload: { at: 42 } });
    expect(await r.next('pong')).toEqual({ type: 'pong', payload: { at: 42 } });
    r.send({ type: 'pong', payload: { ignored: true } });
    await r.sync();
    expect(r.socket.readyState).toBe(WebSocket.OPEN);
  });

  it.each([
    ['not JSON', '{"type":'],
    ['an array', '[]'],
    ['no type', { id: '1' }],
    ['a server-only type', { id: '1', type: 'next', payload: {} }],
    ['subscribe without an id', { type: 'subscribe', payload: { query: MESSAGES } }],
    ['subscribe with an empty id', { id: '', type: 'subscribe', payload: { query: MESSAGES } }],
    ['subscribe without a query', { id: '1', type: 'subscribe', payload: {} }],
    ['subscribe with variables as an array', { id: '1', type: 'subscribe', payload: { query: MESSAGES, variables: [] } }],
    ['subscribe with a numeric operationName', { id: '1', type: 'subscribe', payload: { query: MESSAGES, operationName: 1 } }],
    ['complete without an id', { type: 'complete' }],
    ['subscribe with an id of 129 characters', { id: 'x'.repeat(129), type: 'subscribe', payload: { query: MESSAGES } }],
    ['complete with an id of 129 characters', { id: 'x'.repeat(129), type: 'complete' }],
    ['ping with a string payload', { type: 'ping', payload: 'x' }],
  ])('should close with 4400 on %s', async (_name, frame) => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const r = await initialized(s.wsUrl, u.token);
    r.send(frame);
    expect(await r.closed).toEqual({ code: 4400, reason: 'Invalid message received' });
  });

  it('should close a duplicate id with 4409 however long the id', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const r = await initialized(s.wsUrl, u.token);
    // The longest id taken, its close reason past the 123 bytes a close frame holds.
    const id = '\u00e9'.repeat(128);
    r.send({ id, type: 'subscribe', payload: { query: MESSAGES } });
    r.send({ id, type: 'subscribe', payload: { query: MESSAGES } });
    expect(await r.closed).toEqual({ code: 4409, reason: 'Subscriber already exists' });
  });

  it('should answer a query and a mutation over the socket with next, then complete', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const r = await initialized(s.wsUrl, u.token);
    r.send({ id: 'q', type: 'subscribe', payload: { query: '{ me { id username } }' } });
    expect(await r.next('next', 'q')).toEqual({ id: 'q', type: 'next', payload: { data: { me: { id: u.id, username: u.username } } } });
    await r.next('complete', 'q');
    r.send({ id: 'm', type: 'subscribe', payload: { query: SEND, variables: { g: lobby, t: 'over the socket' } } });
    const sent = await r.next('next', 'm');
    expect(sent.payload.data.sendMessage.id).toEqual(expect.any(String));
    await r.next('complete', 'm');
    // Bad variables are bad input, answered in `next` as graphql-ws does; the socket stays.
    r.send({ id: 'v', type: 'subscribe', payload: { query: SEND, variables: { g: lobby } } });
    const bad = await r.next('next', 'v');
    expect(bad.payload.errors[0].extensions.code).toBe('BAD_USER_INPUT');
    await r.next('complete', 'v');
    // An id can be used again once its operation completed.
    r.send({ id: 'q', type: 'subscribe', payload: { query: '{ me { id } }' } });
    await r.next('complete', 'q');
    expect(r.socket.readyState).toBe(WebSocket.OPEN);
  });

  it('should answer an unknown operationName with an error message', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const r = await initialized(s.wsUrl, u.token);
    r.send({ id: 'x', type: 'subscribe', payload: { query: 'query A { me { id } }', operationName: 'B' } });
    const e = await r.next('error', 'x');
    expect(e.payload[0]).toMatchObject({ message: 'Unknown operation named "B".', extensions: { code: 'BAD_USER_INPUT' } });
  });

  it('should answer a subscription its resolver refuses with next (the errors) and complete', async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const group = (await buildGroup(s.url, a, { isPrivate: true })).id;
    const r = await initialized(s.wsUrl, b.token);
    r.send({ id: 'f', type: 'subscribe', payload: { query: 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }', variables: { g: group } } });
    const next = await r.next('next', 'f');
    // A private group answers as one that does not exist.
    expect(next.payload.errors[0].extensions.code).toBe('NOT_FOUND');
    await r.next('complete', 'f');
    expect(s.fanout.active.messageAdded ?? 0).toBe(0);
  });

  it('should stop a subscription on complete, and every subscription when its socket closes', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const r = await initialized(s.wsUrl, u.token);
    for (const id of ['a', 'b', 'c']) r.send({ id, type: 'subscribe', payload: { query: MESSAGES } });
    await running(s, 'messageAdded', 3);
    r.send({ id: 'b', type: 'complete' });
    await running(s, 'messageAdded', 2);
    await sendMessage(s.url, u.token, { groupId: lobby, content: 'after b' });
    await eventually(() => r.messages.filter((m) => m.type === 'next').length >= 2);
    expect(r.messages.filter((m) => m.type === 'next').map((m) => m.id).sort()).toEqual(['a', 'c']);
    // complete of an id that isn't running is ignored.
    r.send({ id: 'nope', type: 'complete' });
    await r.sync();
    expect(r.socket.readyState).toBe(WebSocket.OPEN);
    r.socket.terminate();
    await r.closed;
    await running(s, 'messageAdded', 0);
  });

  it('should not start a subscription completed while it was being set up', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const r = await initialized(s.wsUrl, u.token);
    // The conversation check makes setup asynchronous; complete arrives in the same tick.
    r.send({ id: 'gone', type: 'subscribe', payload: { query: 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }', variables: { g: lobby } } });
    r.send({ id: 'gone', type: 'complete' });
    // The same setup under another id, started after it: once that one runs and has the message, so would 'gone'.
    r.send({ id: 'probe', type: 'subscribe', payload: { query: 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }', variables: { g: lobby } } });
    await running(s, 'messageAdded', 1);
    await sendMessage(s.url, u.token, { groupId: lobby, content: 'unseen' });
    await r.next('next', 'probe');
    expect(r.messages.filter((m) => m.id === 'gone')).toEqual([]);
    expect(s.fanout.active.messageAdded).toBe(1);
  });

  it('should run the document of a reused id, not the one completed while it was set up', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const r = await initialized(s.wsUrl, u.token);
    const on = (selection: string) => `subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { ${selection} } }`;
    // All in one tick: the first setup is still checking the conversation when its id is reused.
    r.send({ id: 'x', type: 'subscribe', payload: { query: on('content'), variables: { g: lobby } } });
    r.send({ id: 'x', type: 'complete' });
    r.send({ id: 'x', type: 'subscribe', payload: { query: on('content sender { username }'), variables: { g: lobby } } });
    await running(s, 'messageAdded', 1);
    await sendMessage(s.url, u.token, { groupId: lobby, content: 'reused' });
    // A second message as a barrier: once it arrives, a wrongly started first document would have answered 'reused' too.
    await sendMessage(s.url, u.token, { groupId: lobby, content: 'then' });
    await eventually(() => r.messages.some((m) => m.id === 'x' && m.payload.data.messageAdded.content === 'then'));
    expect(r.messages.filter((m) => m.id === 'x')).toEqual([
      { id: 'x', type: 'next', payload: { data: { messageAdded: { content: 'reused', sender: { username: u.username } } } } },
      { id: 'x', type: 'next', payload: { data: { messageAdded: { content: 'then', sender: { username: u.username } } } } },
    ]);
    expect(s.fanout.active.messageAdded).toBe(1);
  });

  it('should close a rate-limited subscribe that reuses a running id with 4409, not answer for the running one', async () => {
    const s = await createTestServer({ RATE_LIMIT_WS_MESSAGES: '3/1m' });
    const u = await signup(s.url);
    const r = await initialized(s.wsUrl, u.token);
    r.send({ id: 'a', type: 'subscribe', payload: { query: MESSAGES } });
    r.send({ type: 'ping' });
    await r.next('pong');
    r.send({ id: 'a', type: 'subscribe', payload: { query: MESSAGES } });
    expect((await r.closed).code).toBe(4409);
    expect(r.messages.filter((m) => m.id === 'a')).toEqual([]);
  });

  it('should mask and log an unexpected failure in a subscription resolver, not call it bad input', async () => {
    const s = await createTestServer({ NODE_ENV: 'production', ENABLE_INTROSPECTION: 'true' });
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    s.services.messages.conversation = async () => {
      throw new Error('relation "secret_table" does not exist');
    };
    const r = await initialized(s.wsUrl, u.token);
    r.send({ id: 'f', type: 'subscribe', payload: { query: 'subscription($g: ID!) { messageAdded(conversation: { groupId: $g }) { content } }', variables: { g: lobby } } });
    const next = await r.next('next', 'f');
    expect(next.payload.errors).toEqual([expect.objectContaining({ message: 'Internal server error', extensions: expect.objectContaining({ code: 'INTERNAL_SERVER_ERROR' }) })]);
    expect(JSON.stringify(next)).not.toContain('secret_table');
    await r.next('complete', 'f');
  });

  it('should terminate a socket that stops answering keep-alive pings, and keep one that answers', async () => {
    const s = await createTestServer({ WS_KEEPALIVE: '150ms' });
    const u = await signup(s.url);
    const mute = await muteAfterInit(s.wsUrl, u.token);
    const live = await initialized(s.wsUrl, u.token);
    let pings = 0;
    live.socket.on('ping', () => pings++);
    expect((await mute.closed).code).toBe(1006);
    // Kept through three more rounds of pings, answered.
    const after = pings;
    await eventually(() => pings >= after + 3);
    expect(live.socket.readyState).toBe(WebSocket.OPEN);
  });

  it('should serve a graphql-ws client end to end', async () => {
    const s = await createTestServer();
    const u = await signup(s.url);
    const lobby = await lobbyOf(s.url, u.token);
    const sub = await listen<any>(s, u, MESSAGES);
    await sendMessage(s.url, u.token, { groupId: lobby, content: 'to the client' });
    expect(await sub.nth(1)).toEqual({ messageAdded: { content: 'to the client' } });
    sub.stop();
    await sub.done;
    await running(s, 'messageAdded', 0);
  });
});
