import { Migration } from '@mikro-orm/migrations';

/**
 * Group roles, bans, invitations, slow mode and message reports (issue 31). Expand only: new
 * tables and columns with constant defaults, which the previous release neither reads nor writes
 * (its inserts still succeed: a member it adds is a MEMBER, a group it creates has no slow mode).
 * The owner stays `groups.owner_id`; `group_members.role` says ADMIN or MEMBER for everyone else.
 */
export class Migration20261124153351_GroupRoles extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "group_members" add column "role" varchar(8) not null default 'MEMBER';`);
    this.addSql(`alter table "group_members" add constraint "group_members_role_check" check ("role" in ('ADMIN', 'MEMBER'));`);
    // When the member last sent under slow mode (written only while the group has one).
    this.addSql(`alter table "group_members" add column "slow_sent_at" timestamptz null;`);
    this.addSql(`alter table "groups" add column "slow_mode_seconds" int not null default 0;`);
    this.addSql(`create table "group_bans" (
      "group_id" uuid not null,
      "user_id" uuid not null,
      "banned_by" uuid null,
      "created_at" timestamptz not null default now(),
      constraint "group_bans_pkey" primary key ("group_id", "user_id"),
      constraint "group_bans_group_id_foreign" foreign key ("group_id") references "groups" ("id") on update cascade on delete cascade,
      constraint "group_bans_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade,
      constraint "group_bans_banned_by_foreign" foreign key ("banned_by") references "users" ("id") on update cascade on delete set null
    );`);
    this.addSql(`create table "group_invites" (
      "group_id" uuid not null,
      "user_id" uuid not null,
      "invited_by" uuid null,
      "created_at" timestamptz not null default now(),
      constraint "group_invites_pkey" primary key ("group_id", "user_id"),
      constraint "group_invites_group_id_foreign" foreign key ("group_id") references "groups" ("id") on update cascade on delete cascade,
      constraint "group_invites_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade,
      constraint "group_invites_invited_by_foreign" foreign key ("invited_by") references "users" ("id") on update cascade on delete set null
    );`);
    this.addSql(`create index "group_invites_user_id_index" on "group_invites" ("user_id");`);
    this.addSql(`create table "reports" (
      "id" uuid not null,
      "message_id" uuid not null,
      "reporter_id" uuid not null,
      "group_id" uuid null,
      "reason" varchar(500) not null,
      "status" varchar(8) not null default 'OPEN',
      "created_at" timestamptz not null,
      "resolved_at" timestamptz null,
      "resolved_by" uuid null,
      constraint "reports_pkey" primary key ("id"),
      constraint "reports_status_check" check ("status" in ('OPEN', 'RESOLVED')),
      constraint "reports_message_id_foreign" foreign key ("message_id") references "messages" ("id") on update cascade on delete cascade,
      constraint "reports_reporter_id_foreign" foreign key ("reporter_id") references "users" ("id") on update cascade on delete cascade,
      constraint "reports_group_id_foreign" foreign key ("group_id") references "groups" ("id") on update cascade on delete cascade,
      constraint "reports_resolved_by_foreign" foreign key ("resolved_by") references "users" ("id") on update cascade on delete set null
    );`);
    this.addSql(`create unique index "reports_message_id_reporter_id_unique" on "reports" ("message_id", "reporter_id");`);
    this.addSql(`create index "reports_group_id_status_created_at_id_index" on "reports" ("group_id", "status", "created_at", "id");`);
    this.addSql(`create index "reports_status_created_at_index" on "reports" ("status", "created_at", "id") where "group_id" is null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "reports";`);
    this.addSql(`drop table if exists "group_invites";`);
    this.addSql(`drop table if exists "group_bans";`);
    this.addSql(`alter table "groups" drop column if exists "slow_mode_seconds";`);
    this.addSql(`alter table "group_members" drop column if exists "slow_sent_at";`);
    this.addSql(`alter table "group_members" drop constraint if exists "group_members_role_check";`);
    this.addSql(`alter table "group_members" drop column if exists "role";`);
  }
}
