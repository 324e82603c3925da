import { Field, ObjectType, registerEnumType } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { FriendRequestStatus } from './friend.entity';

registerEnumType(FriendRequestStatus, { name: 'FriendRequestStatus' });

@ObjectType('FriendRequest')
export class FriendRequestType {
  @Field(() => IdScalar) id!: string;
  @Field(() => FriendRequestStatus) status!: FriendRequestStatus;
  @Field(() => Date) createdAt!: Date;
  fromId!: string;
  toId!: string;
}

export enum FriendEventKind {
  REQUESTED = 'REQUESTED',
  ACCEPTED = 'ACCEPTED',
  DECLINED = 'DECLINED',
  CANCELLED = 'CANCELLED',
  REMOVED = 'REMOVED',
}

registerEnumType(FriendEventKind, {
  name: 'FriendEventKind',
  valuesConfig: {
    REQUESTED: { description: 'A friend request was sent (to or by the viewer).' },
    ACCEPTED: { description: 'A request was accepted: the two are friends.' },
    DECLINED: { description: 'A request was declined.' },
    CANCELLED: { description: 'A request is gone unanswered: its sender withdrew it, one of the two deleted their account, or the viewer blocked the other.' },
    REMOVED: { description: 'A friendship ended: removeFriend by either, the other deleted their account, or the viewer blocked them.' },
  },
});

@ObjectType('FriendEvent', { description: "A change to the viewer's friends or friend requests, told to both users' sessions (a block: the blocker's alone)." })
export class FriendEventType {
  @Field(() => FriendEventKind) kind!: FriendEventKind;
  @Field(() => FriendRequestType, { nullable: true, description: 'The request as the change left it (CANCELLED: as it last stood, PENDING; the kind says it is gone); null for REMOVED.' })
  request!: FriendRequestType | null;
  @Field(() => Date) createdAt!: Date;
  /** The two users (see FriendEventPayload.userIds): `user` is the one who is not the viewer. */
  userIds!: [string, string];
}
