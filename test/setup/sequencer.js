const Sequencer = require('@jest/test-sequencer').default;

/**
 * Suites whose bounds are about time on a busy machine (rolling.test: every client back within
 * 10 s while three instances restart): they run last, and wait there until the other workers'
 * last suites are over (see test/helpers/alone.ts), so that a heavy suite beside them (a browser,
 * several instances) cannot stretch what they measure. CI's stop-43 and stop-46 runs each failed
 * rolling.test so (71 and 73 s against about 28 s alone, clients back in 10.4-15 s).
 */
const LAST = ['rolling.test.ts'];
/**
 * The longest suites (CI, 2026-11-26: 40-110 s each, most of it waiting out grace periods and
 * lapses), first: a fresh clone has no timings for jest to sort by, and sorted by file size they
 * started late and ran on alone at the end.
 */
const FIRST = [
  'notifications.test.ts', 'presence.test.ts', 'group-roles.test.ts', 'typing.test.ts', 'demo.browser.test.ts', 'sse.test.ts', 'routing.test.ts', 'races.test.ts',
  // Long, and mostly waiting (CI, 2026-11-29: 54-149 s each): sorted by size they started after
  // 490-726 s of 828, and rolling.test waited 34 s for notifications.crash to end.
  'foundation.test.ts', 'scaleout.test.ts', 'startup.test.ts', 'notifications.crash.test.ts',
];
const named = (names) => (test) => names.some((name) => test.path.endsWith(`/test/${name}`));
const isLast = named(LAST);
const rank = (test) => {
  const i = FIRST.findIndex((name) => test.path.endsWith(`/test/${name}`));
  return i < 0 ? FIRST.length : i;
};

class LongFirstLastAlone extends Sequencer {
  async sort(tests) {
    const sorted = await super.sort(tests);
    // Array.prototype.sort is stable: the rest keep jest's order (its timings, else file size).
    const middle = sorted.filter((t) => !isLast(t)).sort((a, b) => rank(a) - rank(b));
    return [...middle, ...sorted.filter(isLast)];
  }
}

module.exports = LongFirstLastAlone;
