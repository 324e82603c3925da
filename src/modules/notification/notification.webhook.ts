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

/**
 * POSTs one event. True on a 2xx within DELIVERY_TIMEOUT_MS; false on anything else (another
 * status, a refused connection, a timeout), which the caller retries.
 */
export async function postEvent(url: string, secret: string, body: string): Promise<boolean> {
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'Parley-Webhooks/1', 'parley-signature': signature(secret, body) },
      body,
      signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
      redirect: 'manual',
    });
    // The body is not read: a receiver's answer says nothing more, and an unread one holds the socket.
    await res.body?.cancel().catch(() => undefined);
    return res.status >= 200 && res.status < 300;
  } catch {
    return false;
  }
}
