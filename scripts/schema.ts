/** `emit` writes schema.graphql from the code; `check` fails when the committed file is stale. */
import 'reflect-metadata';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createSchema, printSdl } from '../src/graphql/schema';

const file = path.join(__dirname, '..', 'schema.graphql');

async function main(mode: string): Promise<void> {
  const sdl = printSdl(await createSchema());
  if (mode === 'emit') {
    writeFileSync(file, sdl);
    process.stdout.write(`wrote ${path.relative(process.cwd(), file)}\n`);
    return;
  }
  let current = '';
  try {
    current = readFileSync(file, 'utf8');
  } catch {
    /* missing counts as stale */
  }
  if (current !== sdl) {
    process.stderr.write('schema.graphql is stale: run `npm run schema:emit` and commit it.\n');
    process.exit(1);
  }
  process.stdout.write('schema.graphql is current\n');
}

main(process.argv[2] ?? 'check').catch((e) => {
  process.stderr.write(`${(e as Error).stack}\n`);
  process.exit(1);
});
