import pg from 'pg';

/** Runs one SQL query against the test database (for assertions on what was stored). */
export async function sql<T extends pg.QueryResultRow = any>(databaseUrl: string, text: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}

/** Row counts of every application table: equal before and after means nothing was written. */
export async function snapshot(databaseUrl: string): Promise<Record<string, number>> {
  const tables = await sql<{ tablename: string }>(databaseUrl, "select tablename from pg_tables where schemaname = 'public' and tablename not like 'mikro_orm_%' order by 1");
  const out: Record<string, number> = {};
  for (const { tablename } of tables) {
    const [row] = await sql<{ n: number }>(databaseUrl, `select count(*)::int as n from "${tablename}"`);
    out[tablename] = row.n;
  }
  const [users] = await sql<{ h: string }>(databaseUrl, "select md5(string_agg(id::text || username || coalesce(display_name, ''), ',' order by id)) as h from users");
  out['users:content'] = users.h ? parseInt(users.h.slice(0, 8), 16) : 0;
  return out;
}

/** Strings that break naive servers: empty, huge, Unicode, quotes and SQL fragments. */
export const HOSTILE_STRINGS = [
  '',
  ' ',
  'x'.repeat(10_000),
  'ñandú-☃-😀-\u202e-ｆｕｌｌ',
  "robert'); drop table users; --",
  '" or 1=1 --',
  '%_\\',
  '\u0000nul',
  '<script>alert(1)</script>',
];
