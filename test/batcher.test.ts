import { Batcher, Lanes } from '../src/shared/batcher';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const itemFault = (e: unknown) => e instanceof Error && e.message.startsWith('item');

describe('Batcher', () => {
  it('should run the first item at once and the ones that came meanwhile together, each answered with its own result', async () => {
    const calls: number[][] = [];
    const b = new Batcher<number, string>({
      one: async (x) => (calls.push([x]), await sleep(20), `r${x}`),
      many: async (xs) => (calls.push(xs), await sleep(20), xs.map((x) => `r${x}`)),
      itemFault,
      max: 3,
    });
    const results = await Promise.all([1, 2, 3, 4, 5, 6].map((x) => b.run('k', x)));
    expect(results).toEqual(['r1', 'r2', 'r3', 'r4', 'r5', 'r6']);
    expect(calls).toEqual([[1], [2, 3, 4], [5, 6]]);
    expect(b.batched).toBe(5);
    // Another key never waits for this one.
    expect(await b.run('other', 7)).toBe('r7');
  });

  it('should redo each item alone when one item broke the batch, failing only that one', async () => {
    const alone: number[] = [];
    const b = new Batcher<number, number>({
      one: async (x) => {
        alone.push(x);
        await sleep(5);
        if (x === 3) throw new Error('item 3 is a duplicate');
        return x;
      },
      many: async (xs) => {
        await sleep(5);
        if (xs.includes(3)) throw new Error('item 3 is a duplicate');
        return xs;
      },
      itemFault,
    });
    const results = await Promise.allSettled([1, 2, 3, 4].map((x) => b.run('k', x)));
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual([1, 2, 'item 3 is a duplicate', 4]);
    expect(alone).toEqual([1, 2, 3, 4]);
  });

  it("should fail a whole batch at once with the batch's error when no item caused it", async () => {
    let calls = 0;
    const b = new Batcher<number, number>({
      one: async (x) => (calls++, await sleep(20), x),
      many: async () => {
        calls++;
        await sleep(20);
        throw new Error('pool timeout');
      },
      itemFault,
    });
    const started = Date.now();
    const results = await Promise.allSettled(Array.from({ length: 21 }, (_, i) => b.run('k', i)));
    expect(results[0]).toEqual({ status: 'fulfilled', value: 0 });
    expect(results.slice(1).every((r) => r.status === 'rejected' && (r.reason as Error).message === 'pool timeout')).toBe(true);
    // One call for the first, one for the batch: nobody waits for twenty retries.
    expect(calls).toBe(2);
    expect(Date.now() - started).toBeLessThan(20 * 20);
  });

  it('should do alone, in their order and before the next batch, the items a batch left undone', async () => {
    const calls: string[] = [];
    let batchRuns!: () => void;
    const batchRunning = new Promise<void>((r) => (batchRuns = r));
    const b = new Batcher<number, string>({
      one: async (x) => (calls.push(`one ${x}`), await sleep(10), `alone ${x}`),
      many: async (xs) => (calls.push(`many ${xs.join(',')}`), batchRuns(), await sleep(10), xs.map((x) => (x % 2 ? undefined : `batched ${x}`))),
      itemFault,
    });
    const first = b.run('k', 0);
    const rest = [1, 2, 3, 4].map((x) => b.run('k', x));
    // 6 comes while the batch runs: it waits for the undone ones.
    await batchRunning;
    const later = b.run('k', 6);
    expect(await Promise.all([first, ...rest, later])).toEqual(['alone 0', 'alone 1', 'batched 2', 'alone 3', 'batched 4', 'alone 6']);
    expect(calls).toEqual(['one 0', 'many 1,2,3,4', 'one 1', 'one 3', 'one 6']);
    expect(b.batched).toBe(2);
  });

  it('should not leave a key taken when doing an item throws synchronously', async () => {
    let n = 0;
    const b = new Batcher<number, number>({
      one: (x) => {
        if (n++ === 0) throw new Error('sync');
        return Promise.resolve(x);
      },
      many: async (xs) => xs,
      itemFault,
    });
    await expect(b.run('k', 1)).rejects.toThrow('sync');
    expect(await Promise.race([b.run('k', 2), sleep(200).then(() => 'stuck')])).toBe(2);
  });
});

describe('Batcher with distinct items', () => {
  it('should take one item of each value a batch, the others waiting in order for the next batches while other values go on', async () => {
    const calls: string[][] = [];
    const b = new Batcher<string, string>({
      one: async (x) => (calls.push([x]), await sleep(20), x),
      many: async (xs) => (calls.push(xs), await sleep(20), xs),
      itemFault,
      distinct: (x) => x[0],
    });
    // a1 runs alone; meanwhile a busy thread (a2..a4) and two others (b, c) wait.
    const results = await Promise.all(['a1', 'a2', 'a3', 'b1', 'a4', 'c1', 'b2'].map((x) => b.run('lane', x)));
    expect(results).toEqual(['a1', 'a2', 'a3', 'b1', 'a4', 'c1', 'b2']);
    expect(calls).toEqual([['a1'], ['a2', 'b1', 'c1'], ['a3', 'b2'], ['a4']]);
  });
});

describe('Batcher with distinct items, far behind', () => {
  it('should go on through a queue longer than a call can take as arguments (150,000 items waiting)', async () => {
    let batches = 0;
    const b = new Batcher<number, number>({
      one: async (x) => x,
      many: async (xs) => (batches++, xs),
      itemFault,
      distinct: (x) => String(x % 1000),
    });
    const N = 150_000;
    const all = Promise.all(Array.from({ length: N }, (_, i) => b.run('lane', i)));
    const results = await Promise.race([all, sleep(20_000).then(() => 'stuck' as const)]);
    expect(results === 'stuck' ? results : results.length).toBe(N);
    // Batches of 64 distinct values: the first item alone, then the rest 64 at a time.
    expect(batches).toBe(Math.ceil((N - 1) / 64));
    expect(b.batched).toBe(N - 1);
  }, 30_000);
});

describe('Lanes', () => {
  /** A batcher whose calls wait for `hold` while an item of `stuck` is in them. */
  function batcher(calls: string[][], stuck: Set<string>, hold: Promise<void>) {
    const wait = async (xs: string[]) => (xs.some((x) => stuck.has(x[0])) ? hold : sleep(10));
    return new Batcher<string, string>({
      one: async (x) => (calls.push([x]), await wait([x]), x),
      many: async (xs) => (calls.push(xs), await wait(xs), xs),
      itemFault,
    });
  }

  it('should put every key in one lane while it flows, so that what arrives together goes together', async () => {
    const calls: string[][] = [];
    const b = batcher(calls, new Set(), Promise.resolve());
    const lanes = new Lanes(b, 4, 100);
    const results = await Promise.all(['a1', 'b1', 'c1', 'd1', 'a2'].map((x) => lanes.run(x[0], x)));
    expect(results).toEqual(['a1', 'b1', 'c1', 'd1', 'a2']);
    // One lane: the first alone, the rest in one call.
    expect(calls).toEqual([['a1'], ['b1', 'c1', 'd1', 'a2']]);
  });

  it('should give new keys the next lane once a lane is stuck, and keep a stuck key\'s items in its lane, in order', async () => {
    const calls: string[][] = [];
    let release!: () => void;
    const hold = new Promise<void>((r) => (release = r));
    const b = batcher(calls, new Set(['a']), hold);
    const lanes = new Lanes(b, 2, 50);
    const done: string[] = [];
    const run = (x: string) => lanes.run(x[0], x).then((r) => void done.push(r));
    const stuck = run('a1');
    const behind = [run('a2'), run('b1')];
    await sleep(80);
    // a1 waits on its lock; a2 and b1 came before the lane was stuck: they wait in it.
    expect(done).toEqual([]);
    // Now stuck: c and d take the next lane and are answered; a3 keeps a's lane.
    const later = [run('c1'), run('a3'), run('d1')];
    // However slow the machine: the stuck lane stays stuck until released.
    for (let waited = 0; done.length < 2 && waited < 5000; waited += 10) await sleep(10);
    expect(done).toEqual(['c1', 'd1']);
    release();
    await Promise.all([stuck, ...behind, ...later]);
    expect(done).toEqual(['c1', 'd1', 'a1', 'a2', 'b1', 'a3']);
    expect(b.busyFor('0')).toBe(0);
  });
});
