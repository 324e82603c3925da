import { Migration } from '@mikro-orm/migrations';

/** A project message with a recipient: seen by its two users only, so not among what every member sees. */
const privateOf = (m: string) => `${m}.project_id is not null and ${m}.recipient_id is not null`;
const PRIVATE = privateOf('messages');

/**
 * Conversation heads: a message writes one head row instead of one row per member. Members'
 * rows keep their own state only (the read marker as a seq), and unread counts become the head's
 * seq minus the marker's. Existing data gets the same unread counts, last messages and order.
 */
export class Migration20261123081226_ConversationHeads extends Migration {

  override async up(): Promise<void> {
    // Backfills touch every message: no per-statement cap (the pool's is 15 s) inside the migration's transaction.
    this.addSql('set local statement_timeout = 0;');
    this.addSql(`create table "conversation_heads" ("conversation_key" varchar(160) not null, "seq" bigint not null default 0, "last_message_id" uuid null, "activity_at" timestamptz null, "last_at" timestamptz not null, constraint "conversation_heads_pkey" primary key ("conversation_key"));`);

    // Each message's place among the messages every member sees, in (created_at, id) order (a
    // private one: the count before it), and a private one's place in its recipient's inbox.
    this.addSql(`alter table "messages" add column "seq" bigint null, add column "recipient_seq" bigint null;`);
    this.addSql(`update "messages" m set "seq" = x.seq, "recipient_seq" = x.recipient_seq from (
      select id,
        sum(case when ${PRIVATE} then 0 else 1 end) over (partition by conversation_key order by created_at, id rows unbounded preceding) as seq,
        case when ${PRIVATE} then row_number() over (partition by conversation_key, case when ${PRIVATE} then recipient_id end order by created_at, id) end as recipient_seq
      from "messages") x
      where x.id = m.id;`);
    this.addSql(`alter table "messages" alter column "seq" set not null;`);
    this.addSql(`create index "messages_private_inbox" on "messages" ("conversation_key", "recipient_id", "created_at", "id") where "project_id" is not null and "recipient_id" is not null;`);

    this.addSql(`create index "conversation_heads_key_hash" on "conversation_heads" using hash ("conversation_key");`);
    this.addSql(`insert into "conversation_heads" ("conversation_key", "seq", "last_message_id", "activity_at", "last_at")
      select conversation_key, max(seq),
        (array_agg(id order by created_at desc, id desc) filter (where not (${PRIVATE})))[1],
        max(created_at) filter (where not (${PRIVATE})),
        max(created_at)
      from "messages" group by conversation_key;`);

    this.addSql(`alter table "conversation_members" add column "read_seq" bigint not null default 0, add column "private_seq" bigint not null default 0, add column "private_read" bigint not null default 0, add column "private_message_id" uuid null, add column "private_at" timestamptz null;`);
    // The marker as a seq; in a project, the member's private messages so far and up to the
    // marker, and the newest one they sent or received.
    this.addSql(`update "conversation_members" cm set
        "read_seq" = coalesce((select m.seq from "messages" m where m.id = cm.last_read_message_id), 0),
        "private_seq" = coalesce((select max(p.recipient_seq) from "messages" p
          where p.conversation_key = cm.conversation_key and ${privateOf('p')} and p.recipient_id = cm.user_id), 0),
        "private_read" = coalesce((select max(p.recipient_seq) from "messages" p
          where p.conversation_key = cm.conversation_key and ${privateOf('p')} and p.recipient_id = cm.user_id
            and (p.created_at, p.id) <= (cm.last_read_at, cm.last_read_message_id)), 0),
        ("private_message_id", "private_at") = (select p.id, p.created_at from "messages" p
          where p.conversation_key = cm.conversation_key and ${privateOf('p')} and (p.sender_id = cm.user_id or p.recipient_id = cm.user_id)
          order by p.created_at desc, p.id desc limit 1)
      where cm.kind = 'PROJECT' or cm.last_read_message_id is not null;`);

    this.addSql(`drop index "conversation_members_activity";`);
    this.addSql(`alter table "conversation_members" drop column "activity_at", drop column "unread_count", drop column "last_message_id";`);
    this.addSql(`create index "conversation_members_user" on "conversation_members" ("user_id", "conversation_key") include ("joined_at", "private_at");`);
  }

  override async down(): Promise<void> {
    // Backfills touch every message: no per-statement cap (the pool's is 15 s) inside the migration's transaction.
    this.addSql('set local statement_timeout = 0;');
    this.addSql(`alter table "conversation_members" add column "activity_at" timestamptz null, add column "unread_count" int not null default 0, add column "last_message_id" uuid null;`);
    this.addSql(`update "conversation_members" cm set ("activity_at", "last_message_id", "unread_count") = (
        select coalesce(greatest(h.activity_at, cm.private_at), cm.joined_at),
          case when h.activity_at is null or cm.private_at > h.activity_at then cm.private_message_id else h.last_message_id end,
          greatest(coalesce(h.seq, 0) - cm.read_seq, 0) + greatest(cm.private_seq - cm.private_read, 0)
        from (select 1) one left join "conversation_heads" h on h.conversation_key = cm.conversation_key);`);
    this.addSql(`alter table "conversation_members" alter column "activity_at" set not null;`);
    this.addSql(`drop index "conversation_members_user";`);
    this.addSql(`alter table "conversation_members" drop column "read_seq", drop column "private_seq", drop column "private_read", drop column "private_message_id", drop column "private_at";`);
    this.addSql(`create index "conversation_members_activity" on "conversation_members" ("user_id", "activity_at", "conversation_key");`);

    this.addSql(`drop table if exists "conversation_heads" cascade;`);
    this.addSql(`drop index "messages_private_inbox";`);
    this.addSql(`alter table "messages" drop column "seq", drop column "recipient_seq";`);
  }

}
