import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runningSuites } from '../helpers/alone';

// Each suite marks itself running for as long as it runs (jest setupFilesAfterEnv), in a folder of
// this jest run's: a suite that must run alone (helpers/alone.ts) waits for the others' marks to go.
const mark = path.join(runningSuites(), String(process.pid));

beforeAll(() => {
  mkdirSync(path.dirname(mark), { recursive: true });
  writeFileSync(mark, expect.getState().testPath ?? '');
});

afterAll(() => rmSync(mark, { force: true }));
