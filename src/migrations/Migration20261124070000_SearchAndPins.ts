import { Migration } from '@mikro-orm/migrations';

/**
 * Message search and pins.
 *
 * Search: a text search configuration, `parley_search`, that reads every script as `simple` does
 * (no stemming, no stop words: one rule for Russian, English and French alike) with accents
 * stripped by the unaccent dictionary, so "cafe" finds "café" and ts_headline marks the accented
 * word in the original text. The two-argument to_tsvector is immutable, so the GIN index holds it
 * as an expression: the send statement is unchanged (it pays the index entry, nothing more), and
 * deleted messages (content null) are not in it.
 *
 * Pins: one row per pinned message, listed per conversation newest first.
 */
export class Migration20261124070000_SearchAndPins extends Migration {
  override async up(): Promise<void> {
    // Building the index reads every message: no per-statement cap inside the migration's transaction.
    this.addSql('set local statement_timeout = 0;');
    this.addSql('create extension if not exists unaccent;');
    this.addSql('create text search configuration "parley_search" (copy = pg_catalog.simple);');
    this.addSql(
      'alter text search configuration "parley_search" alter mapping for asciiword, asciihword, hword_asciipart, word, hword, hword_part, numword, numhword, hword_numpart with unaccent, simple;',
    );
    this.addSql(
      `create index "messages_search" on "messages" using gin (to_tsvector('parley_search'::regconfig, "content")) where "content" is not null;`,
    );

    this.addSql(
      `create table "message_pins" ("message_id" uuid not null, "conversation_key" varchar(160) not null, "pinned_by_id" uuid null, "pinned_at" timestamptz not null, constraint "message_pins_pkey" primary key ("message_id"));`,
    );
    this.addSql(`create index "message_pins_conversation" on "message_pins" ("conversation_key", "pinned_at");`);
    this.addSql(
      `alter table "message_pins" add constraint "message_pins_message_id_foreign" foreign key ("message_id") references "messages" ("id") on update cascade on delete cascade;`,
    );
    this.addSql(
      `alter table "message_pins" add constraint "message_pins_pinned_by_id_foreign" foreign key ("pinned_by_id") references "users" ("id") on update cascade on delete set null;`,
    );
  }

  override async down(): Promise<void> {
    this.addSql('drop table if exists "message_pins" cascade;');
    this.addSql('drop index if exists "messages_search";');
    this.addSql('drop text search configuration if exists "parley_search";');
  }
}
