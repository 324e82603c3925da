const DAY_MS = 86_400_000;
/** 10000-01-01T00:00:00.000Z: from there on toISOString writes a six-digit year. */
const YEAR_10000 = 253_402_300_800_000;
/** Days whose date part is remembered: a page of history spans a few, a process a few thousand. */
const DAYS_KEPT = 4096;
const days = new Map<number, string>();

const two = (n: number) => (n < 10 ? `0${n}` : `${n}`);

/**
 * `new Date(ms).toISOString()`, four to five times faster: V8's costs ~350 ns, and a history page
 * of 50 wrote 100 of them (createdAt and the cursor's key), 7-8% of the page's server time in a
 * CPU profile of bench:http. The date part is kept per day; the time of day is arithmetic.
 * @throws RangeError for an invalid time, as toISOString does.
 */
export function isoTime(ms: number): string {
  const day = Math.floor(ms / DAY_MS);
  let date = days.get(day);
  if (date === undefined) {
    // Before 1970 and from year 10000 on (and NaN), V8 writes it: none of those is on a hot path.
    if (!(ms >= 0 && ms < YEAR_10000)) return new Date(ms).toISOString();
    if (days.size >= DAYS_KEPT) days.clear();
    date = new Date(day * DAY_MS).toISOString().slice(0, 11);
    days.set(day, date);
  }
  let rest = ms - day * DAY_MS;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = Math.floor(rest / 1000);
  const milli = rest - s * 1000;
  return `${date}${two(h)}:${two(m)}:${two(s)}.${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
}

/** Two digits at `i` as a number; negative or over 99 when either is not a digit. */
function pair(t: string, i: number): number {
  const a = t.charCodeAt(i) - 48;
  const b = t.charCodeAt(i + 1) - 48;
  return a >= 0 && a <= 9 && b >= 0 && b <= 9 ? a * 10 + b : -1;
}

/** Days in each month of a common year; February gets its leap day below. */
const MONTH_DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * The milliseconds of a time as PostgreSQL writes it to MikroORM's connections (which keep
 * timestamps as text: 'YYYY-MM-DD HH:MM:SS[.ffffff]+00' in a UTC session), as its JSON writes it
 * ('YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00') or as JSON carries it ('YYYY-MM-DDTHH:MM:SS.sssZ'), read
 * by position, a few times faster than `new Date(text)`, which a page of history paid three times
 * a row (createdAt, the cursor, the sender's createdAt).
 * Anything else (another zone, years before 1000 or after 9999, 'infinity', a day that does not
 * exist) goes to `new Date`, which reads the same text the same way (NaN where it can't).
 */
export function timeOf(t: string): number {
  const n = t.length;
  const sep = t.charCodeAt(10);
  const hi = pair(t, 0);
  const lo = pair(t, 2);
  const month = pair(t, 5);
  const day = pair(t, 8);
  const h = pair(t, 11);
  const m = pair(t, 14);
  const s = pair(t, 17);
  const year = hi * 100 + lo;
  if (
    n < 20 || hi < 10 || lo < 0 || t.charCodeAt(4) !== 45 || t.charCodeAt(7) !== 45 || (sep !== 32 && sep !== 84) || t.charCodeAt(13) !== 58 || t.charCodeAt(16) !== 58 ||
    month < 1 || month > 12 || day < 1 || h < 0 || h > 23 || m < 0 || m > 59 || s < 0 || s > 59 ||
    day > (month === 2 && year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : MONTH_DAYS[month - 1])
  ) {
    return new Date(t).getTime();
  }
  let i = 19;
  let ms = 0;
  if (t.charCodeAt(i) === 46) {
    // A point with no digit after it is V8's to refuse.
    const first = t.charCodeAt(i + 1) - 48;
    if (!(first >= 0 && first <= 9)) return new Date(t).getTime();
    // Milliseconds from the first three digits; microseconds beyond are cut, as V8 cuts them.
    let scale = 100;
    for (i++; i < n; i++) {
      const c = t.charCodeAt(i) - 48;
      if (c < 0 || c > 9) break;
      ms += c * scale;
      scale = scale === 1 ? 0 : scale / 10;
    }
  }
  // The zone: UTC only ('+00' in PostgreSQL's text, 'Z' in JSON, '+00:00' in PostgreSQL's JSON:
  // a send's member row comes as row_to_json, and each of its times went to `new Date`).
  const utc =
    sep === 32
      ? i === n - 3 && t.charCodeAt(i) === 43 && t.charCodeAt(i + 1) === 48 && t.charCodeAt(i + 2) === 48
      : (i === n - 1 && t.charCodeAt(i) === 90) ||
        (i === n - 6 && t.charCodeAt(i) === 43 && t.charCodeAt(i + 1) === 48 && t.charCodeAt(i + 2) === 48 && t.charCodeAt(i + 3) === 58 && t.charCodeAt(i + 4) === 48 && t.charCodeAt(i + 5) === 48);
  return utc ? Date.UTC(year, month - 1, day, h, m, s, ms) : new Date(t).getTime();
}

/**
 * A time as a row holds it (text from MikroORM's connections, a Date from pg's defaults, ISO text
 * from JSON) as a Date: pg's own when it is one (each row's is fresh and nobody changes a Date).
 */
export function dateOf(v: Date | string): Date {
  return v instanceof Date ? v : new Date(timeOf(v));
}

/** The ISO text of a time as a row holds it (see dateOf), for cursors. */
export function isoOf(v: Date | string): string {
  return isoTime(v instanceof Date ? v.getTime() : timeOf(v));
}
