import type { Services } from '../core/services';
import { presenceSweepJob } from './presence-sweep.job';

/** Starts every job; disposing stops them all. */
export function startJobs(services: Services) {
  const jobs = [presenceSweepJob(services)];
  return {
    async dispose() {
      await Promise.all(jobs.map((j) => j.dispose()));
    },
  };
}
