import { Migration } from '@mikro-orm/migrations';

/**
 * Where a project member's read marker came to rest while it rested on private messages, and when,
 * for the receipts others see of it (conversationRepository.receipts). A member who may not read
 * the message a marker rests on sees it on the newest one before it that they may read, and with
 * it the time the marker first reached that one: it took the time of the marker's last move, so
 * a third member learned when two others exchanged a private message (an outside probe). Rows go
 * with their member's row. Expand only: the previous release neither writes nor reads it.
 */
export class Migration20261128150000_MarkerLandings extends Migration {
  override async up(): Promise<void> {
    this.addSql(`create table if not exists "marker_landings" (
      "conversation_key" varchar(160) not null, "user_id" uuid not null, "at" timestamptz not null, "message_id" uuid not null,
      "read_at" timestamptz not null,
      constraint "marker_landings_pkey" primary key ("conversation_key", "user_id", "at", "message_id"),
      constraint "marker_landings_member_fkey" foreign key ("conversation_key", "user_id")
        references "conversation_members" ("conversation_key", "user_id") on delete cascade);`);
  }

  override async down(): Promise<void> {
    this.addSql('drop table if exists "marker_landings";');
  }
}
