import { Migration } from '@mikro-orm/migrations';

/**
 * `messages_group_id_index` answers no query (a group's messages are read and deleted through
 * their conversation's keyset index; no release reads messages by `group_id`), yet every message
 * written added an entry to it: one index write less a send.
 */
export class Migration20261130030000_DropMessagesGroupIndex extends Migration {
  override async up(): Promise<void> {
    this.addSql('drop index if exists "messages_group_id_index";');
  }

  override async down(): Promise<void> {
    this.addSql('set local statement_timeout = 0;');
    this.addSql('create index if not exists "messages_group_id_index" on "messages" ("group_id");');
  }
}
