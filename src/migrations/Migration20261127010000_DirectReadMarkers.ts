import { Migration } from '@mikro-orm/migrations';

/**
 * The read markers of a direct conversation whose friendship ended (its members' rows go), kept
 * so that a friendship restored brings each member back where they had read: up to the newest, it
 * read every unread message and told the peer so; up to their own newest message, it unread what
 * they had read and moved their receipt back (two outside probes). Expand only: the previous
 * release neither writes nor reads it.
 */
export class Migration20261127010000_DirectReadMarkers extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table if not exists "direct_read_markers" (
      "conversation_key" varchar(160) not null, "user_id" uuid not null, "read_seq" bigint not null,
      "last_read_message_id" uuid null, "last_read_at" timestamptz null, "read_at" timestamptz null,
      constraint "direct_read_markers_pkey" primary key ("conversation_key", "user_id"));`);
  }

  override async down(): Promise<void> {
    this.addSql('drop table if exists "direct_read_markers";');
  }
}
