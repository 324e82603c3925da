import { Migration } from '@mikro-orm/migrations';

/**
 * Offline notifications (webhooks): each user's level, the outbox the delivery worker drains, the
 * tail's cursor over new messages, and the index that tail reads by. BRIN on messages.created_at:
 * rows are appended in created_at order, so a BRIN range summary finds the newest messages while
 * costing a send almost nothing (a B-tree would add an index insertion to every message).
 */
export class Migration20261124073000_Notifications extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "users" add column "notification_level" varchar(8) not null default 'ALL';`);
    this.addSql(`alter table "users" add constraint "users_notification_level_check" check ("notification_level" in ('ALL', 'MENTIONS', 'NONE'));`);
    this.addSql(`create index "messages_created_at_brin" on "messages" using brin ("created_at") with (pages_per_range = 32);`);
    this.addSql(`create table "notification_outbox" (
      "id" uuid not null,
      "kind" varchar(16) not null,
      "recipient_id" uuid not null,
      "conversation_key" varchar(160) null,
      "sender_id" uuid null,
      "source_id" uuid not null,
      "preview" varchar(140) null,
      "count" int not null default 1,
      "created_at" timestamptz not null,
      "last_at" timestamptz not null,
      "state" varchar(10) not null default 'PENDING',
      "due_at" timestamptz not null,
      "attempts" int not null default 0,
      "leased_until" timestamptz null,
      "done_at" timestamptz null,
      constraint "notification_outbox_pkey" primary key ("id"),
      constraint "notification_outbox_recipient_id_foreign" foreign key ("recipient_id") references "users" ("id") on update cascade on delete cascade
    );`);
    this.addSql(`create unique index "notification_outbox_source" on "notification_outbox" ("source_id", "recipient_id");`);
    this.addSql(`create index "notification_outbox_due" on "notification_outbox" ("due_at") where "state" = 'PENDING';`);
    this.addSql(`create index "notification_outbox_recipient" on "notification_outbox" ("recipient_id", "conversation_key", "kind", "created_at") where "state" = 'PENDING';`);
    this.addSql(`create index "notification_outbox_done" on "notification_outbox" ("done_at") where "state" <> 'PENDING';`);
    this.addSql(`create table "notification_cursors" ("name" varchar(32) not null, "at" timestamptz not null, "id" uuid null, constraint "notification_cursors_pkey" primary key ("name"));`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "notification_cursors" cascade;`);
    this.addSql(`drop table if exists "notification_outbox" cascade;`);
    this.addSql(`drop index if exists "messages_created_at_brin";`);
    this.addSql(`alter table "users" drop constraint if exists "users_notification_level_check";`);
    this.addSql(`alter table "users" drop column "notification_level";`);
  }
}
