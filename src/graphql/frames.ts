import type { Socket } from 'node:net';
import type WebSocket from 'ws';

/**
 * Pre-framed text messages for fan-out. ws frames every send anew (a header, then a writev of
 * header and payload per socket); an event written to thousands of sockets can share one
 * encoded frame and cost one plain write each. Only while nothing is queued in ws's sender (a
 * frame must not pass one still being compressed); any other socket gets an ordinary send. An
 * uncompressed frame (RSV1 clear) is valid on a socket that negotiated permessage-deflate too,
 * and the server negotiates none (ws.transport.ts).
 */

interface SenderInternals {
  _state?: number;
}
interface SocketInternals {
  _socket?: Socket;
  _sender?: SenderInternals;
}

/** One graphql-transport-ws `next` message: a ready WebSocket frame, and its payload (a view of the frame's bytes). */
export interface NextFrame {
  payload: Buffer;
  framed: Buffer;
}

/**
 * The `next` message of operation `id` around a serialized execution result, framed once: an
 * unmasked, final text frame (RFC 6455 5.2: FIN and opcode 1, then the length in 1, 3 or 9
 * bytes) written with the message into one buffer.
 */
export function nextFrame(id: string, result: string): NextFrame {
  const text = `{"id":${JSON.stringify(id)},"type":"next","payload":${result}}`;
  const length = Buffer.byteLength(text);
  const head = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const framed = Buffer.allocUnsafe(head + length);
  framed[0] = 0x81;
  if (head === 2) framed[1] = length;
  else if (head === 4) {
    framed[1] = 126;
    framed.writeUInt16BE(length, 2);
  } else {
    framed[1] = 127;
    framed.writeBigUInt64BE(BigInt(length), 2);
  }
  framed.write(text, head);
  return { payload: framed.subarray(head), framed };
}

/** Writes a frame built by nextFrame, or sends `payload` the ordinary way where that is not safe. */
export function writeFrame(socket: WebSocket, frame: Buffer, payload: Buffer): void {
  const raw = socket as unknown as SocketInternals;
  if (raw._socket && raw._sender?._state === 0) raw._socket.write(frame);
  else socket.send(payload, { binary: false });
}

/**
 * A socket whose keep-alive ping waits for its next frame (see serveTransport): a busy socket's
 * ping then leaves in the frame's write instead of a write of its own.
 */
export interface PingCarrier {
  pingDue?: boolean;
}

/** Sends the socket's waiting ping, if any (inside `corked`, with what follows). */
export function carryPing(socket: WebSocket & PingCarrier): void {
  if (!socket.pingDue) return;
  socket.pingDue = false;
  socket.ping();
}

/** Runs `write` with the socket's TCP stream corked: what it sends leaves in one syscall. */
export function corked(socket: WebSocket, write: () => void): void {
  const raw = (socket as unknown as SocketInternals)._socket;
  raw?.cork();
  write();
  raw?.uncork();
}
