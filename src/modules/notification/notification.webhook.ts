import { createHmac } from 'node:crypto';

/** What an event's JSON holds (docs/API.md, "Webhooks"). */
export interface WebhookEvent {
  /** Unique per event: a receiver drops a repeat (delivery is at least once). */
  id: string;
  kind: string;
  recipientId: string;
  /** As Conversation.id; null for a friend request. */
  conversationId: string | null;
  sender: { id: string; username: string; displayName: string | null } | null;
  /** The first 140 characters of the newest message it covers (an attachment's name without text), or the action's text. */
  preview: string | null;
  /** Messages it covers (coalesced within WEBHOOK_COALESCE); 1 for everything else. */
  count: number;
  /** The recipient's unread messages over all conversations when it was sent. */
  unreadTotal: number;
  /** When its first cause happened (ISO 8601). */
  createdAt: string;
}

/** The receiver's answer counts only within this long. */
export const DELIVERY_TIMEOUT_MS = 5000;

/** `Parley-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, as Stripe signs (the time makes a replay detectable). */
export function signature(secret: string, body: string, t: number = Math.floor(Date.now() / 1000)): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/** Where events go, and the headers that go with each. */
export interface WebhookTarget {
  url: string;
  headers: Record<string, string>;
}

/**
 * Where events go: WEBHOOK_URL without its user and password, which go as Basic authorization
 * instead (fetch refuses a URL that carries them, so every delivery failed without a request: a probe).
 */
export function webhookTarget(url: string): WebhookTarget {
  const u = new URL(url);
  if (!u.username && !u.password) return { url, headers: {} };
  const credentials = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
  u.username = '';
  u.password = '';
  return { url: u.toString(), headers: { authorization: `Basic ${Buffer.from(credentials).toString('base64')}` } };
}

/**
 * POSTs one event. True on a 2xx within DELIVERY_TIMEOUT_MS; otherwise why not (another status, a
 * refused connection, a timeout), and the caller retries.
 */
export async function postEvent(target: WebhookTarget, secret: string, body: string, stop?: AbortSignal): Promise<true | string> {
  const timeout = AbortSignal.timeout(DELIVERY_TIMEOUT_MS);
  try {
    const res = await fetch(target.url, {
      method: 'POST',
      headers: { ...target.headers, 'content-type': 'application/json', 'user-agent': 'Parley-Webhooks/1', 'parley-signature': signature(secret, body) },
      body,
      signal: stop ? AbortSignal.any([timeout, stop]) : timeout,
      redirect: 'manual',
    });
    // The body is not read: a receiver's answer says nothing more, and an unread one holds the socket.
    await res.body?.cancel().catch(() => undefined);
    return res.status >= 200 && res.status < 300 ? true : `HTTP ${res.status}`;
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    if (stop?.aborted) return 'stopped';
    if (err.name === 'TimeoutError') return `no answer within ${DELIVERY_TIMEOUT_MS} ms`;
    return err.cause?.code ?? err.cause?.message ?? err.message;
  }
}
