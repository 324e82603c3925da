import type { Services } from '../modules/services';
import type { Metrics } from '../shared/metrics';

/** Pause between tail rounds that found nothing more to read. */
const TAIL_EVERY_MS = 500;
/** Pause between delivery rounds that found nothing due. */
const DELIVER_EVERY_MS = 250;
const PURGE_EVERY_MS = 60_000;

/**
 * Offline notifications, on every instance: the message tail (one instance per round, by the
 * cursor row's lock) and the delivery of the outbox. Delivery claims events with
 * `FOR UPDATE SKIP LOCKED` and a lease, so instances share the work and never send the same
 * event at once; one killed mid-delivery leaves a lease that runs out, and another instance sends
 * that event again (at least once: the receiver drops a repeat by its id).
 *
 * Why not pg-boss: the outbox already is the queue, with the ordering and coalescing rules in
 * its own SQL; SKIP LOCKED on it is a few statements, needs no extra dependency, no schema of
 * its own and no second copy of each event, and the embedded PostgreSQL default needs nothing more.
 * Runs only when WEBHOOK_URL is set.
 */
export function webhookJob(services: Services, metrics?: Metrics) {
  const log = services.logger.child({ job: 'webhooks' });
  const n = services.notifications;
  let stopped = false;
  const timers = new Set<NodeJS.Timeout>();
  const running = new Set<Promise<void>>();
  let lastPurge = 0;
  let lastWarning = 0;
  const warn = (err: unknown, what: string) => {
    // An outage makes every round fail: one line per 10 s is enough to say so.
    if (Date.now() - lastWarning < 10_000) return;
    lastWarning = Date.now();
    log.warn({ err }, what);
  };

  /** Runs `round` again and again: at once when it says there is more, after `idleMs` otherwise. */
  const loop = (idleMs: number, round: () => Promise<boolean>) => {
    const next = (ms: number) => {
      if (stopped) return;
      const t = setTimeout(() => {
        timers.delete(t);
        const p = round()
          .catch(() => false)
          .then((more) => next(more ? 0 : idleMs));
        running.add(p);
        void p.finally(() => running.delete(p));
      }, ms);
      timers.add(t);
    };
    next(idleMs);
  };

  loop(TAIL_EVERY_MS, async () => {
    try {
      const r = await n.tailMessages();
      const queued = (r?.queued ?? 0) + n.takeWritten();
      if (queued) metrics?.webhooks.queued.inc(queued);
      return !!r?.more;
    } catch (e) {
      warn(e, 'notification tail failed; the cursor stays, the next round reads the same messages');
      return false;
    }
  });

  loop(DELIVER_EVERY_MS, async () => {
    try {
      if (Date.now() - lastPurge > PURGE_EVERY_MS) {
        lastPurge = Date.now();
        await n.purge();
      }
      const r = await n.deliver();
      metrics?.webhooks.delivered.inc(r.delivered.length);
      for (const d of r.delivered) metrics?.webhooks.latency.observe(d.latencySeconds);
      if (r.retried) metrics?.webhooks.retried.inc(r.retried);
      if (r.dropped) metrics?.webhooks.dropped.inc(r.dropped);
      if (r.dropped) log.warn({ dropped: r.dropped }, 'webhook events dropped after WEBHOOK_MAX_AGE');
      return r.claimed > 0;
    } catch (e) {
      warn(e, 'webhook delivery round failed');
      return false;
    }
  });

  return {
    async dispose() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      // A delivery under way may finish, so its event is not sent again by another instance; but
      // not past 3 s of the 10 s a stop has: one still waiting is cut short then and its event
      // given back, due at once for another instance (before, it kept its lease: sent again 30 s
      // later, a probe), with a second for that to be written.
      const settled = (ms: number) => {
        let waited: NodeJS.Timeout | undefined;
        return Promise.race([Promise.all([...running]), new Promise((r) => (waited = setTimeout(r, ms)))]).finally(() => clearTimeout(waited));
      };
      await settled(3000);
      if (running.size) {
        n.stopDeliveries();
        await settled(1000);
      }
    },
  };
}
