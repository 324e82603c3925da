import { Migration } from '@mikro-orm/migrations';

/**
 * Search reads a message's words with '<', '>' and '&' taken as spaces: PostgreSQL's parser took
 * `<standup at noon>` (or `x<y and z>w`) for a tag and indexed none of it, so those words were
 * never found. A new index of that expression (expand only: the previous release searches through
 * `messages_search`, which a later release drops). ANALYZE gives search its word statistics
 * (pg_stats of the new index: see search.repository's ESTIMATE).
 */
export class Migration20261126120000_SearchWords extends Migration {
  override async up(): Promise<void> {
    this.addSql(
      `create index "messages_search_words" on "messages" using gin (to_tsvector('parley_search'::regconfig, translate("content", '<>&', '   '))) where "content" is not null;`,
    );
    this.addSql('analyze "messages";');
  }

  override async down(): Promise<void> {
    this.addSql('drop index if exists "messages_search_words";');
  }
}
