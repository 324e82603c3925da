import { BadUserInputError } from './errors';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * An ID as the API receives it, normalized once at the edge (the ID scalar, the download route):
 * a UUID in any case becomes lower case, the only spelling stored, compared and keyed on.
 * Anything else is returned unchanged and names no row.
 */
export function normalizeId(value: string): string {
  const lower = value.toLowerCase();
  return UUID.test(lower) ? lower : value;
}

/** IDs are opaque to clients but are lower-case UUIDs here; anything else can't name a row. */
export function isId(value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value);
}

const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u202a-\u202e\u2066-\u2069]/;

/** A short single-line name (group name, project title): trimmed, 1..max characters. */
export function cleanName(value: string, field: string, max = 100): string {
  const v = typeof value === 'string' ? value.trim() : '';
  if (!v.length || [...v].length > max || CONTROL.test(v) || /[\r\n\t]/.test(v)) {
    throw new BadUserInputError(`'${field}' must be 1 to ${max} characters on one line.`, field);
  }
  return v;
}

/** A search string: trimmed, at most 100 characters; empty means no filter. */
export function cleanSearch(value: string | null | undefined, field = 'search'): string | null {
  if (value === null || value === undefined) return null;
  const v = value.trim();
  if ([...v].length > 100) throw new BadUserInputError(`'${field}' must be at most 100 characters.`, field);
  return v.length ? v.replace(/\u0000/g, '') : null;
}
