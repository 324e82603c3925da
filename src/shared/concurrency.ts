/** Runs `fn` over `items` with at most `concurrency` calls at once (a resync's reads, say), in order of start. */
export async function eachAtMost<T>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}
