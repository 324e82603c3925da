/**
 * A PostgreSQL array literal for `= any(?::uuid[])` and the like: knex would expand a JS array
 * into a list. Only for values with nothing to escape (UUIDs, ISO times).
 */
export function pgArray(values: readonly string[]): string {
  return `{${values.join(',')}}`;
}
