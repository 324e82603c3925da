import { Migration } from '@mikro-orm/migrations';

/**
 * What a send with a clientMessageId carried (its text and file), as a digest written by its first
 * edit or its deletion: a retry compares against it, so the key reused for another text after the
 * message changed is CONFLICT as before it changed (it answered with the first message; an outside
 * probe). Expand only: the previous release leaves the column null, and a retry of a message it
 * edited compares as that release did.
 */
export class Migration20261128140000_SentDigest extends Migration {
  override async up(): Promise<void> {
    this.addSql('alter table "messages" add column if not exists "sent_digest" bytea null;');
  }

  override async down(): Promise<void> {
    this.addSql('alter table "messages" drop column if exists "sent_digest";');
  }
}
