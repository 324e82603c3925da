import { Migration } from '@mikro-orm/migrations';

/**
 * The messages a message's event covers, oldest first (expand only: the previous release neither
 * writes nor reads it; its rows stay null and are sent as they were). Delivery counts them again
 * for a recipient who blocks someone: a block of one sender since drops that sender's messages from
 * the event, not the others' with them.
 */
export class Migration20261127050000_WebhookCoveredMessages extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "notification_outbox" add column if not exists "covered" uuid[] null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "notification_outbox" drop column if exists "covered";`);
  }
}
