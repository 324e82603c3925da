import { Migration } from '@mikro-orm/migrations';

/**
 * Group join times in milliseconds, as a members page's cursor carries them (joins stored with
 * PostgreSQL's microseconds made the next page repeat the row the cursor was cut at).
 */
export class Migration20261123160000_GroupJoinMs extends Migration {
  override async up(): Promise<void> {
    this.addSql(`update "group_members" set "joined_at" = date_trunc('milliseconds', "joined_at") where "joined_at" <> date_trunc('milliseconds', "joined_at");`);
  }

  /** Nothing to undo: join times in milliseconds are as valid before this migration as after. */
  override async down(): Promise<void> {}
}
