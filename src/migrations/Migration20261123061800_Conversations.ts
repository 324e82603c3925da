import { Migration } from '@mikro-orm/migrations';

export class Migration20261123061800_Conversations extends Migration {

  override async up(): Promise<void> {
    // Backfills touch every message: no per-statement cap (the pool's is 15 s) inside the migration's transaction.
    this.addSql('set local statement_timeout = 0;');
    this.addSql(`create table "conversation_members" ("conversation_key" varchar(160) not null, "user_id" uuid not null, "kind" varchar(16) not null, "group_id" uuid null, "project_id" uuid null, "peer_id" uuid null, "joined_at" timestamptz not null, "activity_at" timestamptz not null, "last_message_id" uuid null, "unread_count" int not null default 0, "last_read_message_id" uuid null, "last_read_at" timestamptz null, "read_at" timestamptz null, constraint "conversation_members_pkey" primary key ("conversation_key", "user_id"));`);
    this.addSql(`create index "conversation_members_activity" on "conversation_members" ("user_id", "activity_at", "conversation_key");`);

    this.addSql(`create table "message_reactions" ("message_id" uuid not null, "user_id" uuid not null, "emoji" varchar(64) not null, "created_at" timestamptz not null, constraint "message_reactions_pkey" primary key ("message_id", "user_id", "emoji"));`);

    this.addSql(`alter table "message_reactions" add constraint "message_reactions_message_id_foreign" foreign key ("message_id") references "messages" ("id") on update cascade on delete cascade;`);

    this.addSql(`alter table "messages" add column "edited_at" timestamptz null, add column "deleted_at" timestamptz null;`);

    // Backfill: every existing member gets a row, read up to the newest message they may see
    // (nothing written before read state existed counts as unread).
    this.addSql(`insert into "conversation_members" ("conversation_key", "user_id", "kind", "group_id", "joined_at", "activity_at", "last_message_id", "unread_count", "last_read_message_id", "last_read_at")
      select 'g:' || gm.group_id, gm.user_id, 'GROUP', gm.group_id, gm.joined_at, coalesce(lm.created_at, gm.joined_at), lm.id, 0, lm.id, lm.created_at
      from "group_members" gm left join lateral (
        select m.id, m.created_at from "messages" m where m.conversation_key = 'g:' || gm.group_id order by m.created_at desc, m.id desc limit 1
      ) lm on true;`);
    this.addSql(`insert into "conversation_members" ("conversation_key", "user_id", "kind", "project_id", "joined_at", "activity_at", "last_message_id", "unread_count", "last_read_message_id", "last_read_at")
      select 'p:' || pm.project_id, pm.user_id, 'PROJECT', pm.project_id, pm.joined_at, coalesce(lm.created_at, pm.joined_at), lm.id, 0, lm.id, lm.created_at
      from "project_members" pm left join lateral (
        select m.id, m.created_at from "messages" m where m.conversation_key = 'p:' || pm.project_id
          and (m.recipient_id is null or m.sender_id = pm.user_id or m.recipient_id = pm.user_id)
        order by m.created_at desc, m.id desc limit 1
      ) lm on true;`);
    // Direct conversations exist once a message was exchanged, between users who are still friends.
    this.addSql(`insert into "conversation_members" ("conversation_key", "user_id", "kind", "peer_id", "joined_at", "activity_at", "last_message_id", "unread_count", "last_read_message_id", "last_read_at")
      select k.key, u.id, 'DIRECT', u.peer, f.created_at, lm.created_at, lm.id, 0, lm.id, lm.created_at
      from (select distinct conversation_key as key from "messages" where group_id is null and project_id is null) k
      cross join lateral (select m.id, m.created_at, m.sender_id, m.recipient_id from "messages" m where m.conversation_key = k.key order by m.created_at desc, m.id desc limit 1) lm
      cross join lateral (values (lm.sender_id, lm.recipient_id), (lm.recipient_id, lm.sender_id)) as u(id, peer)
      join "friendships" f on f.user_a_id = least(u.id, u.peer) and f.user_b_id = greatest(u.id, u.peer);`);
  }

  override async down(): Promise<void> {
    // Backfills touch every message: no per-statement cap (the pool's is 15 s) inside the migration's transaction.
    this.addSql('set local statement_timeout = 0;');
    this.addSql(`drop table if exists "conversation_members" cascade;`);

    this.addSql(`drop table if exists "message_reactions" cascade;`);

    this.addSql(`alter table "messages" drop column "edited_at", drop column "deleted_at";`);
  }

}
