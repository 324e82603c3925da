import type { Services } from '../modules/services';
import type { Metrics } from '../shared/metrics';
import { presenceSweepJob } from './presence-sweep.job';
import { webhookJob } from './webhook.job';

/** Starts every job; disposing stops them all. `metrics`: where the jobs report (optional for scripts). */
export function startJobs(services: Services, opts: { metrics?: Metrics } = {}) {
  const jobs = [presenceSweepJob(services, opts.metrics)];
  if (services.notifications.enabled) jobs.push(webhookJob(services, opts.metrics));
  return {
    async dispose() {
      await Promise.all(jobs.map((j) => j.dispose()));
    },
  };
}
