import { isoTime } from '../src/shared/time';

describe('isoTime', () => {
  it('should write what toISOString writes, at any time', () => {
    const edges = [
      0,
      1,
      999,
      86_399_999,
      86_400_000,
      Date.UTC(2024, 1, 29, 23, 59, 59, 999), // a leap day's last millisecond
      Date.UTC(2024, 2, 1),
      Date.UTC(1999, 11, 31, 23, 59, 59, 999),
      Date.UTC(9999, 11, 31, 23, 59, 59, 999),
      Date.UTC(10000, 0, 1), // a six-digit year
      -1, // before 1970
      Date.UTC(1, 0, 1),
      -62_198_755_200_000, // year 0000
      Date.now(),
    ];
    for (const t of edges) expect([t, isoTime(t)]).toEqual([t, new Date(t).toISOString()]);
    // Random times across the years, and many within a few days (the cached date part).
    let seed = 42;
    const next = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 20_000; i++) {
      const t = i % 2 ? Math.floor(next() * Date.UTC(9999, 0, 1)) : Date.UTC(2026, 10, 23) + Math.floor((next() - 0.5) * 4 * 86_400_000);
      expect(isoTime(t)).toBe(new Date(t).toISOString());
    }
  });

  it('should throw a RangeError for an invalid time, as toISOString does', () => {
    expect(() => isoTime(NaN)).toThrow(RangeError);
    expect(() => isoTime(8.64e15 + 1)).toThrow(RangeError);
  });
});
