import { ApolloClient, HttpLink, InMemoryCache, split, type ApolloLink } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { Client as UrqlClient, fetchExchange, subscriptionExchange } from '@urql/core';
import { Kind, OperationTypeNode, type DocumentNode } from 'graphql';
import { createClient, type Client as WsClient } from 'graphql-ws';
import WebSocket from 'ws';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';
import { GroupsDocument, JoinGroupDocument, LoginDocument, LogoutDocument, MessageAddedDocument, NodeDocument, NodesDocument, OnlineUsersDocument, PresenceChangedDocument, SendMessageDocument, SignupDocument, type MessageAddedSubscription, type PresenceChangedSubscription } from '../generated/client/graphql';
import introspection from '../generated/client/possible-types';
import diagnostics from 'node:diagnostics_channel';
import { readdirSync, readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { joinChat as apolloSnippet } from '../examples/clients/apollo';
import { joinChat as urqlSnippet } from '../examples/clients/urql';
import { spawn } from 'node:child_process';
import { eventually, gql, ok, running, sleep } from './helpers/graphql';
import { buildGroup, buildUser, lobbyOf, signup, type TestUser, sendMessage } from './helpers/factories';
import { createTestServer, type TestServer } from './helpers/server';

/**
 * The flow a frontend team writes, with the typed documents from `npm run codegen`, through
 * the two client libraries Parley's users have: Apollo Client (HttpLink + GraphQLWsLink) and urql
 * (fetchExchange + subscriptionExchange over graphql-ws).
 */

/** What the flow needs from a client library, so both run the same steps. */
interface Driver {
  request<R, V>(doc: TypedDocumentNode<R, V>, variables?: V): Promise<R>;
  subscribe<R, V>(doc: TypedDocumentNode<R, V>, variables: V, onData: (data: R) => void): () => void;
  dispose(): Promise<void>;
}

type DriverFactory = (s: TestServer, token?: string) => Driver;

const signupAs = (s: TestServer, username: string): Promise<TestUser> => signup(s.url, { username });

const sockets = new Set<WsClient>();
function wsFor(s: TestServer, token?: string): WsClient {
  const client = createClient({ url: s.wsUrl, webSocketImpl: WebSocket, retryAttempts: 0, connectionParams: token ? { authorization: `Bearer ${token}` } : {} });
  sockets.add(client);
  return client;
}

const isSubscription = (doc: DocumentNode) =>
  doc.definitions.some((d) => d.kind === Kind.OPERATION_DEFINITION && d.operation === OperationTypeNode.SUBSCRIPTION);

const apollo: DriverFactory = (s, token) => {
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  const ws = wsFor(s, token);
  const link: ApolloLink = split(({ query }) => isSubscription(query), new GraphQLWsLink(ws), new HttpLink({ uri: s.url, fetch, headers }));
  // As docs/CLIENTS.md sets the cache up: Node's types, and reactions replaced whole.
  const client = new ApolloClient({ link, cache: new InMemoryCache({ possibleTypes: introspection.possibleTypes, typePolicies: { Message: { fields: { reactions: { merge: false } } } } }) });
  return {
    async request(doc, variables) {
      const isMutation = doc.definitions.some((d) => d.kind === Kind.OPERATION_DEFINITION && d.operation === OperationTypeNode.MUTATION);
      const r = isMutation
        ? await client.mutate({ mutation: doc, variables: variables as any })
        : await client.query({ query: doc, variables: variables as any, fetchPolicy: 'network-only' });
      if (r.error) throw r.error;
      return r.data as any;
    },
    subscribe(doc, variables, onData) {
      const sub = client.subscribe({ query: doc, variables: variables as any }).subscribe({
        next: (r) => r.data && onData(r.data as any),
      });
      return () => sub.unsubscribe();
    },
    async dispose() {
      client.stop();
      await ws.dispose();
    },
  };
};

const urql: DriverFactory = (s, token) => {
  const ws = wsFor(s, token);
  const client = new UrqlClient({
    url: s.url,
    // Queries over POST: Apollo Server's CSRF prevention refuses a plain GET without a preflight header.
    preferGetMethod: false,
    requestPolicy: 'network-only',
    fetchOptions: (): RequestInit => ({ headers: token ? { authorization: `Bearer ${token}` } : {} }),
    exchanges: [
      fetchExchange,
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || '' };
          return { subscribe: (sink) => ({ unsubscribe: ws.subscribe(input, sink) }) };
        },
      }),
    ],
  });
  return {
    async request(doc, variables) {
      const isMutation = doc.definitions.some((d) => d.kind === Kind.OPERATION_DEFINITION && d.operation === OperationTypeNode.MUTATION);
      const r = isMutation ? await client.mutation(doc, variables as any).toPromise() : await client.query(doc, variables as any).toPromise();
      if (r.error) throw r.error;
      return r.data as any;
    },
    subscribe(doc, variables, onData) {
      const sub = client.subscription(doc, variables as any).subscribe((r) => r.data && onData(r.data as any));
      return () => sub.unsubscribe();
    },
    async dispose() {
      await ws.dispose();
    },
  };
};

afterEach(async () => {
  await Promise.all([...sockets].map((c) => c.dispose()));
  sockets.clear();
});

describe.each([
  ['Apollo Client with GraphQLWsLink', apollo],
  ['urql with the graphql-ws subscription exchange', urql],
])('client flow: %s', (_name, driver) => {
  it('should sign up, join the lobby, subscribe, send, receive and see the other user come online', async () => {
    const s = await createTestServer({ PRESENCE_GRACE: '0.2s' });
    const anonymous = driver(s);
    const a = buildUser({ displayName: 'Alice' });
    const b = buildUser();
    const alice = (await anonymous.request(SignupDocument, a)).signup;
    const bobSignup = (await anonymous.request(SignupDocument, b)).signup;
    expect(alice.user).toMatchObject({ username: a.username, displayName: 'Alice', status: 'ONLINE' });
    expect(alice.token).toEqual(expect.any(String));

    const asAlice = driver(s, alice.token);
    const { groups } = await asAlice.request(GroupsDocument, { first: 50 });
    const lobby = groups.edges.map((e) => e.node).find((g) => g.isLobby)!;
    expect(lobby).toBeDefined();
    const joined = (await asAlice.request(JoinGroupDocument, { groupId: lobby.id })).joinGroup;
    expect(joined).toMatchObject({ id: lobby.id, isLobby: true });

    // Bob goes OFFLINE so that Alice can watch him come back.
    const bobFirst = driver(s, bobSignup.token);
    expect((await bobFirst.request(LogoutDocument)).logout).toBe(true);
    await bobFirst.dispose();

    const messages: MessageAddedSubscription['messageAdded'][] = [];
    const presence: PresenceChangedSubscription['presenceChanged'][] = [];
    asAlice.subscribe(MessageAddedDocument, { conversation: { groupId: lobby.id } }, (d) => messages.push(d.messageAdded));
    asAlice.subscribe(PresenceChangedDocument, { userIds: [bobSignup.user.id] }, (d) => presence.push(d.presenceChanged));
    await eventually(() => s.fanout.active.messageAdded === 1 && s.fanout.active.presenceChanged === 1);

    const bobLogin = (await anonymous.request(LoginDocument, { username: b.username, password: b.password })).login;
    await eventually(() => presence.some((p) => p.user.id === bobSignup.user.id && p.status === 'ONLINE'));
    const asBob = driver(s, bobLogin.token);
    const online = (await asAlice.request(OnlineUsersDocument, { first: 50 })).onlineUsers;
    expect(online.edges.map((e) => e.node.username)).toEqual(expect.arrayContaining([a.username, b.username]));

    const bobMessages: MessageAddedSubscription['messageAdded'][] = [];
    asBob.subscribe(MessageAddedDocument, {}, (d) => bobMessages.push(d.messageAdded));
    await eventually(() => s.fanout.active.messageAdded === 2);

    const sent = (await asBob.request(SendMessageDocument, { input: { groupId: lobby.id, content: 'hello from bob', clientMessageId: 'c-1' } })).sendMessage;
    expect(sent).toMatchObject({ content: 'hello from bob', clientMessageId: 'c-1', group: { id: lobby.id }, sender: { id: bobSignup.user.id } });
    const received = await eventually(() => messages.find((m) => m.id === sent.id));
    expect(received).toMatchObject({ content: 'hello from bob', sender: { username: b.username }, group: { id: lobby.id } });

    const reply = (await asAlice.request(SendMessageDocument, { input: { groupId: lobby.id, content: 'hi bob' } })).sendMessage;
    expect(await eventually(() => bobMessages.find((m) => m.id === reply.id))).toMatchObject({ content: 'hi bob', sender: { displayName: 'Alice' } });

    // Any object again by its id, through the generated Node documents (within the server's default limits).
    expect((await asAlice.request(NodeDocument, { id: sent.id })).node).toMatchObject({ __typename: 'Message', id: sent.id, content: 'hello from bob', sender: { username: b.username } });
    const nodes = (await asAlice.request(NodesDocument, { ids: [lobby.id, bobSignup.user.id] })).nodes;
    expect(nodes).toMatchObject([{ __typename: 'Group', id: lobby.id, isLobby: true }, { __typename: 'User', id: bobSignup.user.id, username: b.username }]);

    await Promise.all([anonymous.dispose(), asAlice.dispose(), asBob.dispose()]);
  });
});

/**
 * The documented client snippets, run as they are: the files under examples/clients are code
 * blocks of the README and docs/ (docs/CLIENTS.md; checked below), and each is driven against a
 * real server, through a restart of that server.
 */
const SNIPPETS = join(__dirname, '..', 'examples', 'clients');

/** Counts connections to `port` refused (ECONNREFUSED), made by anything in this process. */
function watchRefused(port: number): { readonly count: number; stop(): void } {
  let count = 0;
  const onSocket = (message: unknown) => {
    (message as { socket: Socket }).socket.once('error', (e: NodeJS.ErrnoException & { port?: number }) => {
      if (e.code === 'ECONNREFUSED' && e.port === port) count++;
    });
  };
  diagnostics.subscribe('net.client.socket', onSocket);
  return {
    get count() {
      return count;
    },
    stop: () => diagnostics.unsubscribe('net.client.socket', onSocket),
  };
}

describe('documented client snippets', () => {
  it('should show each of examples/clients once in the README or docs/, exactly as the files are', () => {
    const docs = join(__dirname, '..', 'docs');
    const pages = [join(__dirname, '..', 'README.md'), ...readdirSync(docs).filter((f) => f.endsWith('.md')).map((f) => join(docs, f))];
    const text = pages.map((p) => readFileSync(p, 'utf8')).join('\n');
    const blocks = [...text.matchAll(/```ts\n(\/\/ (examples\/clients\/[\w.]+)[^\n]*\n[\s\S]*?)```/g)].map((m) => ({ path: m[2], text: m[1] }));
    const files = readdirSync(SNIPPETS).filter((f) => f.endsWith('.ts'));
    expect(blocks.map((b) => b.path).sort()).toEqual(files.map((f) => `examples/clients/${f}`).sort());
    for (const b of blocks) expect([b.path, b.text]).toEqual([b.path, readFileSync(join(__dirname, '..', b.path), 'utf8')]);
  });

  describe.each([
    ['Apollo Client', apolloSnippet],
    ['urql', urqlSnippet],
  ])('%s', (_name, joinChat) => {
    it("should receive one's own and others' messages once each, and carry on after the server restarts", async () => {
      let s = await createTestServer();
      const [alice, bob] = [await signupAs(s, 'alice'), await signupAs(s, 'bob')];
      const lobby = await lobbyOf(s.url, alice.token);
      await sendMessage(s.url, bob.token, { groupId: lobby, content: 'before alice came' });
      const received: string[] = [];
      const chat = await joinChat({ url: s.url, token: alice.token, groupId: lobby, onMessage: (m) => received.push(m.content ?? '') });
      // A conversation with nothing in it yet: all that comes while away is new.
      const quietGroup = (await buildGroup(s.url, bob, { members: [alice] })).id;
      const quiet: string[] = [];
      const quietChat = await joinChat({ url: s.url, token: alice.token, groupId: quietGroup, onMessage: (m) => quiet.push(m.content ?? '') });
      try {
        expect(received).toEqual(['before alice came']);
        expect((await chat.send('hello from alice')).content).toBe('hello from alice');
        expect(received).toEqual(['before alice came', 'hello from alice']);
        await eventually(() => s.fanout.active.messageAdded === 2);
        await sendMessage(s.url, bob.token, { groupId: lobby, content: 'hello from bob' });
        await eventually(() => received.includes('hello from bob'));

        // The server goes away and, once the client has been refused, another takes its port: the
        // client reconnects, subscribes again and catches up with what was said in between (on
        // another instance, while it had no socket anywhere).
        const other = await createTestServer({}, { clean: false });
        const { port } = s;
        const refused = watchRefused(port);
        try {
          await s.dispose();
          await eventually(() => refused.count > 0, 20_000);
        } finally {
          refused.stop();
        }
        // More than a page (50) of them: the catch-up reads back until a message it had shown.
        const away = Array.from({ length: 60 }, (_, i) => `while alice was away ${i}`);
        for (const content of away) await sendMessage(other.url, bob.token, { groupId: lobby, content });
        for (const content of away) await sendMessage(other.url, bob.token, { groupId: quietGroup, content });
        s = await createTestServer({ PORT: String(port) }, { clean: false });
        // One's own message, sent over HTTP while the socket waits out its backoff, is newer than the
        // gap: the catch-up stopped at it, on the newest page (an outside probe: 31 of 80 lost).
        expect((await chat.send('mine while away')).content).toBe('mine while away');
        // The conversation goes on meanwhile: what is pushed as soon as the client has subscribed
        // again, before its catch-up reads, must not stop that early (an outside probe: it read one
        // page, the newest 50 with a live one among them, and never showed the 10 before them).
        const live: string[] = [];
        const server = s;
        let chatting = true;
        const chatter = (async () => {
          while (chatting) {
            const content = `live ${live.length}`;
            await sendMessage(server.url, bob.token, { groupId: lobby, content });
            live.push(content);
            await sleep(15);
          }
        })();
        try {
          // The client may be in a backoff of up to 30 s (socket.ts) when the server is back.
          await eventually(() => received.includes(away[59]) && received.includes(live[live.length - 1]) && live.length > 10, 45_000);
        } finally {
          chatting = false;
          await chatter;
        }
        await eventually(() => received.includes(live[live.length - 1]));
        await eventually(() => quiet.includes(away[59]), 20_000);
        expect(quiet).toEqual(away);
        await eventually(() => s.fanout.active.messageAdded === 2, 20_000);
        await sendMessage(s.url, bob.token, { groupId: lobby, content: 'welcome back' });
        await eventually(() => received.includes('welcome back'));
        expect((await chat.send('thanks')).content).toBe('thanks');
        // Each message once (the live copy of one's own is dropped); what the catch-up found may come
        // after live ones, as CLIENTS.md says, so in the order they were sent once sorted by it.
        expect(new Set(received).size).toBe(received.length);
        const sent = ['before alice came', 'hello from alice', 'hello from bob', ...away, 'mine while away', ...live, 'welcome back', 'thanks'];
        expect([...received].sort((x, y) => sent.indexOf(x) - sent.indexOf(y))).toEqual(sent);
      } finally {
        await chat.close();
        await quietChat.close();
      }
    }, 120_000);

    it('should close without an error while the server is away and the client reconnects', async () => {
      const s = await createTestServer();
      const alice = await signupAs(s, 'alice');
      const chat = await joinChat({ url: s.url, token: alice.token, groupId: await lobbyOf(s.url, alice.token), onMessage: () => undefined });
      const refused = watchRefused(s.port);
      try {
        await s.dispose();
        await eventually(() => refused.count > 0, 20_000);
      } finally {
        refused.stop();
      }
      // A UI closes on unmount without awaiting: a rejection there ends a Node process (unhandled).
      await expect(chat.close()).resolves.toBeUndefined();
    }, 30_000);
  });

  it('should chat in a terminal with npm run example:chat: the newest page, what others send, and each line typed', async () => {
    const s = await createTestServer();
    const [ada, bo] = [await signup(s.url), await signup(s.url)];
    const lobby = await lobbyOf(s.url, ada.token);
    await sendMessage(s.url, bo.token, { groupId: lobby, content: 'before it joined' });
    const child = spawn(process.execPath, ['-r', '@swc-node/register', 'examples/chat.ts'], {
      cwd: join(__dirname, '..'),
      env: { ...process.env, PARLEY_URL: s.url, PARLEY_TOKEN: ada.token, PARLEY_GROUP: lobby },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      await eventually(() => out.includes(`${bo.username}: before it joined`), 20_000);
      await running(s, 'messageAdded', 1);
      await sendMessage(s.url, bo.token, { groupId: lobby, content: 'while it listens' });
      await eventually(() => out.includes(`${bo.username}: while it listens`));
      child.stdin.end('typed here\n');
      expect(await exited).toBe(0);
    } finally {
      child.kill();
    }
    // Its own line shows once, and was sent.
    expect(out.split('\n').filter((l) => l === `${ada.username}: typed here`)).toHaveLength(1);
    const last = await ok(gql(s.url, 'query($g: ID!) { history(conversation: { groupId: $g }, last: 1) { edges { node { content sender { id } } } } }', { g: lobby }, bo.token));
    expect(last.history.edges[0].node).toEqual({ content: 'typed here', sender: { id: ada.id } });
  }, 40_000);
});
