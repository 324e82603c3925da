import { Migration } from '@mikro-orm/migrations';

/**
 * A deleted group's or project's head stays, closed, instead of going (expand only: the previous
 * release never reads the column and still deletes heads). A send's head upsert skips a closed
 * head, and so writes no message: a send racing the deletion either committed before it (and its
 * message goes with the conversation) or stores nothing, where a deleted head let the upsert start
 * the conversation again under the deleted group's key.
 */
export class Migration20261126090000_ClosedHeads extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "conversation_heads" add column "closed_at" timestamptz null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "conversation_heads" drop column "closed_at";`);
  }
}
