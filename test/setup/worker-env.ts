import { applyWorker } from './workers';

// Runs in each worker before each test file (jest setupFiles): see workers.ts.
const worker = Number(process.env.JEST_WORKER_ID ?? 1);
applyWorker(process.env, worker);
// Which worker's names this file's environment holds: workers.test checks it in every worker.
process.env.PARLEY_TEST_WORKER_SET_UP = String(worker);
