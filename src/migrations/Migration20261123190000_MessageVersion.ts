import { Migration } from '@mikro-orm/migrations';

/**
 * A message's version: one more with each edit, deletion and reaction change, in commit order
 * (the row's lock). Events about a message carry it, so an older copy that arrives after a newer
 * one is dropped instead of shown last. A constant default adds the column without rewriting the table.
 */
export class Migration20261123190000_MessageVersion extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "messages" add column "version" integer not null default 0;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "messages" drop column "version";`);
  }
}
