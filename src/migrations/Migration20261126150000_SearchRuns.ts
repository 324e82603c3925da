import { Migration } from '@mikro-orm/migrations';

/** Every ASCII punctuation mark but '?' (the parser reads it as a space already): read as a space by the index below (see search.repository's VECTOR). */
const PUNCTUATION = "!\"#$%&'()*+,-./:;<=>@[\\]^_`{|}~";

/**
 * Search's words are runs of letters and digits, in the index as in the query. PostgreSQL's parser
 * kept `3.14`, `-5`, `1.2.3`, `2024-01-05`, `555-1234`, e-mail addresses, hosts, URLs and file
 * names whole, where a query splits them into runs: none of them could be found, by themselves or
 * by a part. A new index reads the text with every ASCII punctuation mark as a space. Expand only:
 * the previous release searches through `messages_search_words`, which a later release drops;
 * `messages_search`, which no release in service reads any more (the one before searched through
 * `messages_search_words`), goes. ANALYZE gives search its word statistics (see search.repository's ESTIMATE).
 */
export class Migration20261126150000_SearchRuns extends Migration {
  override async up(): Promise<void> {
    // Building the index reads every message: no per-statement cap inside the migration's transaction.
    this.addSql('set local statement_timeout = 0;');
    const from = `'${PUNCTUATION.replace(/'/g, "''")}'`;
    const to = `'${' '.repeat(PUNCTUATION.length)}'`;
    this.addSql(`create index "messages_search_runs" on "messages" using gin (to_tsvector('parley_search'::regconfig, translate("content", ${from}, ${to}))) where "content" is not null;`);
    this.addSql('drop index if exists "messages_search";');
    this.addSql('analyze "messages";');
  }

  override async down(): Promise<void> {
    this.addSql(`create index if not exists "messages_search" on "messages" using gin (to_tsvector('parley_search'::regconfig, "content")) where "content" is not null;`);
    this.addSql('drop index if exists "messages_search_runs";');
  }
}
