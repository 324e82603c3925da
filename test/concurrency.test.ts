import { Gate } from '../src/shared/concurrency';

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
