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

/**
 * Row counts of every application table: equal before and after means nothing was written. One
 * connection and two queries (a query and a connection per table took ~0.4 s, 2 per refusal).
 * `db` is a URL, or a client the caller holds (for a few queries on one connection).
 */
export async function snapshot(db: string | pg.ClientBase): Promise<Record<string, number>> {
  if (typeof db === 'string') {
    const client = new pg.Client({ connectionString: db });
    await client.connect();
    try {
      return await snapshot(client);
    } finally {
      await client.end();
    }
  }
  const { rows: tables } = await db.query<{ tablename: string }>("select tablename from pg_tables where schemaname = 'public' and tablename not like 'mikro_orm_%' order by 1");
  const counts = tables.map(({ tablename }, i) => `select ${i} as i, count(*)::int as n from "${tablename}"`);
  const users = "select -1 as i, ('x' || coalesce(left(md5(string_agg(id::text || username || coalesce(display_name, ''), ',' order by id)), 8), '00000000'))::bit(32)::bigint as n from users";
  const { rows } = await db.query<{ i: number; n: string | number }>([...counts, users].join(' union all '));
  const out: Record<string, number> = {};
  for (const { tablename } of tables) out[tablename] = 0;
  for (const r of rows) out[r.i === -1 ? 'users:content' : tables[r.i].tablename] = Number(r.n);
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

/**
 * Resolves once `n` other backends wait for a lock `holder` holds (a row it updated, a row it
 * locked): what a test's sleep only hoped for, under any load. pg_locks is read live, so the
 * holder's own open transaction can ask.
 */
export async function waitedOnBy(holder: pg.ClientBase, n = 1, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const { rows } = await holder.query<{ n: number }>('select count(distinct pid)::int as n from pg_locks where not granted and pg_backend_pid() = any(pg_blocking_pids(pid))');
    if (rows[0].n >= n) return;
    if (Date.now() > end) throw new Error(`${n} backend(s) did not come to wait on this transaction's locks within ${ms} ms (${rows[0].n} did)`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Makes `holder` the last to look for a deadlock it is part of, so that the other side, which
 * waits from the first, is always the victim. PostgreSQL aborts whichever backend's
 * deadlock_timeout runs out first; a head start of a few milliseconds lost to a loaded machine
 * made the test's own session the victim (a CI run on a busy machine). Setting it needs a
 * superuser, as the test databases' owner is here; without one the head start is all there is.
 */
export async function checkDeadlocksLast(holder: pg.ClientBase): Promise<void> {
  try {
    await holder.query("set deadlock_timeout = '10s'");
  } catch (e) {
    if ((e as { code?: string }).code !== '42501') throw e;
  }
}

/**
 * Runs `statements` in a transaction on a connection of its own, then `request` while that
 * transaction holds their locks; once a session of this database waits on a lock (or `request`
 * answers first), runs `thenRun` (what the holder writes after the request read), commits, and
 * returns what `request` answers: a race made certain.
 */
export async function whileHolding<T>(databaseUrl: string, statements: [string, unknown[]][], request: () => Promise<T>, thenRun: [string, unknown[]][] = []): Promise<T> {
  const holder = new pg.Client({ connectionString: databaseUrl });
  await holder.connect();
  try {
    await holder.query('begin');
    for (const [text, params] of statements) await holder.query(text, params);
    const answer = request();
    const waiting = async () =>
      (await sql(databaseUrl, 'select 1 from pg_locks l join pg_stat_activity a using (pid) where not l.granted and a.datname = current_database()')).length > 0;
    const deadline = Date.now() + 5000;
    let answered = false;
    void answer.then(
      () => (answered = true),
      () => (answered = true),
    );
    while (!answered && !(await waiting())) {
      if (Date.now() > deadline) throw new Error('the request never waited on the held locks');
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const [text, params] of thenRun) await holder.query(text, params);
    await holder.query('commit');
    return await answer;
  } finally {
    await holder.end();
  }
}
