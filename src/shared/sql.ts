/**
 * A PostgreSQL array literal for `= any(?::uuid[])` and the like: knex would expand a JS array
 * into a list. Only for values with nothing to escape (UUIDs, ISO times).
 */
export function pgArray(values: readonly string[]): string {
  return `{${values.join(',')}}`;
}

/** Rows grouped by a key, each group the values picked from its rows. */
export function groupBy<R, V>(rows: readonly R[], key: (r: R) => string, value: (r: R) => V): Map<string, V[]> {
  const out = new Map<string, V[]>();
  for (const r of rows) {
    const k = key(r);
    const list = out.get(k);
    if (list) list.push(value(r));
    else out.set(k, [value(r)]);
  }
  return out;
}
