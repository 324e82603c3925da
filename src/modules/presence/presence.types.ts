import { Field, ObjectType } from 'type-graphql';
import { PresenceStatus, UserType } from '../user/user.types';

@ObjectType('Presence')
export class PresenceType {
  @Field(() => PresenceStatus) status!: PresenceStatus;
  @Field(() => Date, { nullable: true }) lastSeenAt!: Date | null;
  userId!: string;
  /** Set when the user is already loaded. */
  user?: UserType;
}
