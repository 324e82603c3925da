import type { EntityManager } from '@mikro-orm/postgresql';
import { LRUCache } from 'lru-cache';
import type { Env } from '../../config/env';
import { PayloadTooLargeError } from '../../shared/errors';
import { boundedLru } from '../../shared/lru';

/** How long an event's executions share a loaded file, and count a viewer's. */
const WINDOW_MS = 10_000;

/** The base64 strings kept for events in flight (their length, in characters). */
const KEPT_CHARS = 32 * 1024 * 1024;

/**
 * Executions of one event that may carry one file's bytes to one viewer: a client's few
 * documents, not the 20 sockets x 50 distinct shapes a user may hold (each a copy of the file a frame).
 */
export const FILE_EXECUTIONS_PER_VIEWER = 4;

/**
 * `Attachment.base64` in subscriptions. An event is executed once per subscription shape, and per
 * viewer for documents that read viewer-specific fields, so each execution that asked for the bytes
 * would load the file again (one user's 1,000 shapes loaded a 5 MiB file 1,000 times an event).
 * Here the executions of an event share one load and one base64 string; only small files go (a
 * frame larger than the socket's buffer limit would close it as a slow reader), and one viewer's
 * executions that carry one file are capped. Past either: PAYLOAD_TOO_LARGE, the file one `url` away.
 */
export class EventAttachments {
  /** The largest file whose bytes an event carries. */
  readonly maxBytes: number;
  private readonly loads: LRUCache<string, Promise<string>>;
  private readonly carried = boundedLru<string, number>({ max: 100_000, ttlMs: WINDOW_MS });

  constructor(
    env: Pick<Env, 'WS_MAX_BUFFERED_BYTES'>,
    private readonly load: (em: EntityManager, attachmentId: string) => Promise<{ data: Buffer } | null>,
  ) {
    // Half the socket's buffer limit for the frame's base64 (4/3 of the bytes).
    this.maxBytes = Math.min(256 * 1024, Math.floor((env.WS_MAX_BUFFERED_BYTES * 3) / 8));
    this.loads = new LRUCache<string, Promise<string>>({ maxSize: KEPT_CHARS, sizeCalculation: (_v, k) => Number(k.slice(k.indexOf(':') + 1)) || 1, ttl: WINDOW_MS });
  }

  /** The file's bytes, base64, for one execution of an event that reached `viewerId`. */
  base64(em: EntityManager, viewerId: string, file: { id: string; size: number }): Promise<string> {
    if (file.size > this.maxBytes) {
      throw new PayloadTooLargeError(`A subscription carries Attachment.base64 for files up to ${this.maxBytes} bytes; fetch this one by url, or with history.`, 'base64');
    }
    const mine = `${file.id}\u0000${viewerId}`;
    const n = (this.carried.get(mine) ?? 0) + 1;
    if (n > FILE_EXECUTIONS_PER_VIEWER) {
      throw new PayloadTooLargeError(`This file's bytes already went to ${FILE_EXECUTIONS_PER_VIEWER} of your subscriptions for this event; fetch it by url.`, 'base64');
    }
    this.carried.set(mine, n);
    // Keyed with its base64 length, the cache's measure of it.
    const key = `${file.id}:${Math.ceil(file.size / 3) * 4}`;
    let loading = this.loads.get(key);
    if (!loading) {
      loading = this.load(em, file.id).then((f) => (f ? f.data.toString('base64') : ''));
      // A failed load is not kept: the next event's execution tries again.
      loading.catch(() => this.loads.delete(key));
      this.loads.set(key, loading);
    }
    return loading;
  }
}
