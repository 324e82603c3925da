import { Field, ObjectType, registerEnumType } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { Node } from '../../shared/graphql/node';
import { ConnectionType } from '../../shared/graphql/connection';

export enum PresenceStatus {
  ONLINE = 'ONLINE',
  OFFLINE = 'OFFLINE',
}
registerEnumType(PresenceStatus, { name: 'PresenceStatus' });

/** What the API shows of a user; `status` and `lastSeenAt` are resolved from presence. */
@ObjectType('User', { implements: Node })
export class UserType {
  @Field(() => IdScalar) id!: string;
  @Field() username!: string;
  @Field(() => String, { nullable: true }) displayName!: string | null;
  @Field(() => Date) createdAt!: Date;
  /** The persisted value; the field resolver prefers live presence. */
  storedLastSeenAt!: Date | null;
}

export const UserConnection = ConnectionType('User', UserType);
