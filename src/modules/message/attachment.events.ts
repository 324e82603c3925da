import type { EntityManager } from '@mikro-orm/postgresql';
import { LRUCache } from 'lru-cache';
import type { Env } from '../../config/env';
import { PayloadTooLargeError } from '../../shared/errors';

/** How long an event's executions share a loaded file. */
const SHARED_MS = 10_000;

/** The base64 strings kept for events in flight (their length, in characters). */
const KEPT_CHARS = 32 * 1024 * 1024;

/**
 * `Attachment.base64` in subscriptions. An event is executed once per subscription shape, and per
 * viewer for documents that read viewer-specific fields, so each execution that asked for the bytes
 * would load the file again: here they share one load and one base64 string, and only small files
 * go (a frame past the socket's buffer limit would close it as a slow reader); past that
 * PAYLOAD_TOO_LARGE, the file one `url` away. How many subscriptions of a user may ask for the bytes
 * is the fan-out's rule (FILE_SUBSCRIPTIONS_PER_USER).
 */
export class EventAttachments {
  /** The largest file whose bytes an event carries. */
  readonly maxBytes: number;
  private readonly loads: LRUCache<string, Promise<string>>;

  constructor(
    env: Pick<Env, 'WS_MAX_BUFFERED_BYTES'>,
    private readonly load: (em: EntityManager, attachmentId: string) => Promise<{ data: Buffer } | null>,
  ) {
    // Half the socket's buffer limit for the frame's base64 (4/3 of the bytes).
    this.maxBytes = Math.min(256 * 1024, Math.floor((env.WS_MAX_BUFFERED_BYTES * 3) / 8));
    this.loads = new LRUCache<string, Promise<string>>({ maxSize: KEPT_CHARS, ttl: SHARED_MS, ttlAutopurge: true });
  }

  /** The file's bytes, base64, for one execution of an event. */
  base64(em: EntityManager, file: { id: string; size: number }): Promise<string> {
    if (file.size > this.maxBytes) {
      throw new PayloadTooLargeError(`A subscription carries Attachment.base64 for files up to ${this.maxBytes} bytes; fetch this one by url, or with history.`, 'base64');
    }
    let loading = this.loads.get(file.id);
    if (!loading) {
      loading = this.load(em, file.id).then((f) => (f ? f.data.toString('base64') : ''));
      // A failed load is not kept: the next execution tries again.
      loading.catch(() => this.loads.delete(file.id));
      // Measured by its base64 length.
      this.loads.set(file.id, loading, { size: Math.max(1, Math.ceil(file.size / 3) * 4) });
    }
    return loading;
  }
}
