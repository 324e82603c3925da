import type { Socket } from 'node:net';
import WebSocket from 'ws';

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

const senderFrame = (WebSocket as unknown as { Sender?: { frame?(data: Buffer, o: object): Buffer[] } }).Sender?.frame;

/** One unmasked, final text frame carrying `payload`; undefined where ws offers no framing (then sends are ordinary). */
export function textFrame(payload: Buffer): Buffer | undefined {
  return senderFrame && Buffer.concat(senderFrame(payload, { fin: true, rsv1: false, opcode: 1, mask: false, readOnly: false }));
}

/** One graphql-transport-ws `next` message, as bytes and as a ready WebSocket frame. */
export interface NextFrame {
  payload: Buffer;
  framed: Buffer | undefined;
}

/** The `next` message of operation `id` around a serialized execution result. */
export function nextFrame(id: string, result: string): NextFrame {
  const payload = Buffer.from(`{"id":${JSON.stringify(id)},"type":"next","payload":${result}}`);
  return { payload, framed: textFrame(payload) };
}

/** Writes a frame built by textFrame, or sends `payload` the ordinary way where that is not safe. */
export function writeFrame(socket: WebSocket, frame: Buffer | undefined, payload: Buffer): void {
  const raw = socket as unknown as SocketInternals;
  if (frame && raw._socket && raw._sender?._state === 0) raw._socket.write(frame);
  else socket.send(payload, { binary: false });
}
