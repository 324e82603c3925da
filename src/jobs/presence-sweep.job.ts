import cron from 'node-cron';
import type { Services } from '../core/services';

/**
 * Every tick of PRESENCE_SWEEP_CRON (each minute by default), on every instance; the
 * store's claim lets exactly one instance sweep per tick. Instances tick on the same
 * second, so the tick is keyed by the nearest whole second.
 */
export function presenceSweepJob(services: Services) {
  const log = services.logger.child({ job: 'presence-sweep' });
  const task = cron.schedule(services.env.PRESENCE_SWEEP_CRON, async () => {
    const started = Date.now();
    try {
      const { ran, expired } = await services.presence.sweep(String(Math.round(started / 1000)));
      if (ran) log.debug({ expired, ms: Date.now() - started }, 'presence sweep');
    } catch (e) {
      log.warn({ err: e }, 'presence sweep failed');
    }
  });
  return {
    async dispose() {
      await task.stop();
      await task.destroy();
    },
  };
}
