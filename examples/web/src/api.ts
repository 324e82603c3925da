/**
 * The demo's transport: HTTP for queries and mutations, one graphql-ws connection for every
 * subscription, both carrying the session's bearer token.
 */
import { print } from 'graphql';
import { createClient, type Client } from 'graphql-ws';
import type { TypedDocumentNode } from '@graphql-typed-document-node/core';

export const HTTP_URL = new URL('/graphql', location.href).href;
const WS_URL = HTTP_URL.replace(/^http/, 'ws');

export interface Session {
  token: string;
  userId: string;
  username: string;
}

const SESSION_KEY = 'parley';

/** Per tab (sessionStorage), so two people can use the demo side by side in one browser. */
export let session: Session | null = JSON.parse(sessionStorage.getItem(SESSION_KEY) ?? 'null');

export function saveSession(s: Session | null): void {
  session = s;
  if (s) sessionStorage.setItem(SESSION_KEY, JSON.stringify(s));
  else sessionStorage.removeItem(SESSION_KEY);
}

export class ApiError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

/** Called when the server no longer accepts the token (HTTP UNAUTHENTICATED or a 4403 close). */
let onSignedOut: () => void = () => undefined;
export function whenSignedOut(f: () => void): void {
  onSignedOut = f;
}

const authHeader = (): Record<string, string> => (session ? { authorization: `Bearer ${session.token}` } : {});

/** One operation over HTTP; throws the first GraphQL error as an ApiError with its code. */
export async function request<R, V>(doc: TypedDocumentNode<R, V>, variables?: V): Promise<R> {
  const res = await fetch(HTTP_URL, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...authHeader() },
    body: JSON.stringify({ query: print(doc), variables }),
  });
  const body = await res.json().catch(() => ({ errors: [{ message: `HTTP ${res.status}` }] }));
  if (body.errors?.length) {
    const code = body.errors[0].extensions?.code as string | undefined;
    if (code === 'UNAUTHENTICATED' && session) onSignedOut();
    throw new ApiError(body.errors[0].message, code);
  }
  return body.data as R;
}

/** GET with the bearer token (attachment bytes when their URL is not signed). */
export async function fetchWithToken(url: string): Promise<Blob> {
  const res = await fetch(url, { headers: authHeader() });
  if (!res.ok) throw new ApiError(`HTTP ${res.status}`);
  return res.blob();
}

let ws: Client | null = null;

/**
 * Opens the graphql-ws connection. It reconnects after a restart or a network drop (retry on
 * anything but a 4403, which means the token is gone); `onReconnected` lets the app catch up
 * on what it missed while away.
 */
export function connect(onReconnected: () => void): void {
  const token = session!.token;
  ws = createClient({
    url: WS_URL,
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: Infinity,
    shouldRetry: (e) => (e as CloseEvent)?.code !== 4403,
    on: {
      connected: (_socket, _payload, wasRetry) => wasRetry && onReconnected(),
      closed: (e) => (e as CloseEvent)?.code === 4403 && onSignedOut(),
    },
  });
}

export function disconnect(): void {
  void ws?.dispose();
  ws = null;
}

/** A subscription over the one connection; returns its stop function. */
export function subscribe<R, V>(doc: TypedDocumentNode<R, V>, variables: V, onData: (data: R) => void): () => void {
  return ws!.subscribe<R>(
    { query: print(doc), variables: variables as Record<string, unknown> },
    { next: (r) => r.data && onData(r.data as R), error: (e) => console.warn('subscription failed', e), complete: () => undefined },
  );
}
