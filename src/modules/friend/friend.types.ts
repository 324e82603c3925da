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
