import { randomUUID } from 'node:crypto';
import { Entity, Enum, Index, ManyToOne, OptionalProps, PrimaryKey, Property, Unique, type Ref } from '@mikro-orm/core';
import { User } from '../user/user.entity';

export enum FriendRequestStatus {
  PENDING = 'PENDING',
  ACCEPTED = 'ACCEPTED',
  DECLINED = 'DECLINED',
}

@Entity({ tableName: 'friend_requests' })
// At most one pending request between two people, whichever way it was sent.
@Index({
  name: 'friend_requests_pending_pair',
  expression:
    'create unique index "friend_requests_pending_pair" on "friend_requests" (least("from_id", "to_id"), greatest("from_id", "to_id")) where "status" = \'PENDING\'',
})
export class FriendRequest {
  [OptionalProps]?: 'createdAt' | 'status' | 'respondedAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  @Index()
  from!: Ref<User>;

  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  @Index()
  to!: Ref<User>;

  @Enum({ items: () => FriendRequestStatus, nativeEnumName: 'friend_request_status' })
  status: FriendRequestStatus = FriendRequestStatus.PENDING;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();

  @Property({ type: 'datetime', nullable: true })
  respondedAt?: Date | null;
}

/** A friendship, stored once per pair with userA < userB. */
@Entity({ tableName: 'friendships' })
@Unique({ properties: ['userA', 'userB'] })
export class Friendship {
  [OptionalProps]?: 'createdAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  userA!: Ref<User>;

  @ManyToOne(() => User, { ref: true, deleteRule: 'cascade' })
  @Index()
  userB!: Ref<User>;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();
}
