import { dateOf, isoOf, isoTime, timeOf } from '../src/shared/time';

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

describe('timeOf', () => {
  it('should read a time as V8 reads it, PostgreSQL\'s text and JSON\'s, and whatever else the same way', () => {
    const pgText = (ms: number, micro = '') => `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')}${micro}+00`;
    const samples: string[] = [
      '2026-11-24 22:40:01.123+00',
      '2026-11-24 22:40:01+00',
      '2026-11-24 22:40:01.9+00',
      '2026-11-24 22:40:01.999999+00',
      '2026-11-24 22:40:01.000001+00',
      '2026-11-24T22:40:01.123Z',
      '2026-11-24T22:40:01.123456+00:00', // PostgreSQL's JSON (row_to_json)
      '2026-11-24T22:40:01+00:00',
      '2026-11-24T22:40:01.123+00:01',
      '2026-11-24T22:40:01.123-00:00',
      '2026-11-24T22:40:01.123+00:0',
      '2026-11-24T22:40:01.123+0000',
      '2026-11-24T22:40:01.123+00',
      '2026-11-24 22:40:01.123+00:00',
      '2024-02-29 23:59:59.999+00', // a leap day
      '2023-02-29 10:00:00+00', // no such day
      '2026-04-31 10:00:00+00',
      '2026-13-01 10:00:00+00',
      '2026-11-24 24:00:00+00',
      '2026-11-24 22:40:01.123+01', // another zone
      '2026-11-24 22:40:01.123+05:30',
      '2026-11-24 22:40:01.123-08',
      '0999-01-01 00:00:00+00',
      '0050-06-01 12:00:00+00', // Date.UTC would read the year as 1950
      '2026-11-24 22:40:01.123+00 BC',
      '12026-11-24 22:40:01+00',
      'infinity',
      '-infinity',
      '',
      '2026-11-24 2a:40:01+00',
      '2026-11-24 22:40:01.+00', // a point with no digit
      '2026-11-24T22:40:01.Z',
      '2026-11-24',
    ];
    let seed = 7;
    const next = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    for (let i = 0; i < 5_000; i++) {
      const ms = Math.floor(next() * Date.UTC(9999, 0, 1)) + Date.UTC(1000, 0, 1);
      samples.push(pgText(ms - (ms % 1000), `.${String(ms % 1000).padStart(3, '0')}`), pgText(ms - (ms % 1000)), new Date(ms).toISOString(), new Date(ms).toISOString().replace('Z', '456+00:00'));
    }
    for (const t of samples) expect([t, timeOf(t)]).toEqual([t, new Date(t).getTime()]);
  });

  it('should give dates and ISO texts of what rows hold', () => {
    const d = new Date(Date.UTC(2026, 10, 24, 22, 40, 1, 123));
    expect(dateOf(d)).toBe(d);
    expect(dateOf('2026-11-24 22:40:01.123+00').getTime()).toBe(d.getTime());
    expect(isoOf('2026-11-24 22:40:01.123456+00')).toBe('2026-11-24T22:40:01.123Z');
    expect(isoOf(d)).toBe('2026-11-24T22:40:01.123Z');
    expect(() => isoOf('infinity')).toThrow(RangeError);
  });
});
