// examples/clients/missed.ts: what both snippets read after a reconnection, and how they show each message once
import type { HistoryQuery, MessagePartsFragment } from '../../generated/client/graphql';

/** The newest page of history before `before` (undefined: the newest of all), as the History document reads it. */
type Page = (before: string | undefined) => Promise<HistoryQuery['history'] | undefined>;

/**
 * What was said while the socket was away, oldest first. More than a page may have come meanwhile,
 * so it pages back from the newest until a page holds a message shown before (`shown`: what was
 * read or pushed as the socket came back, before it subscribed again, see createSocket; one pushed
 * after that, or one's own from a send's answer, may be newer than the gap and would end it early),
 * or the conversation's start, or `maxPages` pages (past them, what is
 * older is left to the user to scroll back to with `before`). `shown` empty: nothing was there when
 * the client joined (the snippets show the newest page first), so everything is new. What comes
 * live meanwhile may reach `onMessage` before the older messages found here (order by `createdAt`).
 */
export async function missed(page: Page, shown: ReadonlySet<string>, maxPages = 20): Promise<MessagePartsFragment[]> {
  const found: MessagePartsFragment[] = [];
  let before: string | undefined;
  for (let n = 0; n < maxPages; n++) {
    const history = await page(before);
    if (!history) break;
    found.unshift(...history.edges.map((e) => e.node));
    const { hasPreviousPage, startCursor } = history.pageInfo;
    if (history.edges.some((e) => shown.has(e.node.id)) || !hasPreviousPage || !startCursor) break;
    before = startCursor;
  }
  return found;
}

/**
 * Hands each message to `onMessage` once, whichever way it comes (history, pushed, a send's
 * answer). `heard()`: those read or pushed so far, where a catch-up may stop; not one's own from a
 * send's answer, which may be newer than a gap: the read stopped at the newest page (an outside
 * probe lost 31 of 80).
 */
export function onceEach(onMessage: (m: MessagePartsFragment) => void) {
  const seen = new Set<string>();
  const heardSoFar = new Set<string>();
  return {
    show(m: MessagePartsFragment, fromAnswer = false) {
      if (!fromAnswer) heardSoFar.add(m.id);
      if (seen.has(m.id)) return;
      seen.add(m.id);
      onMessage(m);
    },
    heard: () => new Set(heardSoFar),
  };
}
