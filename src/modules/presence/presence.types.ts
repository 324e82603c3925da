import { Field, ObjectType, registerEnumType } from 'type-graphql';
import { PresenceStatus, UserType } from '../user/user.types';

@ObjectType('Presence')
export class PresenceType {
  @Field(() => PresenceStatus) status!: PresenceStatus;
  @Field(() => Date, { nullable: true }) lastSeenAt!: Date | null;
  userId!: string;
  /** Set when the user is already loaded. */
  user?: UserType;
}

export enum PresenceVisibilityChoice {
  VISIBLE = 'VISIBLE',
  HIDDEN = 'HIDDEN',
}
registerEnumType(PresenceVisibilityChoice, {
  name: 'PresenceVisibility',
  description: 'Whether others may see a user’s presence.',
  valuesConfig: {
    VISIBLE: { description: 'Shown as the server’s PRESENCE_VISIBILITY says (everyone, or contacts only).' },
    HIDDEN: { description: 'Reads OFFLINE with no lastSeenAt to everyone but the user themselves; their transitions are not published.' },
  },
});
