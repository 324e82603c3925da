/**
 * Where a V8 CPU profile (`node --cpu-prof`, e.g. bench:http's BENCH_PROFILE) spent its time:
 * self time by function, self time by file (a dependency's files by package), and inclusive time
 * of Parley's own functions (each counted once per sample, however deep it recurs).
 *
 *   node -r @swc-node/register bench/cpuprofile.ts <file.cpuprofile> [--last S] [--per N] [--top K]
 *
 * - --last S  only the last S seconds of the profile (a bench's measured rounds come last: the
 *             set-up before them, signups hashing passwords say, is left out).
 * - --drop S  leave out the last S seconds too (a bench's tear-down: sockets closing, say).
 * - --timeline  busy time per second of the whole profile, to find the window.
 * - --per N   also each figure in µs per operation, N operations in that window.
 * - --top K   rows per table. @default 30
 * - self time by owner: each sample charged to the first frame from the leaf up that is a
 *   dependency's or Parley's (a socket write to the library that wrote, Node's stream code to
 *   its caller): pg, ioredis, a src/ file...; GC and the VM's own work stay apart.
 * - --callers F  also where the self time of functions named F comes from: the first caller
 *             outside Node's own files and the native frames (a dependency's or Parley's).
 * Percentages are of the window's busy time: (idle) is left out of the total and shown apart.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function flag(name: string): number | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : undefined;
}

const root = path.resolve(__dirname, '..');

/** A file as short as it can be told: `src/…`, `pkg:file` for a dependency, `node:…` for Node's own. */
function fileOf(url: string): string {
  if (!url) return '(native)';
  const p = url.replace(/^file:\/\//, '');
  const nm = p.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = p.slice(nm + 'node_modules/'.length).split('/');
    const pkg = rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
    return `${pkg}:${rest.slice(rest[0].startsWith('@') ? 2 : 1).join('/')}`;
  }
  return p.startsWith(root) ? path.relative(root, p) : p;
}

const packageOf = (file: string) => (file.includes(':') && !file.startsWith('node:') ? file.slice(0, file.indexOf(':')) : file);

function main(): void {
  const file = process.argv[2];
  if (!file) throw new Error('usage: cpuprofile.ts <file.cpuprofile> [--last S] [--per N] [--top K]');
  const last = flag('--last');
  const per = flag('--per');
  const top = flag('--top') ?? 30;
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  // Each sample weighs the time until the next one.
  const at: number[] = [];
  let t = p.startTime;
  for (const d of p.timeDeltas) at.push((t += d));
  const to = p.endTime - (flag('--drop') ?? 0) * 1e6;
  const from = last === undefined ? -Infinity : to - last * 1e6;
  if (process.argv.includes('--timeline')) {
    const seconds = new Map<number, number>();
    for (let i = 0; i < p.samples.length; i++) {
      if (byId.get(p.samples[i])!.callFrame.functionName === '(idle)') continue;
      const s = Math.floor((p.endTime - at[i]) / 1e6);
      seconds.set(s, (seconds.get(s) ?? 0) + ((i + 1 < at.length ? at[i + 1] : p.endTime) - at[i]));
    }
    for (const [s, us] of [...seconds].sort((a, b) => b[0] - a[0])) process.stdout.write(`${String(s).padStart(4)} s before the end: busy ${((100 * us) / 1e6).toFixed(0)}%\n`);
  }
  const self = new Map<string, number>();
  const selfFile = new Map<string, number>();
  const selfPackage = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const callersOf = process.argv.includes('--callers') ? process.argv[process.argv.indexOf('--callers') + 1] : undefined;
  const callers = new Map<string, number>();
  const owners = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  for (let i = 0; i < p.samples.length; i++) {
    if (at[i] < from || at[i] >= to) continue;
    const w = (i + 1 < at.length ? at[i + 1] : p.endTime) - at[i];
    const leaf = byId.get(p.samples[i])!;
    if (leaf.callFrame.functionName === '(idle)') {
      idle += w;
      continue;
    }
    busy += w;
    const f = fileOf(leaf.callFrame.url);
    const fn = `${leaf.callFrame.functionName || '(anonymous)'} ${f}:${leaf.callFrame.lineNumber + 1}`;
    self.set(fn, (self.get(fn) ?? 0) + w);
    selfFile.set(f, (selfFile.get(f) ?? 0) + w);
    selfPackage.set(packageOf(f), (selfPackage.get(packageOf(f)) ?? 0) + w);
    let owner = leaf.callFrame.functionName.startsWith('(') ? leaf.callFrame.functionName : '(Node itself)';
    if (!leaf.callFrame.functionName.startsWith('(') || leaf.callFrame.functionName === '(anonymous)') {
      for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
        const nf = fileOf(byId.get(id)!.callFrame.url);
        if (nf === '(native)' || nf.startsWith('node:')) continue;
        owner = packageOf(nf);
        break;
      }
    }
    owners.set(owner, (owners.get(owner) ?? 0) + w);
    if (leaf.callFrame.functionName === callersOf) {
      let id: number | undefined = parent.get(leaf.id);
      const chain: string[] = [];
      for (; id !== undefined && chain.length < 3; id = parent.get(id)) {
        const n = byId.get(id)!;
        const nf = fileOf(n.callFrame.url);
        if (nf === '(native)' || nf.startsWith('node:')) continue;
        chain.push(`${n.callFrame.functionName || '(anonymous)'} ${nf}:${n.callFrame.lineNumber + 1}`);
      }
      const key = chain.join(' < ') || '(from Node itself)';
      callers.set(key, (callers.get(key) ?? 0) + w);
    }
    const seen = new Set<string>();
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const n = byId.get(id)!;
      const nf = fileOf(n.callFrame.url);
      if (!nf.startsWith('src/')) continue;
      const key = `${n.callFrame.functionName || '(anonymous)'} ${nf}:${n.callFrame.lineNumber + 1}`;
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + w);
    }
  }
  const line = (name: string, us: number) =>
    `${(((100 * us) / busy).toFixed(1) + '%').padStart(7)}${per ? `${(us / per).toFixed(1).padStart(9)} µs/op` : ''}  ${name}`;
  const table = (title: string, m: Map<string, number>, k = top) => {
    process.stdout.write(`\n${title}\n`);
    for (const [name, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, k)) process.stdout.write(`${line(name, us)}\n`);
  };
  process.stdout.write(
    `window ${((busy + idle) / 1e6).toFixed(2)} s: busy ${(busy / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s${per ? `; ${per} operations: ${(busy / per).toFixed(0)} µs busy per operation` : ''}\n`,
  );
  table('self time by owner (the first dependency or Parley file from the leaf up)', owners, Math.min(top, 30));
  table('self time by package / file group', selfPackage, Math.min(top, 25));
  table('self time by file', selfFile);
  table('self time by function', self);
  table("inclusive time of Parley's functions (src/)", inclusive);
  if (callersOf) table(`callers of ${callersOf}`, callers);
}

main();
