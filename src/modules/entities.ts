import { ServerSecret } from '../core/secrets';
import { Session } from './auth/session.entity';
import { ConversationHead, ConversationMember, MessageReaction } from './conversation/conversation.entity';
import { FriendRequest, Friendship } from './friend/friend.entity';
import { Group, GroupBan, GroupInvite, GroupMember } from './group/group.entity';
import { Attachment, Message } from './message/message.entity';
import { MessageMention } from './message/mention.entity';
import { MessagePin } from './message/pin.entity';
import { ThreadMember } from './message/thread.entity';
import { NotificationCursor, NotificationOutbox } from './notification/notification.entity';
import { Report } from './safety/report.entity';
import { Project, ProjectAction, ProjectMember } from './project/project.entity';
import { UserBlock } from './safety/block.entity';
import { User } from './user/user.entity';

/** Every entity, listed once: the ORM config and the migration generator read this. */
export const entities = [
  User,
  Session,
  FriendRequest,
  Friendship,
  Group,
  GroupMember,
  GroupBan,
  GroupInvite,
  Attachment,
  Message,
  Project,
  ProjectMember,
  ProjectAction,
  ServerSecret,
  ConversationHead,
  ConversationMember,
  MessageReaction,
  MessagePin,
  ThreadMember,
  MessageMention,
  NotificationOutbox,
  NotificationCursor,
  UserBlock,
  Report,
];
