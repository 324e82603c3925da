import { Field, ID, ObjectType, registerEnumType } from 'type-graphql';
import { FriendRequestStatus } from './friend.entity';

registerEnumType(FriendRequestStatus, { name: 'FriendRequestStatus' });

@ObjectType('FriendRequest')
export class FriendRequestType {
  @Field(() => ID) id!: string;
  @Field(() => FriendRequestStatus) status!: FriendRequestStatus;
  @Field(() => Date) createdAt!: Date;
  fromId!: string;
  toId!: string;
}
