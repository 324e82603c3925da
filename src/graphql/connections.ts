/**
 * Live realtime connections per user on this instance, WebSockets and SSE streams together, so
 * WS_MAX_SOCKETS_PER_USER caps both and mixing transports doesn't double it. A count is all the
 * limit needs (a connection lives on one instance, so memory is enough).
 */
export class UserConnections {
  private readonly counts = new Map<string, number>();

  constructor(private readonly max: number) {}

  /** Counts one more connection of `userId`; false, and nothing counted, when the user is at the limit. */
  open(userId: string): boolean {
    const mine = this.counts.get(userId) ?? 0;
    if (mine >= this.max) return false;
    this.counts.set(userId, mine + 1);
    return true;
  }

  /** Releases one counted by open(). */
  close(userId: string): void {
    const mine = (this.counts.get(userId) ?? 1) - 1;
    if (mine > 0) this.counts.set(userId, mine);
    else this.counts.delete(userId);
  }
}
