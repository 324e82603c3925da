import { spawn } from 'node:child_process';
import type { Logger } from '../shared/logger';

/**
 * A write to stdout or stderr whose reader went away (EPIPE: `npm start | tee log` ended with
 * Ctrl-C, a supervisor that exited) is dropped instead of failing the process with an 'error'
 * event nobody listens to: the server keeps serving, and a shutdown keeps going.
 */
export function ignoreClosedPipes(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE' && e.code !== 'ERR_STREAM_DESTROYED') throw e;
    });
  }
}

/**
 * Kills this process (SIGKILL) after `ms`, from a small process of its own: nothing this process
 * does can hold it back. A timer here cannot promise that: a synchronous write to a full pipe, an
 * exit handler waiting on a log worker (pino's transport flushes synchronously on 'exit', up to
 * 20 s), or Node joining a thread stuck in such a write at exit all keep this thread from running
 * it. The watchdog ends by itself as soon as this process is gone (its stdin closes).
 */
export function armWatchdog(ms: number): void {
  const code = `const t=setTimeout(()=>{try{process.kill(${process.pid},'SIGKILL')}catch{}},${Math.max(0, Math.round(ms))});process.stdin.on('end',()=>process.exit(0)).on('error',()=>process.exit(0)).resume();`;
  try {
    const watchdog = spawn(process.execPath, ['-e', code], { stdio: ['pipe', 'ignore', 'ignore'], detached: true, env: {} });
    watchdog.on('error', () => undefined);
    watchdog.unref();
    // The pipe stays open, unreferenced, for as long as this process lives; its end at exit tells the watchdog.
    (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  } catch {
    // No process left to spawn (EAGAIN, EMFILE): the in-process deadline still stands.
  }
}

/**
 * Ends the process with `code` once the logger has written what it holds, waiting at most `ms`
 * for it. Flushed: through process.exit, whose 'exit' listeners (the embedded PostgreSQL's stop)
 * run at once. Not flushed in time (its worker cannot write): through process.reallyExit (what
 * process.exit calls after the listeners), since pino's listener would flush again,
 * synchronously and without our bound.
 */
export function exitAfterFlush(logger: Logger, code: number, ms: number): void {
  let exited = false;
  const exit = (flushed: boolean) => {
    if (exited) return;
    exited = true;
    process.exitCode = code;
    const really = (process as unknown as { reallyExit?: (code: number) => void }).reallyExit;
    if (flushed || typeof really !== 'function') process.exit(code);
    else really.call(process, code);
  };
  setTimeout(() => exit(false), Math.max(0, ms)).unref();
  try {
    logger.flush((e?: Error) => setImmediate(() => exit(!e)));
  } catch {
    exit(false);
  }
}
