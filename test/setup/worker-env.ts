import { applyWorker } from './workers';

// Runs in each worker before each test file (jest setupFiles): see workers.ts.
applyWorker(process.env, Number(process.env.JEST_WORKER_ID ?? 1));
