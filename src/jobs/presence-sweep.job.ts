import cron from 'node-cron';
import type { Services } from '../modules/services';
import { warnAtMostEvery } from '../shared/logger';
import type { Metrics } from '../shared/metrics';
import { isDependencyDown } from '../shared/sql';

/**
 * The presence sweep on every tick of PRESENCE_SWEEP_CRON (each minute by default), scheduled on
 * every instance and run by one per tick: node-cron's distributed mode asks the presence store
 * (a Redis SET NX with a TTL, or memory) for the tick's slot, which is the same on every instance,
 * so exactly one wins it. The sweep itself removes atomically, so even a second run could not
 * publish a transition twice.
 */
export function presenceSweepJob(services: Services, metrics?: Metrics) {
  const log = services.logger.child({ job: 'presence-sweep' });
  // A tick whose slot can't be asked for (Redis away) is skipped on purpose, as every instance's is:
  // an outage's warning, once in a while, not an error each tick (an outside probe: one a tick).
  const skipped = warnAtMostEvery(log, 60_000, 'presence sweep skipped: its slot could not be claimed');
  const task = cron.schedule(
    services.env.PRESENCE_SWEEP_CRON,
    async (ctx) => {
      try {
        const { expired, ms } = await services.presence.sweep({ slot: ctx.date.toISOString() });
        log.debug({ expired, ms, slot: ctx.date.toISOString() }, 'presence sweep');
        metrics?.sweepDuration.observe(ms / 1000);
        metrics?.sweepExpired.inc(expired);
      } catch (e) {
        log.warn({ err: e }, 'presence sweep failed');
      }
      // The tick's one instance also forgets expired sessions (every login adds one).
      try {
        const purged = await services.auth.purgeExpired();
        if (purged) log.debug({ purged }, 'expired sessions purged');
      } catch (e) {
        log.warn({ err: e }, 'purging expired sessions failed; the next tick tries again');
      }
    },
    {
      name: 'presence-sweep',
      noOverlap: true,
      distributed: true,
      // Held past the tick on purpose: an instance whose clock or event loop runs late must not run the slot again.
      distributedLease: 5 * 60_000,
      runCoordinator: { shouldRun: (key, ttlMs) => services.presence.claim(key, ttlMs) },
      logger: {
        info: (m) => log.info(m),
        warn: (m) => log.warn(m),
        error: (m, err) => (isDependencyDown(err) ? skipped(err) : log.error({ err: err ?? m }, String(m))),
        debug: (m) => log.debug(String(m)),
      },
    },
  );
  return {
    async dispose() {
      await task.stop();
      await task.destroy();
    },
  };
}
