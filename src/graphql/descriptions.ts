import {
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isObjectType,
  getNamedType,
  type GraphQLArgument,
  type GraphQLField,
  type GraphQLInputField,
  type GraphQLSchema,
} from 'graphql';

/**
 * What GraphiQL's docs pane shows of the schema, for a frontend developer: what each thing is, its
 * units and limits, and who may see it. Keyed by schema coordinate (`Type`, `Type.field`,
 * `Type.field(arg:)`, `Input.field`, `Enum.VALUE`).
 *
 * A description written in a decorator wins: these fill in what the decorators leave out, so that
 * the types' files stay as they were (and branches that change them merge without touching this
 * list). Connections, edges and paging arguments are described by rule, below. The schema lint
 * (test/schema-lint.test.ts) fails on anything left without a description, and on a key here that
 * names nothing.
 */
export const DESCRIPTIONS: Record<string, string> = {
  // ---- roots
  Query: 'Everything a client reads. All but `me` need a bearer token (UNAUTHENTICATED without one).',
  Mutation:
    'Everything a client changes. All but `signup` and `login` need a bearer token. Bad input is a typed error (`extensions.code`) and changes nothing.',
  Subscription:
    'Live events over WebSocket (graphql-transport-ws) or Server-Sent Events (`/graphql/stream`), for an authenticated connection. Each subscriber gets only what it may see, in the order `history` shows it.',

  // ---- users and accounts
  User: 'An account as everyone sees it. A deleted account stays as a tombstone sender named "Deleted user" and is no longer listed.',
  'User.id': 'A UUID, unique across every Node type.',
  'User.username': 'Unique, 3 to 32 characters: ASCII letters, digits, `_`, `.` or `-`; compared without case.',
  'User.displayName': 'What to show instead of the username when set: at most 64 characters. Null: show the username.',
  'User.createdAt': 'When the account signed up.',
  'User.status': 'ONLINE while the user has a live socket or stream, or used a token within PRESENCE_TIMEOUT (5 minutes).',
  'User.lastSeenAt': "The user's last activity; null for one never seen. Written to storage about once a minute, live while ONLINE.",
  AuthPayload: 'What signup and login answer: the bearer token and its account.',
  'AuthPayload.token':
    'Opaque bearer token: send it as `Authorization: Bearer <token>` over HTTP and SSE, and as `connectionParams.authorization` on the WebSocket. Only its holder sees it; keep it secret.',
  'AuthPayload.user': 'The account the token belongs to.',
  'AuthPayload.expiresAt': 'When the token stops working (TOKEN_TTL after login, 30 days by default); its sockets are then closed with 4403.',
  'Mutation.signup':
    'Creates an account and logs it in: the user joins the lobby and is ONLINE. At most RATE_LIMIT_SIGNUP (1000 an hour) per client address.',
  'Mutation.signup(username:)': 'Unique, 3 to 32 characters: ASCII letters, digits, `_`, `.` or `-`, not ending in `.` (CONFLICT when taken).',
  'Mutation.signup(password:)': '8 to 256 characters as shown (an accent typed apart is one character with its letter; compared composed, NFC, so either spelling signs in).',
  'Mutation.signup(displayName:)': 'At most 64 characters, counted as Unicode code points once composed (Unicode NFC, as it is kept: an accent typed apart joins its letter where Unicode has them as one; a flag counts as two); optional (blank: none); never one that reads as "Deleted user" or "Parley".',
  'Mutation.login(username:)': 'The account name, in any case.',
  'Mutation.login(password:)':
    "The account's password. Wrong passwords are limited per account and address (RATE_LIMITED beyond), and answer UNAUTHENTICATED whether or not the account exists.",
  'Mutation.updateProfile': "Changes the viewer's username and/or display name; a field left out stays as it is.",
  'Mutation.updateProfile(username:)': 'A new unique username (3 to 32 characters: ASCII letters, digits, `_`, `.` or `-`, not ending in `.`); CONFLICT when taken, or listed by LOBBY_ADMINS or MODERATORS.',
  'Mutation.updateProfile(displayName:)': 'A new display name (at most 64 characters, counted as Unicode code points, as at signup); null, or a blank one (empty or spaces only), clears it.',
  'Mutation.deleteAccount': "Deletes the viewer's account: tokens, friendships, memberships and project inbox go; past messages stay, sent by \"Deleted user\". True once done.",
  'Mutation.deleteAccount(password:)': "The account's current password, as a check: BAD_USER_INPUT (field password) when wrong, the token staying valid; RATE_LIMITED past LOGIN_MAX_FAILURES_PER_USER_IP wrong ones, as for login.",
  'Query.user': 'An account by id; null for a deleted account or an id that names none.',
  'Query.user(id:)': "The user's id.",
  'Query.users(search:)': 'Only accounts whose username or display name contains this text (case and, from 3 characters, accents aside); at most 100 characters.',
  'Query.users': 'Every account, alphabetically by username (case-insensitive, then by id).',
  'Query.userStatus': "One user's presence now (NOT_FOUND for an id that names no account).",
  'Query.userStatus(userId:)': "The user's id.",
  Presence: "A user's presence: ONLINE or OFFLINE, and when last seen.",
  'Presence.user': 'Whose presence this is.',
  'Presence.status': 'ONLINE or OFFLINE.',
  'Presence.lastSeenAt': 'Last activity; null for one never seen.',
  PresenceStatus: 'Whether a user is reachable live now.',
  'PresenceStatus.ONLINE': 'A live socket or stream, or activity within PRESENCE_TIMEOUT (5 minutes).',
  'PresenceStatus.OFFLINE': 'Logged out, gone PRESENCE_GRACE (5 s) after the last socket closed, or idle past PRESENCE_TIMEOUT.',
  'Mutation.heartbeat': 'Keeps the viewer ONLINE without a socket; call it now and then (well within PRESENCE_TIMEOUT, 5 minutes).',
  SessionEvent: "Something that happened to the viewer's own account elsewhere.",
  'SessionEvent.kind': 'What happened.',
  'SessionEvent.at': 'When it happened.',
  SessionEventKind: 'What happened to the account.',
  'SessionEventKind.NEW_LOGIN': 'The account was logged in on another device (`userAgent` says which browser or app, when it said).',

  // ---- friends
  FriendRequest: 'A request to become friends, seen by its two users only. Friends can message each other directly.',
  'FriendRequest.id': 'A UUID.',
  'FriendRequest.from': 'Who asked.',
  'FriendRequest.to': 'Who was asked.',
  'FriendRequest.status': 'PENDING until the asked user accepts or declines.',
  'FriendRequest.createdAt': 'When it was sent.',
  FriendRequestStatus: 'Where a friend request stands.',
  'FriendRequestStatus.PENDING': 'Waiting for the asked user.',
  'FriendRequestStatus.ACCEPTED': 'Accepted: the two are friends.',
  'FriendRequestStatus.DECLINED': 'Declined: its sender may ask again after FRIEND_REQUEST_COOLDOWN (1 day).',
  'Query.friends': "The viewer's friends.",
  'Mutation.sendFriendRequest': 'Asks a user to become friends (RATE_LIMIT_FRIEND_REQUEST: 50 an hour). CONFLICT when already friends or the viewer\'s own request to them is pending; when theirs to the viewer is pending, sending one back accepts it (the answer is that request, ACCEPTED).',
  'Mutation.sendFriendRequest(userId:)': 'Who to ask.',
  'Mutation.acceptFriendRequest': 'Accepts a request sent to the viewer: the two become friends.',
  'Mutation.acceptFriendRequest(requestId:)': 'A pending request sent to the viewer.',
  'Mutation.declineFriendRequest': 'Declines a request sent to the viewer.',
  'Mutation.declineFriendRequest(requestId:)': 'A pending request sent to the viewer.',
  'Mutation.cancelFriendRequest': 'Withdraws a pending request the viewer sent: it goes from both users\' friendRequests, as if never sent (no cooldown; its FRIEND_REQUEST webhook, if still due, is not sent). NOT_FOUND for a request that is not the viewer\'s, FORBIDDEN for one sent to them (decline it), CONFLICT once answered. true.',
  'Mutation.cancelFriendRequest(requestId:)': 'A pending request the viewer sent.',
  'Mutation.removeFriend': 'Ends a friendship; the direct conversation leaves both sidebars (its messages stay). True once done.',
  'Mutation.removeFriend(userId:)': 'The friend to remove.',

  // ---- groups
  Group: 'A group chat. Public groups are seen by everyone, private ones by their members only; everyone is a member of the lobby.',
  'Group.id': 'A UUID, unique across every Node type.',
  'Group.name': '1 to 100 characters on one line.',
  'Group.isPrivate': 'Private groups are invisible to non-members and joined only by addGroupMember.',
  'Group.isLobby': 'The one group every user is in and cannot leave.',
  'Group.memberCount': 'How many members it has.',
  'Group.owner': 'Its owner: renames, deletes and adds members. When the owner leaves, the longest-standing member takes over.',
  'Group.createdAt': 'When it was created.',
  'Group.members': 'Its members by join time, oldest first (50 a page by default, at most 100).',
  'Query.group': 'A group by id; null when there is none or it is private and the viewer is not a member.',
  'Query.group(id:)': "The group's id.",
  'Query.groups': 'The groups the viewer may see (public ones and the viewer\'s own), alphabetically by name (case-insensitive, then by id).',
  'Query.groups(search:)': 'Only groups whose name contains this text (case and, from 3 characters, accents aside); at most 100 characters.',
  'Mutation.createGroup(name:)': '1 to 100 characters on one line, kept trimmed and composed (Unicode NFC).',
  'Mutation.createGroup(isPrivate:)': 'A private group is seen and joined only by its members.',
  'Mutation.renameGroup(groupId:)': 'A group the viewer owns or is an admin of.',
  'Mutation.renameGroup(name:)': 'The new name: 1 to 100 characters on one line, kept trimmed and composed (Unicode NFC); the name it has already changes nothing.',
  'Mutation.deleteGroup(groupId:)': 'A group the viewer owns (not the lobby).',
  'Mutation.joinGroup(groupId:)': 'A public group.',
  'Mutation.leaveGroup': 'Leaves a group (not the lobby); the other members get MEMBER_LEFT. True once done.',
  'Mutation.leaveGroup(groupId:)': 'A group the viewer is in.',
  'Mutation.addGroupMember(groupId:)': 'A group the viewer owns or is an admin of (the lobby too, for its admins).',
  'Mutation.addGroupMember(userId:)': 'The user to add.',
  GroupEvent: 'A change to a group: to every member, and CREATED of a public group to everyone.',
  'GroupEvent.kind': 'What changed.',
  'GroupEvent.groupId': 'The group it happened to.',
  'GroupEvent.user': 'The member concerned: who joined or left (MEMBER_JOINED, MEMBER_LEFT), was removed, banned or invited, changed role, or became the owner; for CREATED, RENAMED, DELETED and SLOW_MODE_CHANGED, who did it.',
  'GroupEvent.createdAt': 'When it happened.',
  GroupEventKind: 'What happened to a group.',
  'GroupEventKind.CREATED': 'A public group was created.',
  'GroupEventKind.RENAMED': 'The group has a new name.',
  'GroupEventKind.DELETED': 'The group was deleted: its members lose access.',
  'GroupEventKind.MEMBER_JOINED': 'A user joined or was added.',
  'GroupEventKind.MEMBER_LEFT': 'A member left.',
  'FriendEvent.kind': 'What happened.',
  'FriendEvent.createdAt': 'When it happened.',
  FriendEventKind: 'What happened to a friend request or a friendship.',

  // ---- conversations
  Conversation:
    "One conversation as the viewer's sidebar shows it: a group, a direct conversation with a friend, or a project. Only its members see it.",
  'Conversation.kind': 'GROUP, DIRECT or PROJECT.',
  'Conversation.group': 'The group, for a GROUP conversation; null otherwise.',
  'Conversation.project': 'The project, for a PROJECT conversation; null otherwise.',
  'Conversation.lastReadMessageId': "The viewer's read marker: the newest message they have read; null before any.",
  ConversationKind: 'What a conversation is.',
  'ConversationKind.GROUP': "A group's conversation.",
  'ConversationKind.DIRECT': 'Two friends, between themselves.',
  'ConversationKind.PROJECT': "A project's conversation (with private messages between two of its members).",
  ConversationInput: 'Names one conversation: exactly one of groupId, userId (the direct conversation with that friend) or projectId; BAD_USER_INPUT otherwise.',
  'ConversationInput.groupId': "A group's conversation.",
  'ConversationInput.projectId': "A project's conversation.",
  'Query.conversation': 'One conversation of the viewer, as the sidebar shows it.',
  'Query.conversation(conversation:)': 'Which conversation.',
  'Query.readReceipts(conversation:)': 'Which conversation (one the viewer is in).',
  'Mutation.markRead(conversation:)': 'Which conversation.',
  'Mutation.markRead(messageId:)': "A message of that conversation's timeline the viewer may see (a reply kept in its thread: BAD_USER_INPUT, markThreadRead marks it); without it, the newest.",
  'Mutation.setTyping(conversation:)': 'Which conversation.',
  'Mutation.setTyping(typing:)': 'true while typing (call again every ~2 s), false to stop.',
  ReadReceipt: "Another member's read marker in a conversation.",
  'ReadReceipt.user': 'Whose marker it is.',
  'ReadReceipt.conversationId': 'The conversation, as Conversation.id names it.',
  'ReadReceipt.lastReadMessageId': 'The newest message they have read (of those the viewer may see).',
  TypingEvent: 'Someone else started or stopped typing in a conversation the viewer is in.',
  'TypingEvent.conversationId': 'The conversation, as Conversation.id names it.',
  'TypingEvent.user': 'Who is typing.',
  'TypingEvent.typing': 'true while typing; false once they stop, send, or go 6 s without a refresh.',
  'TypingEvent.privateThread':
    "true: in the project's private thread between the typist and the viewer (ConversationInput { projectId, userId: user.id }), which shares the project's conversationId; false: in the conversation everyone in it sees.",

  // ---- messages
  Message: 'A message in a conversation, seen by its members (a private project message by its two users only).',
  'Message.id': 'A UUID, unique across every Node type.',
  'Message.content': 'The text: 1 to 4000 characters. Null for a message that is only an attachment, or deleted.',
  'Message.createdAt': "When it was stored; a conversation's messages are in this order.",
  'Message.sender': 'Who sent it ("Deleted user" for a deleted account).',
  'Message.clientMessageId': "The sender's idempotency key, as sent; null when none was given. A retry with the same key returns this message instead of a duplicate.",
  'Message.editedAt': 'When its text was last edited; null if never.',
  'Message.attachment': 'The file sent with it; null for none, or once deleted.',
  Attachment: "A file sent with a message, seen by the message's readers.",
  'Attachment.id': 'A UUID.',
  'Attachment.fileName': 'The name it was sent with, such as plan.pdf.',
  'Attachment.mimeType': 'Its media type, from its checked content (image/png, application/pdf, ...).',
  AttachmentInput: 'A file to send with a message: up to ATTACHMENT_MAX_BYTES (5 MiB) decoded. Send it in variables, not in the query text.',
  'AttachmentInput.base64': "The file's bytes in base64; they must be what the extension says (a .png must be a PNG).",
  SendMessageInput: 'A message to send: to exactly one of a group, a friend (toUserId) or a project, with text, an attachment, or both.',
  'SendMessageInput.groupId': 'A group the viewer is in.',
  'SendMessageInput.projectId': 'A project the viewer is in.',
  'SendMessageInput.content': '1 to 4000 characters, not only invisible ones, and no control characters but tabs and line breaks; optional with an attachment.',
  'SendMessageInput.attachment': 'A file to send with it.',
  'Mutation.sendMessage': `Stores a message, then delivers it (messageAdded). At most RATE_LIMIT_SEND_MESSAGE (300 per 10 s) per user.`,
  'Mutation.sendMessage(input:)': 'What to send and where.',
  'Mutation.editMessage(messageId:)': "One of the viewer's own messages, not deleted.",
  'Mutation.editMessage(content:)': 'The new text: 1 to 4000 characters, as sendMessage takes them.',
  'Mutation.deleteMessage(messageId:)': "The viewer's own message, or any in a group the viewer owns or is an admin of.",
  'Mutation.addReaction(messageId:)': 'A message the viewer may see.',
  'Mutation.addReaction(emoji:)': 'One emoji (a flag or a family counts as one).',
  'Mutation.removeReaction(messageId:)': 'A message the viewer may see.',
  'Mutation.removeReaction(emoji:)': 'The emoji the viewer reacted with.',
  'Mutation.pinMessage(messageId:)': 'A message the viewer may see (any member of a group or direct conversation; a project: its owner).',
  'Mutation.unpinMessage(messageId:)': 'A pinned message.',
  ReactionCount: 'The reactions with one emoji to a message.',
  'ReactionCount.emoji': 'The emoji.',
  'ReactionCount.count': 'How many users reacted with it (at least 1).',
  'ReactionCount.reactedByMe': 'Whether the viewer is one of them.',
  MessageEvent: 'A message changed: edited, deleted, its reactions, pinned or unpinned.',
  'MessageEvent.kind': 'What changed.',
  'MessageEvent.conversationId': 'Its conversation, as Conversation.id names it.',
  'MessageEvent.message': 'The message as it is now (a deleted one keeps only id, sender and createdAt, and its place in a thread: parentId, and as a root replyCount, lastReplyAt and threadParticipants).',
  MessageEventKind: 'What happened to a message.',
  'MessageEventKind.EDITED': 'Its text was edited.',
  'MessageEventKind.DELETED': 'It was deleted (a tombstone remains).',
  'MessageEventKind.REACTIONS_CHANGED': 'A reaction was added or removed.',
  'MessageEventKind.PINNED': 'It was pinned.',
  'MessageEventKind.UNPINNED': 'It was unpinned.',
  'Query.history': 'The messages of one conversation the viewer is in.',
  'Query.history(conversation:)': 'Which conversation.',
  'Subscription.messageAdded(conversation:)': 'One conversation; without it, all of the viewer\'s.',
  'Subscription.messageEvent(conversation:)': 'One conversation; without it, all of the viewer\'s.',
  'Subscription.readReceipt(conversation:)': 'One conversation; without it, all of the viewer\'s.',
  'Subscription.typing(conversation:)': 'One conversation; without it, all of the viewer\'s.',
  'Subscription.presenceChanged(userIds:)': "Only these users' changes; without it, everyone's.",
  'Subscription.projectAction(projectId:)': 'One project; without it, every project of the viewer.',

  // ---- search
  SearchHit: 'One message found by searchMessages.',
  'SearchHit.message': 'The message found.',
  'Query.searchMessages(query:)': 'The words to find: 1 to 200 characters. Accents and case are ignored; the last word matches as a prefix.',
  'Query.searchMessages(conversation:)': 'Search one conversation; without it, all of them.',

  // ---- projects
  Project: 'A project: an owner, participants (some of them coaches) and a conversation. Seen by its members only.',
  'Project.id': 'A UUID, unique across every Node type.',
  'Project.title': '1 to 100 characters on one line.',
  'Project.owner': 'Its owner: renames, deletes, adds and removes members, designates coaches.',
  'Project.createdAt': 'When it was created.',
  ProjectRole: "A member's role in a project.",
  'ProjectRole.OWNER': 'The one owner.',
  'ProjectRole.COACH': 'A participant who may add and remove participants.',
  'ProjectRole.PARTICIPANT': 'A member.',
  'ProjectAction.id': 'A UUID, unique across every Node type.',
  'ProjectAction.kind': 'What happened.',
  'ProjectAction.message': 'What happened, in a sentence written for this reader ("You were added to the project \'Launch\'.").',
  'ProjectAction.projectId': 'The project (which may since be deleted or left).',
  'ProjectAction.createdAt': 'When it happened.',
  ProjectActionKind: 'What happened in a project.',
  'ProjectActionKind.ADDED_TO_PROJECT': 'The reader was added.',
  'ProjectActionKind.PARTICIPANT_ADDED': 'Someone else was added.',
  'ProjectActionKind.PARTICIPANT_REMOVED': 'A participant was removed (the reader, or someone else).',
  'ProjectActionKind.PARTICIPANT_LEFT': 'A member left (the leaver gets one too: "You left the project …").',
  'ProjectActionKind.COACH_DESIGNATED': 'A participant became a coach.',
  'ProjectActionKind.COACH_WITHDRAWN': 'A coach became a plain participant.',
  'ProjectActionKind.PROJECT_RENAMED': 'The project has a new title (previousTitle has the old one).',
  'ProjectActionKind.PROJECT_DELETED': 'The project was deleted.',
  'Query.project': 'A project by id; null unless the viewer is a member.',
  'Query.project(id:)': "The project's id.",
  'Mutation.createProject(title:)': '1 to 100 characters on one line, kept trimmed and composed (Unicode NFC).',
  'Mutation.renameProject(projectId:)': 'A project the viewer owns.',
  'Mutation.renameProject(title:)': 'The new title: 1 to 100 characters on one line, kept trimmed and composed (Unicode NFC); the title it has already changes nothing.',
  'Mutation.deleteProject(projectId:)': 'A project the viewer owns.',
  'Mutation.leaveProject(projectId:)': 'A project the viewer is in; an owner who leaves hands it to the longest-standing member.',
  'Mutation.addProjectParticipant(projectId:)': 'A project the viewer owns or coaches.',
  'Mutation.addProjectParticipant(userId:)': 'The user to add.',
  'Mutation.removeProjectParticipant(projectId:)': 'A project the viewer owns or coaches (only the owner removes a coach).',
  'Mutation.removeProjectParticipant(userId:)': 'The participant to remove.',
  'Mutation.designateCoach(projectId:)': 'A project the viewer owns.',
  'Mutation.designateCoach(userId:)': 'A participant.',
  'Mutation.withdrawCoach(projectId:)': 'A project the viewer owns.',
  'Mutation.withdrawCoach(userId:)': 'A coach.',

  // ---- notifications
  'Mutation.setNotificationLevel(level:)': 'ALL, MENTIONS or NONE.',
  'NotificationLevel.ALL': 'Every offline notification: messages, mentions, friend requests, invitations, project actions.',
  'NotificationLevel.MENTIONS': 'Mentions, and what is addressed to the user alone: direct and private messages, friend requests, invitations, project actions.',
  'NotificationLevel.NONE': 'No offline notifications at all.',

  // ---- connections: PageInfo
  PageInfo: 'Where a page sits in its list: whether more lies either way, and the cursors to fetch it with.',
  'PageInfo.hasNextPage': 'More after this page (`after: endCursor` fetches it). Paging back, whether the page was cut from a `before` cursor (history, thread and projectActions: whether anything of theirs lies from that cursor on, given another list\'s cursor).',
  'PageInfo.hasPreviousPage': 'More before this page (`before: startCursor` fetches it). Paging forward, whether the page was cut from an `after` cursor (history, thread and projectActions: whether anything of theirs lies up to that cursor, given another list\'s cursor).',
  'PageInfo.startCursor': "The first edge's cursor; null for an empty page.",
  'PageInfo.endCursor': "The last edge's cursor; null for an empty page.",
};

const PAGING: Record<string, (def: string) => string> = {
  first: (def) => `Page forward: this many edges from the start, or after \`after\` (0 to 100${def}).`,
  after: () => 'An edge\'s cursor or `pageInfo.endCursor` of this connection: the page starts after it.',
  last: (def) => `Page back: this many edges from the end, or before \`before\` (0 to 100${def}). Not with first/after.`,
  before: () => "An edge's cursor or `pageInfo.startCursor` of this connection: the page ends before it.",
};

type Described = { description?: string | null };

function set(target: Described, text: string | undefined): void {
  if (text && !target.description) target.description = text;
}

/** Fills in every description the decorators left out: from DESCRIPTIONS, then connections and paging by rule. */
export function describeSchema(schema: GraphQLSchema): GraphQLSchema {
  for (const type of Object.values(schema.getTypeMap())) {
    if (type.name.startsWith('__')) continue;
    set(type, DESCRIPTIONS[type.name]);
    if (isEnumType(type)) for (const v of type.getValues()) set(v, DESCRIPTIONS[`${type.name}.${v.name}`]);
    if (isInputObjectType(type)) for (const f of Object.values(type.getFields())) set(f, DESCRIPTIONS[`${type.name}.${f.name}`]);
    if (!isObjectType(type) && !isInterfaceType(type)) continue;
    describeConnectionType(type, type.getFields());
    for (const f of Object.values(type.getFields())) {
      set(f, DESCRIPTIONS[`${type.name}.${f.name}`]);
      for (const a of f.args) set(a, DESCRIPTIONS[`${type.name}.${f.name}(${a.name}:)`]);
      if (getNamedType(f.type).name.endsWith('Connection')) describePaging(f.args);
    }
  }
  return schema;
}

/** `<X>Connection` and `<X>Edge`, whichever module declares them. */
function describeConnectionType(type: Described & { name: string }, fields: Record<string, GraphQLField<unknown, unknown> | GraphQLInputField>): void {
  const connection = /^(\w+)Connection$/.exec(type.name)?.[1];
  const edge = /^(\w+)Edge$/.exec(type.name)?.[1];
  if (connection) {
    set(type, `A page of ${connection} entries (Relay connection): edges, pageInfo to page on either way.`);
    if (fields.edges) set(fields.edges, `The page's ${connection} edges, in the order the field returning them gives.`);
    if (fields.pageInfo) set(fields.pageInfo, 'Where this page sits: cursors to go on either way, and whether there is more.');
    if (fields.totalCount) set(fields.totalCount, `How many ${connection} entries the whole list holds, every page together.`);
  }
  if (edge) {
    set(type, `One ${edge} of a page, with the cursor that points at it.`);
    if (fields.cursor) set(fields.cursor, 'Opaque: pass it as `after` or `before` to page from this edge. Only this connection accepts it.');
    if (fields.node) set(fields.node, `The ${edge} itself.`);
  }
}

function describePaging(args: readonly GraphQLArgument[]): void {
  for (const a of args) {
    const text = PAGING[a.name];
    if (text) set(a, text(a.defaultValue === undefined ? '' : `; default ${String(a.defaultValue)}`));
  }
}

/** The coordinates of DESCRIPTIONS that name nothing in `schema` (a renamed or removed field). */
export function staleDescriptionKeys(schema: GraphQLSchema): string[] {
  return Object.keys(DESCRIPTIONS).filter((key) => {
    const [, typeName, member, arg] = /^(\w+)(?:\.(\w+)(?:\((\w+):\))?)?$/.exec(key) ?? [];
    const type = typeName ? schema.getType(typeName) : undefined;
    if (!type) return true;
    if (!member) return false;
    if (isEnumType(type)) return !type.getValue(member) || !!arg;
    if (!isObjectType(type) && !isInterfaceType(type) && !isInputObjectType(type)) return true;
    const field = type.getFields()[member];
    if (!field) return true;
    return arg !== undefined && !('args' in field && field.args.some((a) => a.name === arg));
  });
}
