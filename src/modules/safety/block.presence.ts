import type { PresenceState } from '../presence/presence.service';

/** Presence as a blocker reads it: a user they block is OFFLINE and never seen. */
export function hidePresence(states: PresenceState[], blocked: ReadonlySet<string> | null | '' | undefined): PresenceState[] {
  if (!blocked || !blocked.size) return states;
  return states.map((s) => (blocked.has(s.userId) ? { userId: s.userId, status: 'OFFLINE', lastSeenAt: null } : s));
}
