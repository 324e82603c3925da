const Sequencer = require('@jest/test-sequencer').default;

/**
 * Suites whose bounds are about time on a busy machine (rolling.test: every client back within
 * 10 s while three instances restart): they run last, and wait there until the other worker's
 * last suite is over (see test/helpers/alone.ts), so that a heavy suite beside them (a browser,
 * several instances) cannot stretch what they measure. CI's stop-43 and stop-46 runs each failed
 * rolling.test so (71 and 73 s against about 28 s alone, clients back in 10.4-15 s).
 */
const LAST = ['rolling.test.ts'];
const isLast = (test) => LAST.some((name) => test.path.endsWith(`/test/${name}`));

class LastAlone extends Sequencer {
  async sort(tests) {
    const sorted = await super.sort(tests);
    return [...sorted.filter((t) => !isLast(t)), ...sorted.filter(isLast)];
  }
}

module.exports = LastAlone;
