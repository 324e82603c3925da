import { setFlagsFromString } from 'node:v8';

/**
 * Bytecode a function runs between two of V8's tier-up checks: a function becomes optimized code
 * after three checks and more (one more per 150 bytes of its bytecode), so with V8's default
 * (67,584) a small function on the send path is optimized after thousands of sends. A fresh
 * instance (a deploy, a scale-out) thus served its first few thousand sends in baseline code with
 * the optimizing compiler busy beside it: in bench:rooms, V8 made 83-98 optimizations during the
 * measured 2,000 sends that followed 2,000 unmeasured ones, functions of the send and delivery
 * path among them (toMessagePayload, rowUpdate, recordMessage...), and the compiler's threads took
 * a quarter of the process's CPU there. An eighth of the budget gets there in hundreds (33).
 */
export const INTERRUPT_BUDGET = 8192;

/**
 * Makes this process reach optimized code sooner (see INTERRUPT_BUDGET), unless it was started
 * with `--interrupt-budget` of its own, which wins. V8 reads the flag at every check, so functions
 * compiled before the call follow it from their next one. Returns whether it set it.
 */
export function tuneTierUp(execArgv: readonly string[] = process.execArgv): boolean {
  if (execArgv.some((a) => a.startsWith('--interrupt-budget'))) return false;
  setFlagsFromString(`--interrupt-budget=${INTERRUPT_BUDGET}`);
  return true;
}
