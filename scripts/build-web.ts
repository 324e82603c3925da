import { buildWebDemo } from '../src/core/dev-pages';

/** npm run build:web: bundles examples/web (the server also does it on first GET /demo/app.js). */
buildWebDemo()
  .then((file) => process.stdout.write(`web demo bundled: ${file}\n`))
  .catch((e) => {
    process.stderr.write(`web demo build failed: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
