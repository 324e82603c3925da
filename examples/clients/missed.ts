// examples/clients/missed.ts: what both snippets read after a reconnection
import type { HistoryQuery, MessagePartsFragment } from '../../generated/client/graphql';

/** The newest page of history before `before` (undefined: the newest of all), as the History document reads it. */
type Page = (before: string | undefined) => Promise<HistoryQuery['history'] | undefined>;

/**
 * What was said while the socket was away, oldest first. More than a page may have come meanwhile,
 * so it pages back from the newest until a page holds a message shown before (`shown`, read when
 * the socket came back), or the conversation's start, or `maxPages` pages. Call it as the socket
 * reconnects: it copies `shown` at once, so what comes live from then on does not stop it early.
 */
export async function missed(page: Page, shown: ReadonlySet<string>, maxPages = 20): Promise<MessagePartsFragment[]> {
  const known = new Set(shown);
  const found: MessagePartsFragment[] = [];
  let before: string | undefined;
  for (let n = 0; n < maxPages; n++) {
    const history = await page(before);
    if (!history) break;
    found.unshift(...history.edges.map((e) => e.node));
    const { hasPreviousPage, startCursor } = history.pageInfo;
    if (!known.size || history.edges.some((e) => known.has(e.node.id)) || !hasPreviousPage || !startCursor) break;
    before = startCursor;
  }
  return found;
}
