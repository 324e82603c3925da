import { Migration } from '@mikro-orm/migrations';

/**
 * The message an event's preview is of (expand only: the previous release writes it null and never
 * reads it). Delivery reads that message again, so a webhook shows its text as it stands: an edit's,
 * none of a deleted one (an event of deleted messages alone is not sent).
 */
export class Migration20261126100000_WebhookPreviewMessage extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "notification_outbox" add column "preview_id" uuid null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "notification_outbox" drop column "preview_id";`);
  }
}
