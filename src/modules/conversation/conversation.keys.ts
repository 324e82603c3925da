import { Topic, type ChannelRoutes, type ConversationScope, type MessagePayload, type TopicPayloads } from '../../shared/pubsub/topics';

/**
 * Every conversation key and every pub/sub channel, built and parsed here and nowhere else.
 *
 * A conversation key is what `messages.conversation_key` and `conversation_heads.key` hold and what
 * the API shows as `Conversation.id`:
 * - `g:<groupId>` a group;
 * - `p:<projectId>` a project (its private messages too: they carry a recipient, not a key of their own);
 * - `d:<userA>:<userB>` a direct conversation, the two user ids in sorting order.
 *
 * A channel carries a conversation's events between instances (see topics.ts): `g:<groupId>` and
 * `p:<projectId>` for everyone who takes the group or project, `u:<userId>` for one connected user
 * (their direct conversations and their own sessions). In PRESENCE_VISIBILITY=contacts mode,
 * `pr:<userId>` carries one user's presence transitions to the instances where a contact is connected.
 */

export type ConversationKind = 'group' | 'project' | 'direct';

/** A parsed conversation key. */
export type ParsedKey = { kind: 'group'; groupId: string } | { kind: 'project'; projectId: string } | { kind: 'direct'; userIds: [string, string] };

export const groupKey = (groupId: string): string => `g:${groupId}`;
export const projectKey = (projectId: string): string => `p:${projectId}`;
/** The conversation of a group or project, as a membership change names it. */
export const scopeKey = (scope: 'group' | 'project', id: string): string => (scope === 'group' ? groupKey(id) : projectKey(id));
/** The same key whichever of the two users asks. */
export const directKey = (a: string, b: string): string => (a < b ? `d:${a}:${b}` : `d:${b}:${a}`);

/** What a stored conversation key looks like (as a cursor carries it): ids are lower-case UUIDs. */
export const KEY_PATTERN = /^(?:[gp]:[0-9a-f-]{36}|d:[0-9a-f-]{36}:[0-9a-f-]{36})$/;

/** Reads a conversation key; null for anything that is not one (an id from a client, say). */
export function parseKey(key: string): ParsedKey | null {
  const parts = key.split(':');
  if (parts[0] === 'g' && parts.length === 2 && parts[1]) return { kind: 'group', groupId: parts[1] };
  if (parts[0] === 'p' && parts.length === 2 && parts[1]) return { kind: 'project', projectId: parts[1] };
  if (parts[0] === 'd' && parts.length === 3 && parts[1] && parts[2]) return { kind: 'direct', userIds: [parts[1], parts[2]] };
  return null;
}

export const groupChannel = groupKey;
export const projectChannel = projectKey;
export const userChannel = (userId: string): string => `u:${userId}`;
/** The channel of what a member of a group or project, or a connected user, needs. */
export const scopeChannel = (scope: 'group' | 'project' | 'user', id: string): string => (scope === 'group' ? groupChannel(id) : scope === 'project' ? projectChannel(id) : userChannel(id));
/** A user's presence channel (contacts mode): taken by every instance where one of their contacts is connected. */
export const presenceChannel = (userId: string): string => `pr:${userId}`;
/** The user a `u:` channel belongs to; undefined for a group's or project's channel. */
export const userOfChannel = (channel: string): string | undefined => (channel.startsWith('u:') ? channel.slice(2) : undefined);

/** The channels of a conversation: its group's or project's, or each of its users' own. */
function scopeChannels(s: { groupId: string | null; projectId: string | null }, users: () => string[]): string[] {
  return s.groupId ? [groupChannel(s.groupId)] : s.projectId ? [projectChannel(s.projectId)] : users().map(userChannel);
}

const messageChannels = (m: MessagePayload): string[] => scopeChannels(m, () => (m.recipientId ? [m.senderId, m.recipientId] : [m.senderId]));
const scopeOfChannels = (s: ConversationScope): string[] => scopeChannels(s, () => s.userIds ?? []);

/** Topics published on conversation channels instead of one topic-wide channel, and the channels of each event. */
const TOPIC_CHANNELS: { [T in Topic]?: (payload: TopicPayloads[T]) => string[] } = {
  [Topic.MessageAdded]: messageChannels,
  [Topic.MessageEvent]: (p) => messageChannels(p.message),
  [Topic.ReadReceipt]: scopeOfChannels,
  [Topic.Typing]: scopeOfChannels,
  [Topic.ConversationUpdated]: (p) => (p.viaUser && p.only ? p.only.map(userChannel) : scopeOfChannels(p)),
  [Topic.SessionEvent]: (p) => [userChannel(p.userId)],
  [Topic.FriendEvent]: (p) => p.audience.map(userChannel),
};

/**
 * What the pub/sub needs to know of channels, handed to it at start-up. `presencePerUser`
 * (PRESENCE_VISIBILITY=contacts): presence transitions go on each user's presence channel instead
 * of the topic-wide one.
 */
export function channelRoutes(o: { presencePerUser: boolean }): ChannelRoutes {
  const topics: typeof TOPIC_CHANNELS = o.presencePerUser ? { ...TOPIC_CHANNELS, [Topic.PresenceChanged]: (p) => [presenceChannel(p.userId)] } : TOPIC_CHANNELS;
  return {
    channelsOf: (topic, payload) => (topics[topic] as ((p: unknown) => string[]) | undefined)?.(payload),
    onChannels: (topic) => topic in topics,
    alsoTopicWide: (topic) => o.presencePerUser && topic === Topic.PresenceChanged,
    userChannel,
    userOfChannel,
    messageChannel: (m) => (m.groupId ? groupChannel(m.groupId) : projectChannel(m.projectId!)),
    membershipLine: (topic, payload) => {
      if (topic === Topic.MembershipChanged) {
        const p = payload as TopicPayloads[Topic.MembershipChanged];
        return scopeKey(p.scope, p.id);
      }
      return topic === Topic.GroupEvent ? groupKey((payload as TopicPayloads[Topic.GroupEvent]).groupId) : undefined;
    },
  };
}

/** The routes with presence on its topic-wide channel (PRESENCE_VISIBILITY=everyone). */
export const conversationRoutes: ChannelRoutes = channelRoutes({ presencePerUser: false });
