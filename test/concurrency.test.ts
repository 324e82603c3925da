import { BytesInFlight, Gate } from '../src/shared/concurrency';

describe('Gate', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('should run at most max tasks at once, the rest in order, and refuse one that waited waitMs without running it', async () => {
    const gate = new Gate(1, 1000, () => new Error('busy'));
    const log: string[] = [];
    let finish!: () => void;
    const first = gate.run(() => new Promise<void>((r) => (finish = () => (log.push('first done'), r()))));
    const second = gate.run(async () => void log.push('second ran'));
    const late = gate.run(async () => void log.push('late ran'));
    jest.advanceTimersByTime(999);
    await Promise.resolve();
    expect(log).toEqual([]);
    finish();
    await Promise.all([first, second, late]);
    expect(log).toEqual(['first done', 'second ran', 'late ran']);
    // One that waits past waitMs is refused and never runs; the place it waited for goes on.
    let hold!: () => void;
    const busy = gate.run(() => new Promise<void>((r) => (hold = r)));
    const refused = gate.run(async () => void log.push('refused ran'));
    jest.advanceTimersByTime(1000);
    await expect(refused).rejects.toThrow('busy');
    hold();
    await busy;
    await gate.run(async () => void log.push('after'));
    expect(log.slice(3)).toEqual(['after']);
    expect(gate.peak).toBe(1);
  });
});

describe('BytesInFlight', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());
  const flush = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
  };

  it('should let takings in while their bytes fit, in order of arrival, a holder at most perHolder at once, and refuse one that waited waitMs', async () => {
    const budget = new BytesInFlight(100, 2, 1000, () => new Error('busy'));
    const got: string[] = [];
    const take = (name: string, holder: string, bytes: number) => budget.take(holder, bytes).then((release) => (got.push(name), release));
    const a1 = await take('a1', 'a', 60);
    const b1 = take('b1', 'b', 50); // 110 > 100: waits
    const c1 = take('c1', 'c', 10); // would fit, but b1 came first
    await flush();
    expect(got).toEqual(['a1']);
    a1();
    await flush();
    expect(got).toEqual(['a1', 'b1', 'c1']);
    expect(budget.taken).toBe(60);
    // A holder's third at once waits for one of its own, and lets others by meanwhile.
    const a2 = await take('a2', 'a', 10);
    const a3 = await take('a3', 'a', 10);
    const a4 = take('a4', 'a', 10);
    const d1 = take('d1', 'd', 10);
    await flush();
    expect(got.slice(3)).toEqual(['a2', 'a3', 'd1']);
    a2();
    await flush();
    expect(got.slice(6)).toEqual(['a4']);
    // More than all of it goes alone, once everything else is released; past waitMs, refused.
    const huge = budget.take('e', 500);
    jest.advanceTimersByTime(1000);
    await expect(huge).rejects.toThrow('busy');
    for (const r of [await b1, await c1, a3, await a4, await d1]) r();
    expect(budget.taken).toBe(0);
    const alone = await budget.take('e', 500);
    expect(budget.taken).toBe(100);
    alone();
    alone(); // a second release changes nothing
    expect(budget.taken).toBe(0);
  });

  it('should let a taking whose client left leave the line, taking nothing, and let those behind it by', async () => {
    const budget = new BytesInFlight(100, 4, 1000, () => new Error('busy'));
    const first = await budget.take('a', 90);
    const gone = new AbortController();
    const leaving = budget.take('b', 50, gone.signal);
    const behind = budget.take('c', 10);
    gone.abort(new Error('client gone'));
    await expect(leaving).rejects.toThrow('client gone');
    (await behind)();
    first();
    expect(budget.taken).toBe(0);
    await expect(budget.take('d', 10, gone.signal)).rejects.toThrow('client gone');
    expect(budget.taken).toBe(0);
  });
});
