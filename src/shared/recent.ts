/** A bounded map whose entries serve for `ttlMs` after they were set; past `max`, the one set longest ago goes. */
export class Recent<V> {
  private readonly entries = new Map<string, { value: V; at: number }>();

  constructor(private readonly opts: { max: number; ttlMs: number }) {}

  get(key: string): V | undefined {
    const e = this.entries.get(key);
    return e && Date.now() - e.at <= this.opts.ttlMs ? e.value : undefined;
  }

  set(key: string, value: V): void {
    this.entries.delete(key);
    if (this.entries.size >= this.opts.max) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(key, { value, at: Date.now() });
  }

  clear(): void {
    this.entries.clear();
  }
}
