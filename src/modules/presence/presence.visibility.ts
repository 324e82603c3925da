import type { ContactIndex } from './presence.contacts';

/** PRESENCE_VISIBILITY: who sees a user's presence besides themselves. */
export type PresenceMode = 'everyone' | 'contacts';

/**
 * A rule that hides one user's presence from another, on top of the mode and HIDDEN (safety's
 * block plugs in here).
 */
export interface HidingRule {
  /**
   * True when `viewerId` must not see `subjectId`. Synchronous and cheap: it runs for every
   * delivery of every transition (keep what it needs in memory for the users connected here).
   */
  hides(viewerId: string, subjectId: string): boolean;
  /** Every user it hides from `viewerId` (few), for onlineUsers' totalCount in everyone mode. */
  hiddenFrom(viewerId: string): Promise<Iterable<string>>;
}

/** Per operation: the viewer's contacts, loaded once however many users the response shows. */
export interface VisibilityCache {
  contacts?: Promise<ReadonlySet<string>>;
}

/**
 * Who may see whose presence: the one rule (maySee), reused by userStatus, User.status and
 * User.lastSeenAt (through the presence loader), onlineUsers and its totalCount, and the
 * presenceChanged filter. A user others may not see reads as OFFLINE with no lastSeenAt.
 */
export class PresenceVisibility {
  private readonly rules: HidingRule[] = [];

  constructor(
    readonly mode: PresenceMode,
    /** Contacts mode: the contacts of the users connected here. */
    readonly contacts: ContactIndex | undefined,
    /** A viewer's contacts from the database (a viewer not connected here). */
    private readonly loadContacts: (viewerId: string) => Promise<ReadonlySet<string>>,
  ) {}

  /** Adds a rule that hides a user from another (e.g. a block), in both modes. */
  addRule(rule: HidingRule): void {
    this.rules.push(rule);
  }

  /**
   * THE rule. A user always sees themselves; nobody else sees a HIDDEN user; then the hiding rules;
   * then `everyone` sees everyone, and `contacts` only contacts (asked last, and only then).
   */
  maySee(viewerId: string | null, subjectId: string, hidden: boolean, isContact: () => boolean): boolean {
    if (viewerId === subjectId) return true;
    if (hidden || viewerId === null) return false;
    for (const rule of this.rules) if (rule.hides(viewerId, subjectId)) return false;
    return this.mode === 'everyone' || isContact();
  }

  /** The users the hiding rules keep from the viewer (empty without rules). */
  async hiddenFrom(viewerId: string): Promise<Set<string>> {
    const out = new Set<string>();
    for (const rule of this.rules) for (const u of await rule.hiddenFrom(viewerId)) out.add(u);
    return out;
  }

  /** For queries: whether the viewer may see each subject (`hidden` as the store says, in the same order). */
  async visible(viewerId: string | null, subjectIds: readonly string[], hidden: readonly boolean[], cache: VisibilityCache = {}): Promise<boolean[]> {
    let contacts: ReadonlySet<string> | undefined;
    if (this.mode === 'contacts' && viewerId && subjectIds.some((s, i) => s !== viewerId && !hidden[i])) contacts = await this.contactsOf(viewerId, cache);
    return subjectIds.map((s, i) => this.maySee(viewerId, s, hidden[i], () => !!contacts?.has(s)));
  }

  /**
   * For the subscription filter (synchronous: the viewer is connected here, their contacts in
   * memory). HIDDEN users' transitions are not published, so a transition that arrives is not hidden.
   */
  sees(viewerId: string, subjectId: string): boolean {
    return this.maySee(viewerId, subjectId, false, () => !!this.contacts?.isContact(viewerId, subjectId));
  }

  /** The viewer's contacts (themselves included): from this instance's index when connected here, else the database. */
  contactsOf(viewerId: string, cache: VisibilityCache = {}): Promise<ReadonlySet<string>> {
    const local = this.contacts?.contactsOf(viewerId);
    if (local) return Promise.resolve(local);
    return (cache.contacts ??= this.loadContacts(viewerId).then((c) => new Set(c).add(viewerId)));
  }
}
