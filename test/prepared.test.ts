import { ConversationsDocument, HistoryDocument, MeDocument, UsersDocument } from '../generated/client/graphql';
import { COLUMNS, GROUP_COLUMNS, messageRepository, rowOf } from '../src/modules/message/message.repository';
import pg from 'pg';
import { preparedTexts } from '../src/shared/sql';
import { sql } from './helpers/db';
import { createTestServer } from './helpers/server';
import { groupWith, request, sendMessage, signup } from './helpers/factories';

interface PreparedRow {
  statement: string;
  generic_plans: number;
  custom_plans: number;
}

/**
 * 5,000 more users, analyzed: with statistics that tell users apart, a statement whose plan depends
 * on which user (the sidebar's viewer) or which names (a mention) could cost each custom plan below
 * the generic one, and PostgreSQL then planned it on every call.
 */
async function crowd(databaseUrl: string): Promise<void> {
  await sql(
    databaseUrl,
    `insert into users (id, username, password_hash, created_at) select gen_random_uuid(), 'crowd_' || i || '_' || $1, 'x', now() from generate_series(1, 5000) i`,
    [process.pid],
  );
  await sql(databaseUrl, 'analyze users');
}

describe('prepared reads', () => {
  it('should plan a history page and a sidebar page once per connection, not on every call', async () => {
    // One pooled connection: the statements the API prepared are that session's, and visible to it.
    const s = await createTestServer({ DB_POOL_MAX: '1' });
    // Before the first profile is read: PostgreSQL compares the generic plan with the average of
    // the custom plans so far, and those of a nearly empty users table cost next to nothing.
    await crowd(s.env.DATABASE_URL!);
    const a = await signup(s.url);
    const g = await groupWith(s.url, a, 'Planned', []);
    for (let i = 0; i < 3; i++) await sendMessage(s.url, a.token, { groupId: g, content: `m${i}` });
    // Statistics of a used database (a conversation of 20,000 messages elsewhere): on a nearly
    // empty table any plan looks cheap, and PostgreSQL keeps the generic plan whatever the text.
    const busy = await groupWith(s.url, a, 'Busy', []);
    await sql(
      s.env.DATABASE_URL!,
      `insert into messages (id, conversation_key, sender_id, content, group_id, seq, created_at)
       select gen_random_uuid(), 'g:' || $1, $2, 'm', $1::uuid, g, now() - g * interval '1 millisecond' from generate_series(1, 20000) g`,
      [busy, a.id],
    );
    await sql(s.env.DATABASE_URL!, 'analyze messages');
    const calls = 12;
    for (let i = 0; i < calls; i++) {
      const page = (await request(s.url, HistoryDocument, { conversation: { groupId: g }, last: 50 }, a.token)).history;
      expect(page.edges.map((e) => e.node.content)).toEqual(['m0', 'm1', 'm2']);
      const sidebar = (await request(s.url, ConversationsDocument, { first: 20 }, a.token)).conversations;
      expect(sidebar.edges.length).toBeGreaterThanOrEqual(2);
      expect((await request(s.url, MeDocument, {}, a.token)).me?.id).toBe(a.id);
    }
    const rows: PreparedRow[] = await s.database.orm.em.fork().getConnection().execute(
      "select statement, generic_plans::int, custom_plans::int from pg_prepared_statements where name like 'parley_%'",
    );
    const of = (needle: string) => {
      const found = rows.filter((r) => r.statement.includes(needle));
      expect(found).toHaveLength(1);
      return found[0];
    };
    // PostgreSQL tries five custom plans, then keeps the generic one when it costs no more: a
    // statement it could not cost (`limit $n`) was planned afresh on every one of the calls.
    for (const r of [of("(m.conversation_key, m.created_at) > ((select $1::text), '-infinity')"), of('union all'), of('from users where id = any(')]) {
      expect(r.custom_plans).toBeLessThanOrEqual(5);
      expect(r.generic_plans).toBeGreaterThanOrEqual(calls - 5);
    }

    // Each row count written in is a statement (and a plan) of its own on every connection: page
    // sizes share a few, and each page still has exactly its size.
    const sizes = [1, 2, 5, 10, 11, 15, 20, 30, 49, 50, 77, 100];
    for (const last of sizes) {
      const page = (await request(s.url, HistoryDocument, { conversation: { groupId: busy }, last }, a.token)).history;
      expect([last, page.edges.length, page.pageInfo.hasPreviousPage]).toEqual([last, last, true]);
    }
    const history: PreparedRow[] = await s.database.orm.em.fork().getConnection().execute(
      "select statement, generic_plans::int, custom_plans::int from pg_prepared_statements where name like 'parley_%' and statement like '%(m.conversation_key, m.created_at) > ((select $1::text), ''-infinity'')%'",
    );
    expect(history.map((r) => /limit (\d+)\) m\n/.exec(r.statement)?.[1]).sort()).toEqual(['101', '11', '21', '51']);
  });

  it('should keep the generic plan for pages of the conversation that holds most of the messages', async () => {
    const s = await createTestServer({ DB_POOL_MAX: '1' });
    const a = await signup(s.url);
    const busy = await groupWith(s.url, a, 'Most messages', []);
    await sql(
      s.env.DATABASE_URL!,
      `insert into messages (id, conversation_key, sender_id, content, group_id, seq, created_at)
       select gen_random_uuid(), 'g:' || $1, $2, 'm' || g, $1::uuid, g, now() - g * interval '1 millisecond' from generate_series(1, 20000) g`,
      [busy, a.id],
    );
    // And other conversations, all with keys before its own (of no group: history never reads them):
    // with the key written in, the statistics then costed its page's range at one row.
    await sql(
      s.env.DATABASE_URL!,
      `insert into messages (id, conversation_key, sender_id, content, seq, created_at)
       select gen_random_uuid(), 'g:00000000' || c, $1, 'o', g, now() - g * interval '1 millisecond' from (select gen_random_uuid()::text as c from generate_series(1, 400)) k, generate_series(1, 25) g`,
      [a.id],
    );
    await sql(s.env.DATABASE_URL!, 'analyze messages');
    // A custom plan costed at one row is always cheaper than the generic one: planned on every call.
    const calls = 12;
    for (let i = 0; i < calls; i++) {
      const page = (await request(s.url, HistoryDocument, { conversation: { groupId: busy }, last: 50 }, a.token)).history;
      expect(page.edges.map((e) => e.node.content)).toEqual(Array.from({ length: 50 }, (_, k) => `m${50 - k}`));
      const older = (await request(s.url, HistoryDocument, { conversation: { groupId: busy }, last: 50, before: page.edges[0].cursor }, a.token)).history;
      expect(older.edges[49].node.content).toBe('m51');
    }
    const rows: PreparedRow[] = await s.database.orm.em.fork().getConnection().execute(
      "select statement, generic_plans::int, custom_plans::int from pg_prepared_statements where name like 'parley_%' and statement like '%(m.conversation_key, m.created_at%' and statement like '%limit 51) m%'",
    );
    expect(rows).toHaveLength(2);
    for (const r of rows) {
      expect(r.custom_plans).toBeLessThanOrEqual(5);
      expect(r.generic_plans).toBeGreaterThanOrEqual(calls - 5);
    }
  });
});

describe('prepared sends', () => {
  it('should plan a send that mentions someone once per connection, not on every call', async () => {
    const s = await createTestServer({ DB_POOL_MAX: '1' });
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const g = await groupWith(s.url, a, 'Mentions', [b]);
    // Statistics of a used database, as above: on a nearly empty one any plan looks cheap.
    await crowd(s.env.DATABASE_URL!);
    const calls = 12;
    for (let i = 0; i < calls; i++) await sendMessage(s.url, a.token, { groupId: g, content: `look @${b.username} ${i}` });
    const rows: PreparedRow[] = await s.database.orm.em.fork().getConnection().execute(
      "select statement, generic_plans::int, custom_plans::int from pg_prepared_statements where name like 'parley_%' and statement like '%insert into message_mentions%'",
    );
    expect(rows).toHaveLength(1);
    // A list of names the planner could see (one name) made every custom plan look cheaper than
    // the generic one: 12 custom plans of 12, each planned at the call (0.9-2 ms).
    expect(rows[0].custom_plans).toBeLessThanOrEqual(5);
    expect(rows[0].generic_plans).toBeGreaterThanOrEqual(calls - 5);
  });

  it('should plan a batch of sends, and of replies, once per connection, not on every batch', async () => {
    const s = await createTestServer({ DB_POOL_MAX: '1' });
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const groups: string[] = [];
    for (let i = 0; i < 4; i++) groups.push(await groupWith(s.url, a, `Batched ${i}`, [b]));
    const roots: string[] = [];
    for (const g of groups) roots.push((await sendMessage(s.url, a.token, { groupId: g, content: 'root' })).id);
    await crowd(s.env.DATABASE_URL!);
    // Sends that arrive together go in one statement (group commit): 16 at once, 12 times over.
    for (let i = 0; i < 12; i++) {
      await Promise.all(
        groups.flatMap((g, k) =>
          [a, b].flatMap((u) => [
            sendMessage(s.url, u.token, { groupId: g, content: `m${i}` }),
            sendMessage(s.url, u.token, { groupId: g, content: `r${i}`, parentId: roots[k] }),
          ]),
        ),
      );
    }
    const rows: PreparedRow[] = await s.database.orm.em.fork().getConnection().execute(
      "select statement, generic_plans::int, custom_plans::int from pg_prepared_statements where name like 'parley_%' and statement like 'with b as (select * from unnest(%'",
    );
    // The send batch and the reply batch, each run often enough to tell.
    expect(rows).toHaveLength(2);
    for (const r of rows) {
      expect(r.generic_plans + r.custom_plans).toBeGreaterThanOrEqual(8);
      // The arrays' lengths, read, made every custom plan cost below the generic one: PostgreSQL
      // planned each batch at the call (0.8 ms), 619 custom plans of 619 in a bench run.
      expect(r.custom_plans).toBeLessThanOrEqual(5);
    }
  });
});

describe("batches' generic plans", () => {
  it("should probe group_members per message in a batch's gate and mentions, and groups per conversation, never hash a whole table", async () => {
    const s = await createTestServer();
    const [a, b] = [await signup(s.url), await signup(s.url)];
    const groups: string[] = [];
    for (let i = 0; i < 3; i++) groups.push(await groupWith(s.url, a, `Plans ${i}`, [b]));
    // Sends that arrive together, naming a member, until two went in one statement (a loaded
    // machine may answer each before the next arrives): the mention batch's statement is prepared.
    const mentionBatches = () => preparedTexts().filter((t) => t.startsWith('with b as (select * from unnest(') && t.includes('mention_names'));
    for (let i = 0; i < 10 && !mentionBatches().length; i++) {
      await Promise.all(groups.flatMap((g) => [a, b, a, b].map((u, k) => sendMessage(s.url, u.token, { groupId: g, content: `hey @${(u === a ? b : a).username} ${i}.${k}` }))));
    }
    const texts = mentionBatches();
    expect(texts.length).toBeGreaterThanOrEqual(1);
    // And the plain batch's statement, whose sends name no one.
    const plainBatches = () => preparedTexts().filter((t) => t.startsWith('with b as (select * from unnest(') && t.includes('insert into messages') && !t.includes('mention_names'));
    for (let i = 0; i < 10 && !plainBatches().length; i++) {
      await Promise.all(groups.flatMap((g) => [a, b, a, b].map((u, k) => sendMessage(s.url, u.token, { groupId: g, content: `plain ${i}.${k}` }))));
    }
    const plain = plainBatches();
    expect(plain.length).toBeGreaterThanOrEqual(1);
    // And replies kept in their threads, one in each group at once (a batch takes one a conversation).
    const roots = await Promise.all(groups.map((g) => sendMessage(s.url, a.token, { groupId: g, content: 'a thread' })));
    const replyBatches = () => preparedTexts().filter((t) => t.startsWith('with b as (select * from unnest(') && t.includes(' tp as ('));
    for (let i = 0; i < 10 && !replyBatches().length; i++) {
      await Promise.all(groups.flatMap((g, k) => [a, b].map((u) => sendMessage(s.url, u.token, { groupId: g, parentId: roots[k].id, content: `reply ${i}` }))));
    }
    const replies = replyBatches();
    expect(replies.length).toBeGreaterThanOrEqual(1);
    // Memberships of a used database, analyzed: with a few thousand rows and a batch assumed to
    // hold 10 messages, PostgreSQL hashed all of group_members for the mentions' test.
    await crowd(s.env.DATABASE_URL!);
    await sql(
      s.env.DATABASE_URL!,
      `insert into group_members (id, group_id, user_id, role, joined_at) select gen_random_uuid(), $1, u.id, 'MEMBER', now() from users u
        where not exists (select 1 from group_members gm where gm.group_id = $1 and gm.user_id = u.id) limit 12000`,
      [groups[0]],
    );
    await sql(s.env.DATABASE_URL!, 'analyze group_members');
    // A thousand groups, analyzed: a batch assumed to hold 10 messages read all of them for their
    // names (a hash join) rather than probe one per conversation.
    await sql(
      s.env.DATABASE_URL!,
      `insert into groups (id, name, owner_id, is_private, is_lobby, member_count, created_at) select gen_random_uuid(), 'crowd ' || i, $1, true, false, 1, now() from generate_series(1, 1000) i`,
      [a.id],
    );
    await sql(s.env.DATABASE_URL!, 'analyze groups');
    for (const text of [...texts, ...plain, ...replies]) {
      const plan = await explainGeneric(s.env.DATABASE_URL!, text);
      expect(plan).not.toMatch(/Seq Scan on group_members|Seq Scan on groups|hashed SubPlan/);
      expect(plan).toMatch(/group_members/);
    }
  });
});

/** The generic plan of a prepared statement text (`$n` parameters), as EXPLAIN shows it. */
async function explainGeneric(databaseUrl: string, text: string): Promise<string> {
  const n = Math.max(...[...text.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(`prepare probe as ${text}`);
    await client.query('set plan_cache_mode = force_generic_plan');
    const rows = (await client.query(`explain execute probe(${Array.from({ length: n }, () => 'null').join(', ')})`)).rows;
    return rows.map((r) => r['QUERY PLAN']).join('\n');
  } finally {
    await client.end();
  }
}

describe('rows read as arrays', () => {
  // The name each column comes back under: its alias, or the column's own name.
  const namesOf = (columns: string) => columns.split(',').map((c) => c.trim().split(/\s+as\s+|\./).pop()!);

  it('should put each of COLUMNS in its own field (a history page reads them by position)', () => {
    const names = namesOf(COLUMNS);
    expect(names).toHaveLength(24);
    for (let i = 0; i < names.length; i++) {
      const row = rowOf(names.map((_, j) => (j === i ? 'here' : null))) as unknown as Record<string, unknown>;
      expect(Object.keys(row).sort()).toEqual([...names].sort());
      expect(row).toEqual({ ...Object.fromEntries(names.map((n) => [n, null])), [names[i]]: 'here' });
    }
  });

  it("should give a group page's rows every field inside a transaction too, where rows come as knex reads them", async () => {
    const s = await createTestServer();
    const a = await signup(s.url);
    const g = await groupWith(s.url, a, 'In a transaction', []);
    await sendMessage(s.url, a.token, { groupId: g, content: 'kept whole' });
    const read = (em: any) => messageRepository.page(em, `g:${g}`, { direction: 'backward', cursor: null, limit: 10, groupId: g });
    const outside = await read(s.database.orm.em.fork());
    const inside = await s.database.orm.em.fork().transactional((tem) => read(tem));
    for (const rows of [outside, inside]) {
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ content: 'kept whole', conversation_key: `g:${g}`, group_id: g, project_id: null, recipient_id: null });
    }
  });

  it('should read a group page as COLUMNS reads it, with what its rows share filled in, in one shape', () => {
    const all = namesOf(COLUMNS);
    const names = namesOf(GROUP_COLUMNS);
    const shared = { conversation_key: 'g:x', group_id: 'x', project_id: null, recipient_id: null };
    expect(all.filter((n) => !names.includes(n))).toEqual(Object.keys(shared));
    for (let i = 0; i < names.length; i++) {
      const row = rowOf(names.map((_, j) => (j === i ? 'here' : null)), { key: 'g:x', groupId: 'x' }) as unknown as Record<string, unknown>;
      expect(Object.keys(row)).toEqual(Object.keys(rowOf(all.map(() => null))));
      expect(row).toEqual({ ...Object.fromEntries(all.map((n) => [n, null])), ...shared, [names[i]]: 'here' });
    }
  });
});

describe("the server's sessions", () => {
  it('should run without JIT and with the statement timeout, on every pooled connection', async () => {
    const s = await createTestServer({ DB_POOL_MAX: '2', DB_STATEMENT_TIMEOUT: '1.5s' });
    const conn = () => s.database.orm.em.fork().getConnection();
    // Two at once: each on a connection of its own.
    const settings = await Promise.all(
      [0, 1].map(() => conn().execute<{ jit: string; timeout: string; pid: number }[]>("select current_setting('jit') as jit, current_setting('statement_timeout') as timeout, pg_backend_pid() as pid, pg_sleep(0.05)")),
    );
    expect(new Set(settings.map(([r]) => r.pid)).size).toBe(2);
    for (const [r] of settings) expect([r.jit, r.timeout]).toEqual(['off', '1500ms']);
    // A statement costed far above jit_above_cost (100,000) is planned without any.
    const [plan] = await conn().execute<{ 'QUERY PLAN': { Plan: { 'Total Cost': number }; JIT?: unknown }[] }[]>(
      'explain (format json) select count(*) from generate_series(1, 10) a, generate_series(1, 1000) b, generate_series(1, 1000) c',
    );
    expect(plan['QUERY PLAN'][0].Plan['Total Cost']).toBeGreaterThan(100_000);
    expect(plan['QUERY PLAN'][0].JIT).toBeUndefined();
  });
});

describe('name searches', () => {
  it('should find names by their trigram indexes, not by reading every account and group', async () => {
    const s = await createTestServer();
    await crowd(s.env.DATABASE_URL!);
    await sql(s.env.DATABASE_URL!, `insert into groups (id, name, is_private, is_lobby, member_count, created_at) select gen_random_uuid(), 'Crowd room ' || i, false, false, 0, now() from generate_series(1, 2000) i`);
    await sql(s.env.DATABASE_URL!, 'analyze groups');
    const a = await signup(s.url);
    const needle = `crowd_4242_${process.pid}`;
    const found = await request(s.url, UsersDocument, { search: needle }, a.token);
    expect(found.users.edges.map((e) => e.node.username)).toEqual([needle]);
    // Scans priced out and bitmaps the only way in: a pattern no index serves is still read by
    // scanning (the planner picks these over a scan from some 50,000 rows; the crowd is smaller).
    const plan = async (text: string) => {
      const client = new pg.Client({ connectionString: s.env.DATABASE_URL });
      await client.connect();
      try {
        await client.query('set enable_seqscan = off');
        await client.query('set enable_indexscan = off');
        return (await client.query<{ 'QUERY PLAN': string }>(`explain ${text}`)).rows.map((r) => r['QUERY PLAN']).join('\n');
      } finally {
        await client.end();
      }
    };
    const users = await plan(`select id from users where deleted_at is null and (parley_fold(username) like parley_fold('%${needle}%') or parley_fold(display_name) like parley_fold('%${needle}%'))`);
    expect(users).toMatch(/users_username_folded/);
    expect(users).toMatch(/users_display_name_folded/);
    expect(await plan(`select id from groups g where parley_fold(g.name) like parley_fold('%room 1234%')`)).toMatch(/groups_name_folded/);
  });
});
