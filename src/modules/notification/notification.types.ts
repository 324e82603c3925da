import { registerEnumType } from 'type-graphql';

/** Which offline notifications a user gets (webhooks). */
export enum NotificationLevel {
  ALL = 'ALL',
  MENTIONS = 'MENTIONS',
  NONE = 'NONE',
}
registerEnumType(NotificationLevel, {
  name: 'NotificationLevel',
  description: 'Offline notifications: ALL; MENTIONS (mentions and what is addressed to the user alone: direct and private messages, friend requests, invitations, project actions); NONE.',
});
