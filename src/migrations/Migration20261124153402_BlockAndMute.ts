import { Migration } from '@mikro-orm/migrations';

/**
 * Block and mute (issue "Safety"). Expand only: a new table, and a nullable column with no default
 * (added without rewriting conversation_members), so the previous release runs on as before.
 * The partial index holds only muted rows: a user's mutes load with each of their sessions.
 */
export class Migration20261124153402_BlockAndMute extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table "user_blocks" (
      "blocker_id" uuid not null,
      "blocked_id" uuid not null,
      "created_at" timestamptz not null,
      constraint "user_blocks_pkey" primary key ("blocker_id", "blocked_id"),
      constraint "user_blocks_blocker_id_foreign" foreign key ("blocker_id") references "users" ("id") on update cascade on delete cascade,
      constraint "user_blocks_blocked_id_foreign" foreign key ("blocked_id") references "users" ("id") on update cascade on delete cascade
    );`);
    this.addSql(`create index "user_blocks_blocked" on "user_blocks" ("blocked_id");`);
    this.addSql(`alter table "conversation_members" add column "muted_until" timestamptz null;`);
    this.addSql(`create index "conversation_members_muted" on "conversation_members" ("user_id") where "muted_until" is not null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop index if exists "conversation_members_muted";`);
    this.addSql(`alter table "conversation_members" drop column if exists "muted_until";`);
    this.addSql(`drop table if exists "user_blocks" cascade;`);
  }
}
