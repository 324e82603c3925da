import { Migration } from '@mikro-orm/migrations';

/**
 * Threads and mentions (expand only: the previous release neither reads nor writes any of it, and
 * its inserts still succeed; a reply it reads shows in its history as a plain message).
 *
 * Threads: a reply names its root (`parent_id`, never a reply: a reply to a reply is stored on its
 * root) and is left out of the conversation's timeline unless `also_in_conversation`. The root
 * holds its counters, written in the reply's own statement. `thread_members` are the users who
 * follow a thread (its root's author, who replied, who was mentioned in it) with their read marker:
 * `threads` and markThreadRead read and write it.
 *
 * Mentions: one row per (message, mentioned user), resolved at send and edit time; `seq` is the
 * message's place in the timeline (unread against the member's read_seq), `in_timeline` false for a
 * reply kept in its thread (only timeline mentions are in the unread index: the badge counts those).
 */
export class Migration20261124153442_ThreadsAndMentions extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `alter table "messages" add column "parent_id" uuid null, add column "also_in_conversation" boolean not null default false, add column "reply_count" int not null default 0, add column "last_reply_at" timestamptz null;`,
    );
    this.addSql(`create index "messages_thread" on "messages" ("parent_id", "created_at", "id") where "parent_id" is not null;`);

    this.addSql(
      `create table "thread_members" ("root_id" uuid not null, "user_id" uuid not null, "conversation_key" varchar(160) not null, "joined_at" timestamptz not null, "replied" boolean not null default false, "read_at" timestamptz null, constraint "thread_members_pkey" primary key ("root_id", "user_id"));`,
    );
    this.addSql(`create index "thread_members_user" on "thread_members" ("user_id");`);
    this.addSql(`alter table "thread_members" add constraint "thread_members_root_id_foreign" foreign key ("root_id") references "messages" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "thread_members" add constraint "thread_members_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade;`);

    this.addSql(
      `create table "message_mentions" ("message_id" uuid not null, "user_id" uuid not null, "conversation_key" varchar(160) not null, "seq" bigint not null, "in_timeline" boolean not null, "created_at" timestamptz not null, constraint "message_mentions_pkey" primary key ("message_id", "user_id"));`,
    );
    this.addSql(`create index "message_mentions_user" on "message_mentions" ("user_id", "created_at", "message_id");`);
    this.addSql(`create index "message_mentions_unread" on "message_mentions" ("user_id", "conversation_key", "seq") where "in_timeline";`);
    this.addSql(`alter table "message_mentions" add constraint "message_mentions_message_id_foreign" foreign key ("message_id") references "messages" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "message_mentions" add constraint "message_mentions_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade;`);
  }

  override async down(): Promise<void> {
    this.addSql('drop table if exists "message_mentions" cascade;');
    this.addSql('drop table if exists "thread_members" cascade;');
    this.addSql('drop index if exists "messages_thread";');
    this.addSql('alter table "messages" drop column "parent_id", drop column "also_in_conversation", drop column "reply_count", drop column "last_reply_at";');
  }
}
