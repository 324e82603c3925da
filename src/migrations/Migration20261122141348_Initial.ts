import { Migration } from '@mikro-orm/migrations';

export class Migration20261122141348_Initial extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create type "project_action_kind" as enum ('ADDED_TO_PROJECT', 'PARTICIPANT_ADDED', 'PROJECT_DELETED', 'PROJECT_RENAMED', 'PARTICIPANT_LEFT', 'COACH_DESIGNATED', 'COACH_WITHDRAWN', 'PARTICIPANT_REMOVED');`);
    this.addSql(`create type "project_role" as enum ('OWNER', 'COACH', 'PARTICIPANT');`);
    this.addSql(`create type "friend_request_status" as enum ('PENDING', 'ACCEPTED', 'DECLINED');`);
    this.addSql(`create table "attachments" ("id" uuid not null, "file_name" varchar(255) not null, "mime_type" varchar(100) not null, "size" int not null, "data" bytea not null, "created_at" timestamptz not null, constraint "attachments_pkey" primary key ("id"));`);

    this.addSql(`create table "users" ("id" uuid not null, "username" varchar(64) not null, "display_name" varchar(64) null, "password_hash" text not null, "created_at" timestamptz not null, "last_seen_at" timestamptz null, "deleted_at" timestamptz null, constraint "users_pkey" primary key ("id"));`);
    this.addSql(`create unique index "users_username_lower_unique" on "users" (lower("username"));`);

    this.addSql(`create table "sessions" ("id" uuid not null, "user_id" uuid not null, "token_hash" varchar(64) not null, "created_at" timestamptz not null, "expires_at" timestamptz not null, constraint "sessions_pkey" primary key ("id"));`);
    this.addSql(`create index "sessions_user_id_index" on "sessions" ("user_id");`);
    this.addSql(`alter table "sessions" add constraint "sessions_token_hash_unique" unique ("token_hash");`);

    this.addSql(`create table "project_actions" ("id" uuid not null, "recipient_id" uuid not null, "kind" "project_action_kind" not null, "message" text not null, "project_id" uuid not null, "project_title" varchar(100) not null, "actor_id" uuid null, "target_id" uuid null, "previous_title" varchar(100) null, "created_at" timestamptz not null, constraint "project_actions_pkey" primary key ("id"));`);
    this.addSql(`create index "project_actions_recipient_id_project_id_created_at_id_index" on "project_actions" ("recipient_id", "project_id", "created_at", "id");`);
    this.addSql(`create index "project_actions_recipient_id_created_at_id_index" on "project_actions" ("recipient_id", "created_at", "id");`);

    this.addSql(`create table "projects" ("id" uuid not null, "title" varchar(100) not null, "owner_id" uuid not null, "created_at" timestamptz not null, constraint "projects_pkey" primary key ("id"));`);

    this.addSql(`create table "project_members" ("id" uuid not null, "project_id" uuid not null, "user_id" uuid not null, "role" "project_role" not null, "joined_at" timestamptz not null, constraint "project_members_pkey" primary key ("id"));`);
    this.addSql(`create index "project_members_user_id_index" on "project_members" ("user_id");`);
    this.addSql(`alter table "project_members" add constraint "project_members_project_id_user_id_unique" unique ("project_id", "user_id");`);

    this.addSql(`create table "messages" ("id" uuid not null, "conversation_key" varchar(160) not null, "sender_id" uuid not null, "content" text null, "attachment_id" uuid null, "group_id" uuid null, "project_id" uuid null, "recipient_id" uuid null, "client_message_id" varchar(64) null, "created_at" timestamptz not null, constraint "messages_pkey" primary key ("id"));`);
    this.addSql(`create index "messages_group_id_index" on "messages" ("group_id");`);
    this.addSql(`create index "messages_conversation_keyset" on "messages" ("conversation_key", "created_at", "id");`);
    this.addSql(`alter table "messages" add constraint "messages_sender_client_id" unique ("sender_id", "client_message_id");`);

    this.addSql(`create table "groups" ("id" uuid not null, "name" varchar(100) not null, "owner_id" uuid null, "is_private" boolean not null default false, "is_lobby" boolean not null default false, "member_count" int not null default 0, "created_at" timestamptz not null, constraint "groups_pkey" primary key ("id"));`);
    this.addSql(`create index "groups_created_at_id_index" on "groups" ("created_at", "id");`);
    this.addSql(`create unique index "groups_single_lobby" on "groups" ("is_lobby") where "is_lobby";`);

    this.addSql(`create table "group_members" ("id" uuid not null, "group_id" uuid not null, "user_id" uuid not null, "joined_at" timestamptz not null, constraint "group_members_pkey" primary key ("id"));`);
    this.addSql(`create index "group_members_user_id_index" on "group_members" ("user_id");`);
    this.addSql(`create index "group_members_group_id_joined_at_id_index" on "group_members" ("group_id", "joined_at", "id");`);
    this.addSql(`alter table "group_members" add constraint "group_members_group_id_user_id_unique" unique ("group_id", "user_id");`);

    this.addSql(`create table "friendships" ("id" uuid not null, "user_a_id" uuid not null, "user_b_id" uuid not null, "created_at" timestamptz not null, constraint "friendships_pkey" primary key ("id"));`);
    this.addSql(`create index "friendships_user_b_id_index" on "friendships" ("user_b_id");`);
    this.addSql(`alter table "friendships" add constraint "friendships_user_a_id_user_b_id_unique" unique ("user_a_id", "user_b_id");`);

    this.addSql(`create table "friend_requests" ("id" uuid not null, "from_id" uuid not null, "to_id" uuid not null, "status" "friend_request_status" not null default 'PENDING', "created_at" timestamptz not null, "responded_at" timestamptz null, constraint "friend_requests_pkey" primary key ("id"));`);
    this.addSql(`create index "friend_requests_from_id_index" on "friend_requests" ("from_id");`);
    this.addSql(`create index "friend_requests_to_id_index" on "friend_requests" ("to_id");`);
    this.addSql(`create unique index "friend_requests_pending_pair" on "friend_requests" (least("from_id", "to_id"), greatest("from_id", "to_id")) where "status" = 'PENDING';`);

    this.addSql(`alter table "sessions" add constraint "sessions_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade;`);

    this.addSql(`alter table "project_actions" add constraint "project_actions_recipient_id_foreign" foreign key ("recipient_id") references "users" ("id") on update cascade on delete cascade;`);

    this.addSql(`alter table "projects" add constraint "projects_owner_id_foreign" foreign key ("owner_id") references "users" ("id") on update cascade;`);

    this.addSql(`alter table "project_members" add constraint "project_members_project_id_foreign" foreign key ("project_id") references "projects" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "project_members" add constraint "project_members_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade;`);

    this.addSql(`alter table "messages" add constraint "messages_sender_id_foreign" foreign key ("sender_id") references "users" ("id") on update cascade;`);
    this.addSql(`alter table "messages" add constraint "messages_attachment_id_foreign" foreign key ("attachment_id") references "attachments" ("id") on update cascade on delete set null;`);

    this.addSql(`alter table "groups" add constraint "groups_owner_id_foreign" foreign key ("owner_id") references "users" ("id") on update cascade on delete set null;`);

    this.addSql(`alter table "group_members" add constraint "group_members_group_id_foreign" foreign key ("group_id") references "groups" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "group_members" add constraint "group_members_user_id_foreign" foreign key ("user_id") references "users" ("id") on update cascade on delete cascade;`);

    this.addSql(`alter table "friendships" add constraint "friendships_user_a_id_foreign" foreign key ("user_a_id") references "users" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "friendships" add constraint "friendships_user_b_id_foreign" foreign key ("user_b_id") references "users" ("id") on update cascade on delete cascade;`);

    this.addSql(`alter table "friend_requests" add constraint "friend_requests_from_id_foreign" foreign key ("from_id") references "users" ("id") on update cascade on delete cascade;`);
    this.addSql(`alter table "friend_requests" add constraint "friend_requests_to_id_foreign" foreign key ("to_id") references "users" ("id") on update cascade on delete cascade;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "messages" drop constraint "messages_attachment_id_foreign";`);

    this.addSql(`alter table "sessions" drop constraint "sessions_user_id_foreign";`);

    this.addSql(`alter table "project_actions" drop constraint "project_actions_recipient_id_foreign";`);

    this.addSql(`alter table "projects" drop constraint "projects_owner_id_foreign";`);

    this.addSql(`alter table "project_members" drop constraint "project_members_user_id_foreign";`);

    this.addSql(`alter table "messages" drop constraint "messages_sender_id_foreign";`);

    this.addSql(`alter table "groups" drop constraint "groups_owner_id_foreign";`);

    this.addSql(`alter table "group_members" drop constraint "group_members_user_id_foreign";`);

    this.addSql(`alter table "friendships" drop constraint "friendships_user_a_id_foreign";`);

    this.addSql(`alter table "friendships" drop constraint "friendships_user_b_id_foreign";`);

    this.addSql(`alter table "friend_requests" drop constraint "friend_requests_from_id_foreign";`);

    this.addSql(`alter table "friend_requests" drop constraint "friend_requests_to_id_foreign";`);

    this.addSql(`alter table "project_members" drop constraint "project_members_project_id_foreign";`);

    this.addSql(`alter table "group_members" drop constraint "group_members_group_id_foreign";`);

    this.addSql(`drop table if exists "attachments" cascade;`);

    this.addSql(`drop table if exists "users" cascade;`);

    this.addSql(`drop table if exists "sessions" cascade;`);

    this.addSql(`drop table if exists "project_actions" cascade;`);

    this.addSql(`drop table if exists "projects" cascade;`);

    this.addSql(`drop table if exists "project_members" cascade;`);

    this.addSql(`drop table if exists "messages" cascade;`);

    this.addSql(`drop table if exists "groups" cascade;`);

    this.addSql(`drop table if exists "group_members" cascade;`);

    this.addSql(`drop table if exists "friendships" cascade;`);

    this.addSql(`drop table if exists "friend_requests" cascade;`);

    this.addSql(`drop type "project_action_kind";`);
    this.addSql(`drop type "project_role";`);
    this.addSql(`drop type "friend_request_status";`);
  }

}
