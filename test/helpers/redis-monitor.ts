import { once } from 'node:events';
import net from 'node:net';

/** One command Redis ran, as MONITOR tells it. */
export interface Monitored {
  /** `lua` for a command a script ran, else the client's address. */
  source: string;
  /** The command and its arguments (quotes and backslashes unescaped, other escapes as Redis wrote them). */
  args: string[];
}

const LINE = /^\+[\d.]+ \[\d+ ([^\]]+)\] (.*)$/;
const ARG = /"((?:[^"\\]|\\.)*)"/g;

/**
 * Redis's MONITOR on a socket of its own. ioredis's monitor() takes the command lines that come
 * in the same read as MONITOR's OK for replies to commands it never sent ("Command queue state
 * error") whenever Redis is busy, as it is while another jest worker runs.
 */
export async function monitorRedis(url: string, on: (command: Monitored) => void): Promise<{ close(): void }> {
  const u = new URL(url);
  const socket = net.connect(Number(u.port || 6379), u.hostname);
  await once(socket, 'connect');
  socket.setEncoding('latin1');
  let buffer = '';
  let started!: () => void;
  let refused!: (e: Error) => void;
  const ready = new Promise<void>((resolve, reject) => ((started = resolve), (refused = reject)));
  // AUTH answers first when the URL has a password: MONITOR runs from the OK after it.
  let oks = u.password ? 2 : 1;
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    for (let end = buffer.indexOf('\r\n'); end >= 0; end = buffer.indexOf('\r\n')) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (line === '+OK' && --oks === 0) started();
      else if (line.startsWith('-')) refused(new Error(`Redis refused MONITOR: ${line.slice(1)}`));
      const m = LINE.exec(line);
      if (m) on({ source: m[1], args: [...m[2].matchAll(ARG)].map((a) => a[1].replace(/\\(["\\])/g, '$1')) });
    }
  });
  socket.write(`${u.password ? `AUTH ${decodeURIComponent(u.password)}\r\n` : ''}MONITOR\r\n`);
  await ready;
  return { close: () => socket.destroy() };
}
