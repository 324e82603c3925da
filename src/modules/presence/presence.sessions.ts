/** One session's value, linked to the user's next session. */
interface Entry<V> {
  session: string;
  value: V;
  next: Entry<V> | undefined;
}

/**
 * A value per (user, session). Presence keeps one for every user connected here, nearly all
 * with one session, so each user costs a list node instead of a Map of their sessions.
 */
export class BySession<V> {
  private readonly users = new Map<string, Entry<V>>();

  get(user: string, session: string): V | undefined {
    for (let e = this.users.get(user); e; e = e.next) if (e.session === session) return e.value;
    return undefined;
  }

  set(user: string, session: string, value: V): void {
    const head = this.users.get(user);
    for (let e = head; e; e = e.next) {
      if (e.session === session) {
        e.value = value;
        return;
      }
    }
    this.users.set(user, { session, value, next: head });
  }

  delete(user: string, session: string): void {
    let prev: Entry<V> | undefined;
    for (let e = this.users.get(user); e; prev = e, e = e.next) {
      if (e.session !== session) continue;
      if (prev) prev.next = e.next;
      else if (e.next) this.users.set(user, e.next);
      else this.users.delete(user);
      return;
    }
  }

  /** Forgets every session of `user`. */
  deleteUser(user: string): void {
    this.users.delete(user);
  }

  has(user: string): boolean {
    return this.users.has(user);
  }

  /** How many users have an entry. */
  get size(): number {
    return this.users.size;
  }

  /** The user's sessions. */
  *sessions(user: string): IterableIterator<string> {
    for (let e = this.users.get(user); e; e = e.next) yield e.session;
  }

  userIds(): IterableIterator<string> {
    return this.users.keys();
  }

  /** Every entry: user, session, value. */
  *entries(): IterableIterator<[string, string, V]> {
    for (const [user, head] of this.users) for (let e: Entry<V> | undefined = head; e; e = e.next) yield [user, e.session, e.value];
  }

  /** Removes every entry whose value `drop` says is no longer needed. */
  prune(drop: (value: V) => boolean): void {
    for (const [user, head] of this.users) {
      for (let e: Entry<V> | undefined = head; e; e = e.next) if (drop(e.value)) this.delete(user, e.session);
    }
  }
}
