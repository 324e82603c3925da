import { Migration } from '@mikro-orm/migrations';

/**
 * The contract step of SearchWords: `messages_search_words` went out of use with SearchRuns (no
 * release since reads it; the one before this searches through `messages_search_runs`), yet every
 * message written still added its words to it, a second GIN index on the send path.
 */
export class Migration20261130020000_DropSearchWords extends Migration {
  override async up(): Promise<void> {
    this.addSql('drop index if exists "messages_search_words";');
  }

  override async down(): Promise<void> {
    // Building the index reads every message: no per-statement cap inside the migration's transaction.
    this.addSql('set local statement_timeout = 0;');
    this.addSql(
      `create index if not exists "messages_search_words" on "messages" using gin (to_tsvector('parley_search'::regconfig, translate("content", '<>&', '   '))) where "content" is not null;`,
    );
  }
}
