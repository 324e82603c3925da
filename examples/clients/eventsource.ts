// examples/clients/eventsource.ts: a plain EventSource in a page, with a stream ticket for the header it can't send
// The page's own EventSource, declared only because this repository compiles without the DOM types.
declare const EventSource: new (url: URL) => { addEventListener(type: string, on: (e: { data: string }) => void): void; close(): void };

/** Streams the viewer's project notifications to a page; resolves with what stops it. */
export async function streamProjectActions(opts: { url: string; token: string; onAction: (message: string) => void }): Promise<() => void> {
  const res = await fetch(opts.url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${opts.token}` },
    body: JSON.stringify({ query: 'mutation { streamTicket }' }), // single use, valid 60 s
  });
  const { data } = (await res.json()) as { data: { streamTicket: string } };
  const url = new URL(`${opts.url}/stream`);
  url.searchParams.set('query', 'subscription { projectAction { kind message } }');
  url.searchParams.set('ticket', data.streamTicket);
  const source = new EventSource(url);
  source.addEventListener('next', (e) => opts.onAction(JSON.parse(e.data).data.projectAction.message));
  source.addEventListener('complete', () => source.close()); // the server ended it: the token expired or was revoked
  // After a network drop EventSource retries the same URL, whose ticket is spent (401), and stops:
  // on `error`, with readyState CLOSED, get a new ticket and open a new EventSource.
  return () => source.close();
}
