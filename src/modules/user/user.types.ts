import { Field, ObjectType, registerEnumType } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { Node } from '../../shared/graphql/node';
import { ConnectionType } from '../../shared/graphql/connection';
import { GroupRole } from '../group/group.role';

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

/** What an edge to a user adds: a group member's role. A base type only (referenced by no field, so never in the schema). */
@ObjectType('UserEdgeFields')
class UserEdgeFields {
  @Field(() => GroupRole, {
    nullable: true,
    description: "On Group.members edges, the member's role (always set there; in the lobby ADMIN for those LOBBY_ADMINS names). Null on every other list of users.",
  })
  role?: GroupRole | null;
}

export const UserConnection = ConnectionType('User', UserType, UserEdgeFields);
