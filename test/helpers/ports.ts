import net from 'node:net';

// Test servers listen below the kernel's ephemeral range (32768+): a port picked there can be taken
// at any moment by an outgoing connection of this busy machine.
const LOW = 10_000;
const HIGH = 32_000;

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * The first of `count` consecutive free ports (and, with `busOffset`, the ports that far above
 * them too, as a Redis Cluster node's bus needs), all below the ephemeral range.
 */
export async function sparePorts(count = 1, busOffset = 0): Promise<number> {
  const top = HIGH - busOffset - count;
  for (let attempt = 0; attempt < 200; attempt++) {
    const first = LOW + Math.floor(Math.random() * (top - LOW));
    const wanted = Array.from({ length: count }, (_, i) => first + i);
    if (busOffset) wanted.push(...wanted.map((p) => p + busOffset));
    if ((await Promise.all(wanted.map(isFree))).every(Boolean)) return first;
  }
  throw new Error(`no ${count} free ports between ${LOW} and ${HIGH}`);
}
