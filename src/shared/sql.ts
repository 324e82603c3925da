import { createHash } from 'node:crypto';
import { ConnectionException, DeadlockException } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import pg from 'pg';

/**
 * A PostgreSQL array literal for `= any(?::uuid[])` and the like: knex would expand a JS array
 * into a list. Only for values with nothing to escape (UUIDs, ISO times).
 */
export function pgArray(values: readonly string[]): string {
  return `{${values.join(',')}}`;
}

/**
 * A PostgreSQL array literal of any texts (quoted and escaped; null as NULL), for
 * `unnest(?::text[])`: one parameter for a batch's values whatever they hold.
 */
export function pgTextArray(values: readonly (string | null)[]): string {
  return `{${values.map((v) => (v === null ? 'NULL' : `"${v.replace(/[\\"]/g, '\\$&')}"`)).join(',')}}`;
}

/**
 * `unnest` of a batch's arrays (one `?` per type, e.g. 'uuid[]'), each a subquery's value the
 * planner can't read. Read, an array's length made every custom plan of a batch cost below the
 * generic plan (which assumes 10 rows), and PostgreSQL planned the statement on every call:
 * pg_prepared_statements showed a send batch at 619 custom plans and no generic one, 0.8 ms of
 * planning a batch against 0.7-0.9 executing it.
 */
export function unnestUnseen(types: readonly string[]): string {
  return `unnest(${types.map((t) => `(select ?::${t})`).join(', ')})`;
}

/** Row counts a prepared page asks for: every page size rounds up to one of these. */
const LIMITS = [11, 21, 51, 101];

/**
 * A row count for a prepared statement's text: at least `n`, from a few fixed values, so the
 * caller keeps the first `n` rows of what comes back. With `limit $n` PostgreSQL can't cost a
 * generic plan (it assumes a tenth of the rows), so it re-planned every execution as a custom plan:
 * a history page spent 0.28 ms binding (planning) against 0.17 ms executing, and pgbench ran the
 * same page at 8,100/s with `limit $n` and 15,700/s with the number written in. Each count written
 * in is a statement of its own on every connection, holding its plan (130-330 KB in PostgreSQL),
 * hence four counts rather than one per page size.
 * @throws RangeError for anything but a non-negative safe integer (it is spliced into SQL).
 */
export function limitLiteral(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not a row count: ${n}`);
  return String(LIMITS.find((l) => l >= n) ?? n);
}

/** A fragment of SQL with its `?` parameters, for a repository to splice into another's statement. */
export interface Sql {
  text: string;
  params: unknown[];
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

/** A statement's name on every connection and its text with positional parameters, by its `?` text. */
const statements = new Map<string, { name: string; text: string }>();

/** The texts of the statements prepared so far, as PostgreSQL gets them (for tests: their plans). */
export function preparedTexts(): string[] {
  return [...statements.values()].map((s) => s.text);
}

interface PooledClient {
  query(q: pg.Query): void;
}

/** What a pg Query keeps of its row mode: the mode, and the Result its constructor made from it. */
interface RowModeOf {
  _rowMode?: string;
  _result: object;
  _results: unknown;
  types?: unknown;
}

/**
 * A Query as pg's constructor makes it for rows as arrays. Its Result's class is the one execute
 * uses (pg doesn't export it from the package's root). Checked once at load against a Query
 * without a row mode: a release of pg that keeps the mode anywhere else than execute sets it
 * stops the server at start instead of handing pages their rows as objects.
 */
const ARRAYS = new pg.Query({ text: '', rowMode: 'array' } as pg.QueryConfig) as unknown as RowModeOf & Record<string, unknown>;
const Result = ARRAYS._result.constructor as new (rowMode: string | undefined, types: unknown) => object;
{
  const plain = new pg.Query('') as unknown as Record<string, unknown>;
  const differs = Object.keys(ARRAYS).filter((k) => typeof ARRAYS[k] !== 'object' && typeof ARRAYS[k] !== 'function' && ARRAYS[k] !== plain[k]);
  if (differs.join() !== '_rowMode' || ARRAYS._rowMode !== 'array' || ARRAYS._results !== ARRAYS._result) {
    throw new Error(`pg's Query keeps its row mode where sql.execute does not set it (fields a row mode changes: ${differs.join() || 'none'})`);
  }
}

/**
 * One execution of a named statement on `connection`. pg copies a config object it is given
 * (`{ name, text, rowMode }`) with getOwnPropertyDescriptors and defineProperties (2 µs alone,
 * 17.5 µs a history page in a CPU profile of bench:http), and wraps it in a promise of its own: a
 * Query built from the text (a string is not copied), named and given its row mode as its
 * constructor gives them before it is submitted, skips both. ARRAYS holds pg to where it keeps
 * the row mode; test/prepared.test.ts fails if pg stops reading either.
 */
function execute<T>(connection: PooledClient, statement: { name: string; text: string }, params: readonly unknown[], fromArray?: (values: unknown[]) => T): Promise<T[]> {
  // pg reads the values into its Bind message and never writes to them: they need no copy.
  return new Promise((resolve, reject) => {
    const done = (error: Error | undefined, result: pg.QueryResult) => (error ? reject(error) : resolve(fromArray ? (result.rows as unknown as unknown[][]).map(fromArray) : (result.rows as T[])));
    const query = new pg.Query(statement.text, params as unknown[], done) as pg.Query & { name?: string } & RowModeOf;
    query.name = statement.name;
    // A page of 51 rows as arrays rather than objects (see prepared).
    if (fromArray) query._result = query._results = new Result((query._rowMode = 'array'), query.types);
    connection.query(query);
  });
}

/**
 * Runs a hot statement as a named prepared statement, so PostgreSQL plans it once per connection
 * instead of on every call: history's page spent ~60% of its time in PostgreSQL planning (EXPLAIN
 * ANALYZE: 1.0 ms planning, 0.55 ms executing), and a send's one statement 1.1 ms planning
 * against 1.0 ms executing. Written with `?` as em.execute takes it (no `?` may stand in a
 * literal); inside a transaction it runs there, unprepared, like any statement. A single
 * statement that writes is atomic on its own, so it may come here too.
 * `fromArray`: the row from its values in the statement's column order. pg then hands each row
 * over as an array: an object row is a copy of a null-prototype object (dictionary mode) filled
 * by column name, slower to fill and to read, ~20 µs of Node's time for a page of 51 messages.
 * In a transaction (knex's objects) it is not called: those rows have the same fields.
 * @throws DriverException as em.execute throws it (UniqueConstraintViolationException, ...).
 */
export async function prepared<T>(em: EntityManager, sql: string, params: readonly unknown[], fromArray?: (values: unknown[]) => T): Promise<T[]> {
  if (em.getTransactionContext()) return em.execute(sql, [...params]);
  let statement = statements.get(sql);
  if (!statement) {
    let n = 0;
    statement = { name: `parley_${createHash('sha1').update(sql).digest('hex').slice(0, 20)}`, text: sql.replace(/\?/g, () => `$${++n}`) };
    statements.set(sql, statement);
  }
  const client = em.getConnection().getKnex().client;
  const connection = (await client.acquireConnection()) as PooledClient;
  try {
    return await execute<T>(connection, statement, params, fromArray);
  } catch (e) {
    throw e instanceof Error ? em.getDriver().convertException(e) : e;
  } finally {
    await client.releaseConnection(connection);
  }
}

/**
 * Advisory locks held to the end of the transaction, one per name (several in one statement, in
 * key order, so two transactions locking overlapping names never wait on each other): what
 * serializes writers that share no row to lock (a friend pair, a conversation's pins, an inbox).
 * Names hash to 64 bits; two that collide only share a lock.
 */
export async function lockNames(em: EntityManager, names: readonly string[]): Promise<void> {
  if (!names.length) return;
  if (names.length === 1) return void (await em.execute('select pg_advisory_xact_lock(hashtextextended(?, 0))', [names[0]]));
  await em.execute('select pg_advisory_xact_lock(x.k) from (select distinct hashtextextended(n, 0) as k from unnest(?::text[]) n order by 1) x', [pgTextArray(names)]);
}

/** How many times a deadlock's victim runs in all. */
const DEADLOCK_ATTEMPTS = 3;

/** Whether PostgreSQL aborted this for a deadlock (MikroORM's exception, or pg's error as it came). */
export const isDeadlock = (e: unknown): boolean => e instanceof DeadlockException || (e as { code?: string } | null)?.code === '40P01';

/**
 * Whether PostgreSQL cancelled this at its statement timeout (DB_STATEMENT_TIMEOUT, 15 s): rolled back
 * whole, as a deadlock's victim; sent again once the contention that held it is over, it runs.
 */
export const isStatementTimeout = (e: unknown): boolean => (e as { code?: string } | null)?.code === '57014' && /statement timeout/.test((e as Error).message ?? '');

/**
 * Runs `run` again when PostgreSQL chose it as a deadlock's victim: it rolled the statement (or the
 * transaction) back whole, so nothing of it was written, and the other side has gone on by then.
 * A send that writes every member's sort key can meet a leave and an account deletion locking the
 * same rows in another order; without this the sender got INTERNAL_SERVER_ERROR for someone
 * else's leave. Only for a whole statement or a whole transaction, never a statement inside one.
 * @throws the last DeadlockException after DEADLOCK_ATTEMPTS, or any other error at once.
 */
export async function retryDeadlocks<T>(run: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await run();
    } catch (e) {
      if (!(e instanceof DeadlockException) || attempt >= DEADLOCK_ATTEMPTS) throw e;
    }
  }
}

/** Errors that mean PostgreSQL or Redis is away, not that the request was wrong. */
export function isDependencyDown(e: unknown): boolean {
  if (e instanceof ConnectionException) return true;
  const msg = e instanceof Error ? e.message : '';
  const code = (e as { code?: string })?.code ?? '';
  return (
    /Knex: Timeout acquiring a connection|Connection terminated|^timeout expired$|ECONNREFUSED|connect ETIMEDOUT|the database system is (starting up|shutting down)|is not currently accepting connections|terminating connection|Stream isn't writeable|Connection is closed|Reached the max retries per request|^Command timed out$|^Redis has not answered/.test(
      msg,
    ) ||
    // 53300: PostgreSQL has no connection slot left (max_connections, a role's limit); 57P02: it is
    // restarting after a crash; 08xxx: the connection failed. Each passes: the client may send again.
    // (A database that takes no connections, ALLOW_CONNECTIONS false, answers 55000, a code shared
    // with mistakes of a statement's own: it is known by its words above.)
    ['ECONNREFUSED', 'ECONNRESET', '53300', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006'].includes(code)
  );
}
