/**
 * The one list of pub/sub topics and what each carries. Payloads are plain JSON
 * (ids and ISO dates), never ORM entities, so they cross Redis unchanged.
 */
export enum Topic {
  MessageAdded = 'parley.message.added',
  PresenceChanged = 'parley.presence.changed',
  ProjectAction = 'parley.project.action',
  GroupEvent = 'parley.group.event',
  /** A message edited, deleted or reacted to. */
  MessageEvent = 'parley.message.event',
  /** One or more members' conversation rows changed (a message, a read marker, a rename). */
  ConversationUpdated = 'parley.conversation.updated',
  ReadReceipt = 'parley.conversation.read',
  Typing = 'parley.conversation.typing',
  /** The account was logged in elsewhere. */
  SessionEvent = 'parley.session.event',
  /** A friend request sent, answered or withdrawn, or a friendship ended: to its users' own channels. */
  FriendEvent = 'parley.friend.event',
  /** A message was reported: to the group's owner and admins, or the instance's moderators. */
  ReportAdded = 'parley.report.added',
  /** Internal: membership changes that keep every instance's membership index current. */
  MembershipChanged = 'parley.membership.changed',
  /** Internal: users whose presence contacts changed (a friendship made or ended), so every instance reloads those connected to it. */
  ContactsChanged = 'parley.presence.contacts',
  /** Internal: revoked tokens, so every instance drops them from its cache and closes their sockets. */
  SessionsRevoked = 'parley.sessions.revoked',
  /** Internal: a user's block or mute changed, so every instance's in-memory lists of them stay current (modules/safety). */
  SafetyChanged = 'parley.safety.changed',
  /** Internal: a stopping instance's users whose last socket it just closed, for another to settle after the grace period. */
  PresenceHandoff = 'parley.presence.handoff',
  /** Internal: the presence store was found without its data while connected (FLUSHALL, an eviction): every instance tells it its sockets again. */
  PresenceStoreLost = 'parley.presence.store-lost',
  /** Internal: an instance closed a user's last socket there and will settle their OFFLINE after the grace period: activity elsewhere must reach the store meanwhile. */
  PresenceGrace = 'parley.presence.grace',
  /** Internal: a user's public profile changed (a rename; a deletion's placeholder), so every instance's copies of it (typing's) follow. */
  ProfileChanged = 'parley.user.profile',
}

export interface AttachmentPayload {
  id: string;
  fileName: string;
  mimeType: string;
  size: number;
}

/** A user's public profile as events carry it (presence is looked up by whoever needs it). */
export interface UserPayload {
  id: string;
  username: string;
  displayName: string | null;
  createdAt: string;
}

/** A message's pin: when, and by whom. */
export interface PinPayload {
  at: string;
  byId: string | null;
}

export interface MessagePayload {
  id: string;
  conversationKey: string;
  senderId: string;
  /** Carried so that delivering a message to any number of subscribers costs no user query. */
  sender?: UserPayload;
  content: string | null;
  attachment: AttachmentPayload | null;
  groupId: string | null;
  projectId: string | null;
  recipientId: string | null;
  clientMessageId: string | null;
  createdAt: string;
  editedAt?: string | null;
  deletedAt?: string | null;
  /** Absent on a new message (it has none). */
  reactions?: ReactionSummary[];
  /** In PINNED and UNPINNED events: the pin as it is now (null once unpinned). */
  pin?: PinPayload | null;
  /** A new message's position among all its conversation's messages, private ones included (see InOrder). */
  pos?: number;
  /** In a messageEvent: the message's version as told (see NewestVersions). */
  version?: number;
  /** A reply: its thread's root; `alsoInConversation` when it is in the timeline too. Absent: not a reply. */
  parentId?: string | null;
  alsoInConversation?: boolean;
  /** A root's thread as it stands (absent: no replies). */
  thread?: ThreadPayload;
  /** The users it mentions (absent: none, unless `version` is set: then read by whoever shows it). */
  mentions?: UserPayload[];
  /** Published again (a send's retry found it stored): delivered only where it was not yet (see EventOrder). */
  replay?: true;
  /** Published late, its first publish having failed (Redis away): delivered wherever its line has not passed it (see EventOrder). */
  resent?: true;
}

/** A root's thread counters, carried by THREAD_UPDATED so that no subscriber loads them. */
export interface ThreadPayload {
  replyCount: number;
  lastReplyAt: string | null;
  /** Its first participants, at most 5 (absent: not carried, loaded by who shows them). */
  participants?: UserPayload[];
}

/** One emoji on one message and who used it (reactedByMe is answered from the list). */
export interface ReactionSummary {
  emoji: string;
  userIds: string[];
}

export interface MessageEventPayload {
  kind: 'EDITED' | 'DELETED' | 'REACTIONS_CHANGED' | 'PINNED' | 'UNPINNED' | 'THREAD_UPDATED';
  message: MessagePayload;
  /** THREAD_UPDATED: who sent the reply (a blocker is not told of a blocked user's replies). */
  replySenderId?: string;
}

/** A conversation's head: [seq, lastMessageId, activityAt (ISO) | null] (see ConversationHead). */
export type HeadPayload = [number, string | null, string | null];

/**
 * One member's own state (see ConversationMember): [readSeq, privateSeq, privateRead,
 * lastReadMessageId, lastReadAt, privateMessageId, privateAt, joinedAt], times as ISO strings.
 */
export type MemberStatePayload = [number, number, number, string | null, string | null, string | null, string | null, string];

/**
 * A conversation changed: each receiver derives their own row from the head and their own state
 * (carried here when it changed, else as their instance knows it), so the event's size does not
 * grow with the conversation's members.
 */
export interface ConversationUpdatedPayload {
  conversationKey: string;
  kind: 'GROUP' | 'DIRECT' | 'PROJECT';
  groupId: string | null;
  projectId: string | null;
  /** Direct: the two users; each one's peer is the other. */
  userIds: string[] | null;
  /** Group name or project title; for a direct conversation, each user's title (the peer's name) by user id. */
  title: string | null;
  titles: Record<string, string> | null;
  /** The message that caused it, when one did. */
  message: MessagePayload | null;
  /** The head after the change; null while the conversation has no message. */
  head: HeadPayload | null;
  /** Members' own states, at most two: the sender (and a private message's recipient, a direct conversation's other user), a reader. */
  members: Record<string, MemberStatePayload>;
  /** Set when the change is theirs alone (a read marker, a private message); else it reaches every member. */
  only: string[] | null;
  /** An edit or deletion of `message`: it reaches only the receivers whose row it is the last message of. */
  lastMessageOnly?: boolean;
  /**
   * Sent on the `only` users' own channels, not the conversation's: a member who just joined, whose
   * instance may not have taken the conversation's channel yet when it is published.
   */
  viaUser?: boolean;
  /** The members `message` mentions, each with their unread mentions in the conversation after it. */
  mentionCounts?: Record<string, number>;
  /** The read position (seq) each of mentionCounts was counted from (absent: as the receiver knows it). */
  mentionReads?: Record<string, number>;
  /** A rename's place among its group's events or project's actions: an older rename's row arriving after a newer one's is dropped. */
  titleAt?: number;
}

/** Where a conversation's events go: its members, from the membership index (groups, projects) or the pair (direct). */
export interface ConversationScope {
  conversationKey: string;
  groupId: string | null;
  projectId: string | null;
  /** Direct: the two users. */
  userIds: string[] | null;
}

export interface ReadReceiptPayload extends ConversationScope {
  userId: string;
  lastReadMessageId: string;
  readAt: string;
  /**
   * The marked message's time (ms): a marker only moves forward, so an instance drops a receipt
   * older than one of the same user's it delivered (two marks close together, published in either order).
   */
  markedAt?: number;
  /** The marked message's sender: a member who blocks them is not told (the message is not in their view). */
  markedSenderId?: string;
  /** Only these members get it (a marker on a private message: its two users). */
  only?: string[];
  /** These members don't (they get the `only` one instead). */
  except?: string[];
}

export interface TypingPayload extends ConversationScope {
  userId: string;
  user: UserPayload;
  typing: boolean;
  /** Typing in a project's private thread: its two users (the typist first), the only ones told. */
  only?: string[] | null;
}

export interface FriendEventPayload {
  kind: 'REQUESTED' | 'ACCEPTED' | 'DECLINED' | 'CANCELLED' | 'REMOVED';
  /** The two users: a request's sender, then its addressee; for REMOVED, who ended it, then the other. */
  userIds: [string, string];
  /** Who is told: both, or one alone (the other of an account's deletion; the blocker of a block). */
  audience: string[];
  /** The request, as it stands after the change; null for REMOVED. */
  request: { id: string; status: 'PENDING' | 'ACCEPTED' | 'DECLINED'; createdAt: string } | null;
  at: string;
}

export interface SessionEventPayload {
  kind: 'NEW_LOGIN';
  userId: string;
  /** The new session: its own sockets are not told. */
  sessionId: string;
  at: string;
  userAgent: string | null;
}

export interface PresencePayload {
  userId: string;
  status: 'ONLINE' | 'OFFLINE';
  lastSeenAt: string | null;
  /** Local only: told to one viewer who just lost this user as a contact (they read OFFLINE from now on). */
  lost?: true;
  /** Local only: for this viewer's subscriptions alone (a contact gained or lost), those naming the user included. */
  to?: string;
  /** The user went HIDDEN: OFFLINE to everyone else; they still see themselves as they are. */
  hiding?: true;
  /** The user went VISIBLE again: ONLINE to everyone else; to themselves nothing changed. */
  showing?: true;
  /** The transition's version, from the step that decided it (see PresenceStore): an older one arriving after is dropped. Absent from a release before it, and on local-only payloads. */
  v?: number;
}

export interface ProjectActionEntryPayload {
  id: string;
  recipientId: string;
  kind: string;
  message: string;
  projectId: string;
  projectTitle: string;
  actorId: string | null;
  targetId: string | null;
  previousTitle: string | null;
  createdAt: string;
}

/** All entries produced by one project change, one per reader; each subscriber picks its own. */
export interface ProjectActionPayload {
  projectId: string;
  entries: ProjectActionEntryPayload[];
  /** The change's place among the project's (projects.action_seq, in commit order); absent from a release before it. */
  pos?: number;
  /** Published again once its instance was back on Redis, its first publish having failed (see PubSub.keepUnsent). */
  resent?: true;
}

export interface GroupEventPayload {
  kind:
    | 'CREATED'
    | 'RENAMED'
    | 'DELETED'
    | 'MEMBER_JOINED'
    | 'MEMBER_LEFT'
    | 'ROLE_CHANGED'
    | 'MEMBER_REMOVED'
    | 'MEMBER_BANNED'
    | 'INVITED'
    | 'OWNER_CHANGED'
    | 'SLOW_MODE_CHANGED';
  groupId: string;
  isPrivate: boolean;
  userId: string | null;
  /** Who receives it: null means everyone for CREATED of a public group, and for the lobby's events its members as each instance knows them, and the member concerned (a release before this told the lobby's departures to a list of every member). */
  audience: string[] | null;
  createdAt: string;
  /** The event's place among the group's (groups.event_seq, in commit order); absent from a release before it. */
  pos?: number;
  /** Published again once its instance was back on Redis, its first publish having failed (see PubSub.keepUnsent). */
  resent?: true;
  /**
   * RENAMED and SLOW_MODE_CHANGED: the group's name and slow mode as the change left it (its `group`
   * is read as it is delivered, and two changes close together both showed the second's value).
   */
  name?: string;
  slowModeSeconds?: number;
}

/** A new report, with who may see it (read when it was made). */
export interface ReportAddedPayload {
  id: string;
  messageId: string;
  reporterId: string;
  reason: string;
  createdAt: string;
  audience: string[];
}

export interface MembershipChangedPayload {
  scope: 'group' | 'project';
  id: string;
  /** Users who joined (true) or left (false). For a deleted group or project, every former member with false. */
  changes: { userId: string; member: boolean }[];
}

/** One change of one user's own safety settings: a block (`blockedId`, `blocked`) or a mute (`conversationKey`, `mutedUntil`: ISO, null when unmuted). */
export interface SafetyChangedPayload {
  userId: string;
  blockedId?: string;
  blocked?: boolean;
  conversationKey?: string;
  mutedUntil?: string | null;
  /** A mute's change: its version (see muteRepository.set); an older one than a change applied is dropped. */
  v?: number;
}

export interface ContactsChangedPayload {
  userIds: string[];
}

/** Users whose last socket a stopping instance closed at `closedAt` (see PresenceService.dispose). */
export interface PresenceHandoffPayload {
  instanceId: string;
  userIds: string[];
  closedAt: number;
  /** How many instances took it and stopped before settling it, passing it on (absent: none). */
  hops?: number;
}

/** A user's last socket on `instanceId` closed at `closedAt` (see PresenceService.socketClosed). */
export interface PresenceGracePayload {
  instanceId: string;
  userId: string;
  closedAt: number;
}

export interface SessionsRevokedPayload {
  userId: string;
  sessionIds: string[];
  tokenHashes: string[];
}

/**
 * Where a conversation's events travel between instances: one channel per group
 * (`parley.conv:g:<id>`), per project (`p:`) and per connected user (`u:`, their direct
 * conversations and their own sessions), carrying every topic that ChannelRoutes puts on channels, with the topic in
 * the envelope. An instance subscribes only to the channels its connected users need (see
 * MembershipIndex's watcher), so it never receives a message, edit, read receipt, typing or sidebar
 * update of a conversation it has no one in; and one conversation costs one subscription, not one
 * per topic.
 */
export const CONVERSATION_CHANNELS = 'parley.conv';

/**
 * What the pub/sub knows of conversation channels, given to it at start-up by the module that
 * owns conversation keys and channels (modules/conversation/conversation.keys.ts).
 */
export interface ChannelRoutes {
  /** Whether the topic travels on conversation channels (else on one topic-wide channel). */
  onChannels(topic: Topic): boolean;
  /**
   * Whether a topic on channels is also received on its topic-wide channel: presence in contacts
   * mode, whose sweep announces thousands of transitions per message there (see presence.store.ts).
   */
  alsoTopicWide?(topic: Topic): boolean;
  /** The channels an event of such a topic is published on. */
  channelsOf<T extends Topic>(topic: T, payload: TopicPayloads[T]): string[] | undefined;
  /** A user's own channel (their direct conversations and sessions). */
  userChannel(userId: string): string;
  /** The user whose own channel this is; undefined for a group's or project's. */
  userOfChannel(channel: string): string | undefined;
  /** The channel of a group's or project's message. */
  messageChannel(m: MessagePayload): string;
  /**
   * The conversation whose members an event changes (a membership change, a group's event): it
   * waits behind that conversation's messages still held in their line (see EventOrder.admit).
   */
  membershipLine?(topic: Topic, payload: unknown): string | undefined;
}

export interface TopicPayloads {
  [Topic.MessageAdded]: MessagePayload;
  [Topic.PresenceChanged]: PresencePayload;
  [Topic.ProjectAction]: ProjectActionPayload;
  [Topic.GroupEvent]: GroupEventPayload;
  [Topic.MessageEvent]: MessageEventPayload;
  [Topic.ConversationUpdated]: ConversationUpdatedPayload;
  [Topic.ReadReceipt]: ReadReceiptPayload;
  [Topic.Typing]: TypingPayload;
  [Topic.SessionEvent]: SessionEventPayload;
  [Topic.FriendEvent]: FriendEventPayload;
  [Topic.MembershipChanged]: MembershipChangedPayload;
  [Topic.ReportAdded]: ReportAddedPayload;
  [Topic.SessionsRevoked]: SessionsRevokedPayload;
  [Topic.SafetyChanged]: SafetyChangedPayload;
  [Topic.ContactsChanged]: ContactsChangedPayload;
  [Topic.PresenceHandoff]: PresenceHandoffPayload;
  /** `generation`: of the store's data as its finder wrote it again (absent from a release before it). */
  [Topic.PresenceStoreLost]: { instanceId: string; generation?: string | null };
  [Topic.PresenceGrace]: PresenceGracePayload;
  [Topic.ProfileChanged]: { user: UserPayload };
}
