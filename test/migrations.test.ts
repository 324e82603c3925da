import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrationsList } from '../src/migrations';
import { runParley } from './helpers/process';
import { createTestServer, describeRedis } from './helpers/server';
import { gql, ok } from './helpers/graphql';
import { lobbyOf, signup } from './helpers/factories';
import { sql } from './helpers/db';
import { loadEnv } from '../src/config/env';
import { openDatabase } from '../src/core/database';
import { entities } from '../src/modules/entities';
import { createLogger } from '../src/shared/logger';

const ROOT = path.join(__dirname, '..');
const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT, encoding: 'utf8' }).trim();

/** The commit before the one that added the newest migration: the release that runs while it is applied. */
function previousRelease(): string | undefined {
  const newest = migrationsList[migrationsList.length - 1].name;
  try {
    // Along the first parents, a merge counts as the commit that added what its branch brought.
    const added = git('log', '--first-parent', '-m', '--no-renames', '--diff-filter=A', '--format=%H', '-1', '--', `src/migrations/${newest}.ts`);
    return added ? git('rev-parse', `${added}^`) : undefined;
  } catch {
    return undefined; // not a checkout, or a shallow one
  }
}

const SEND = 'mutation($g: ID!, $c: String!) { sendMessage(input: { groupId: $g, content: $c }) { id } }';
const HISTORY = 'query($g: ID!) { history(conversation: { groupId: $g }, last: 50) { edges { node { content } } } }';
const contents = async (url: string, token: string, groupId: string) => (await ok(gql(url, HISTORY, { g: groupId }, token))).history.edges.map((e: any) => e.node.content);

const release = previousRelease();
const describeWithHistory = release ? describeRedis : describe.skip;

describeWithHistory('migrations: expand, then contract', () => {
  let dir: string;
  let databaseUrl: string;
  const admin = () => new pg.Client({ connectionString: process.env.DATABASE_URL });

  beforeAll(async () => {
    // The previous release's sources, run as they are, on this checkout's node_modules.
    dir = mkdtempSync(path.join(os.tmpdir(), 'parley-previous-'));
    execFileSync('sh', ['-c', `git archive ${release} src package.json tsconfig.json | tar -x -C "${dir}"`], { cwd: ROOT });
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    // A database of its own, which the previous release creates at its schema.
    const url = new URL(process.env.DATABASE_URL!);
    const name = `${url.pathname.slice(1)}_expand`;
    const client = admin();
    await client.connect();
    await client.query(`drop database if exists "${name}" with (force)`);
    await client.query(`create database "${name}"`);
    await client.end();
    url.pathname = `/${name}`;
    databaseUrl = url.toString();
    // DROP DATABASE waits for a checkpoint, which other workers' writes can stretch past jest's 30 s.
  }, 120_000);

  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    const client = admin();
    await client.connect();
    await client.query(`drop database if exists "${new URL(databaseUrl).pathname.slice(1)}" with (force)`);
    await client.end();
  }, 120_000);

  it("should keep the previous release serving while the newest migration is applied under it", async () => {
    const env = { DATABASE_URL: databaseUrl };
    const old = runParley(env, { cwd: dir });
    const oldUrl = await old.listening;
    const alice = await signup(oldUrl);
    const lobby = await lobbyOf(oldUrl, alice.token);
    await ok(gql(oldUrl, SEND, { g: lobby, c: 'old, before' }, alice.token));
    const applied = async () => (await sql(databaseUrl, 'select name from mikro_orm_migrations order by id')).map((r) => r.name);
    expect(await applied()).not.toContain(migrationsList[migrationsList.length - 1].name);

    // The new version starts while the old one serves, and migrates the database under it.
    const next = await createTestServer(env, { clean: false });
    expect(await applied()).toEqual(migrationsList.map((m) => m.name));
    const bob = await signup(next.url);

    // The old release still signs up, sends and reads on the migrated schema, and each version reads the other's messages.
    const carol = await signup(oldUrl);
    await ok(gql(oldUrl, SEND, { g: lobby, c: 'old, after' }, carol.token));
    await ok(gql(next.url, SEND, { g: lobby, c: 'new' }, bob.token));
    await ok(gql(oldUrl, SEND, { g: lobby, c: 'old, last' }, alice.token));
    const all = ['old, before', 'old, after', 'new', 'old, last'];
    expect(await contents(oldUrl, alice.token, lobby)).toEqual(all);
    expect(await contents(next.url, bob.token, lobby)).toEqual(all);
    old.child.kill('SIGTERM');
    expect(await old.exited).toBe(0);
  }, 120_000);
});

/** An empty database of its own beside the suite's, and how to drop it. */
async function emptyDatabase(suffix: string): Promise<{ url: string; drop: () => Promise<void> }> {
  const url = new URL(process.env.DATABASE_URL!);
  const name = `${url.pathname.slice(1)}_${suffix}`;
  const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await admin.connect();
  await admin.query(`drop database if exists "${name}" with (force)`);
  await admin.query(`create database "${name}"`);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      await admin.query(`drop database if exists "${name}" with (force)`).catch(() => undefined);
      await admin.end();
    },
  };
}

describe('migrations: instances starting together', () => {
  it('should start two instances at once on an empty database, one migrating while the other waits its turn, an index built concurrently included', async () => {
    const { url, drop } = await emptyDatabase('together');
    try {
      // A waiting instance once held an open statement (pg_advisory_lock) that the other's CREATE
      // INDEX CONCURRENTLY waited for, while it waited for that instance's lock: stuck until the
      // statement timeout (15 s) failed one start (an outside probe, 4 of 4).
      const started = Date.now();
      const both = await Promise.all([0, 1].map(() => createTestServer({ DATABASE_URL: url, LOG_LEVEL: 'debug' }, { clean: false, captureLogs: true })));
      expect(Date.now() - started).toBeLessThan(15_000);
      // The one that migrated says so in one line; MikroORM's two a migration stay at trace, even at debug.
      const lines = both.flatMap((s) => s.logs);
      expect(lines.filter((l) => /^database migrated: \d+ migrations applied$/.test(String(l.json.msg)))).toHaveLength(1);
      expect(lines.filter((l) => /\[migrator\]/.test(String(l.json.msg)))).toEqual([]);
      expect((await sql(url, 'select name from mikro_orm_migrations order by id')).map((r) => r.name)).toEqual(migrationsList.map((m) => m.name));
      for (const s of both) expect((await signup(s.url)).token).toBeTruthy();
    } finally {
      await drop();
    }
  }, 60_000);
});

describe('migrations: a start cut short', () => {
  it("should record a migration in the transaction that applies it, so that a start cut between the two leaves it undone and the next start applies it", async () => {
    const { url: db, drop } = await emptyDatabase('cut');
    try {
      // The migrator's own table, as it creates it, refusing the first migration's record: the start
      // fails where a kill between the migration's commit and its record would have stopped it.
      await sql(db, `create table mikro_orm_migrations (id serial primary key, name varchar(255), executed_at timestamptz default current_timestamp)`);
      await sql(db, `create function refuse_record() returns trigger language plpgsql as $$ begin raise exception 'cut before the record'; end $$`);
      await sql(db, `create trigger refuse_record before insert on mikro_orm_migrations for each row when (new.name = '${migrationsList[0].name}') execute function refuse_record()`);
      await expect(createTestServer({ DATABASE_URL: db }, { clean: false })).rejects.toThrow(/cut before the record/);
      expect(await sql(db, "select typname from pg_type where typname = 'project_action_kind'")).toEqual([]);
      await sql(db, 'drop trigger refuse_record on mikro_orm_migrations');
      const s = await createTestServer({ DATABASE_URL: db }, { clean: false });
      expect((await sql(db, 'select name from mikro_orm_migrations order by id')).map((r) => r.name)).toEqual(migrationsList.map((m) => m.name));
      expect((await signup(s.url)).token).toBeTruthy();
      await s.dispose();
    } finally {
      await drop();
    }
  }, 60_000);
});

describe('migrations: the entities', () => {
  it('should leave nothing for `npm run migration:create` to write on a database the migrations made', async () => {
    // An outside probe: with no entity changed it wrote a migration dropping three tables and eight
    // indexes made by hand-written migrations (read markers, retired usernames, the name searches').
    const s = await createTestServer();
    const logger = createLogger({ LOG_LEVEL: 'silent', LOG_PRETTY: false });
    const db = await openDatabase(loadEnv({ DATABASE_URL: s.env.DATABASE_URL }), logger, { entities });
    try {
      // What the migrator diffs (migration-create.ts): the entities against the database, tables dropped too.
      const diff = await db.orm.schema.getUpdateSchemaMigrationSQL({ wrap: false, safe: false, dropTables: true });
      expect(diff.up.trim()).toBe('');
    } finally {
      await db.dispose();
    }
  });
});
