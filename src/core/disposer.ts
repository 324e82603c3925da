import type { Logger } from '../shared/logger';

/**
 * What a running server holds, released in reverse order of acquisition: each step is pushed as
 * soon as the thing it releases exists, so a start-up that fails half way releases exactly what
 * it took, and a dispose releases everything, through the same code.
 */
export class DisposerStack {
  private readonly steps: { name: string; release: () => Promise<unknown> | unknown }[] = [];
  private disposing?: Promise<void>;

  constructor(private readonly logger: Logger) {}

  /** Releases `release` before everything pushed earlier. */
  push(name: string, release: () => Promise<unknown> | unknown): void {
    this.steps.push({ name, release });
  }

  /** Runs every step once, last pushed first; a step that throws is logged and the rest still run. */
  dispose(): Promise<void> {
    return (this.disposing ??= (async () => {
      for (const { name, release } of this.steps.splice(0).reverse()) {
        try {
          await release();
          this.logger.debug({ step: name }, 'stopped');
        } catch (e) {
          this.logger.warn({ err: e, step: name }, 'dispose step failed');
        }
      }
    })());
  }
}
