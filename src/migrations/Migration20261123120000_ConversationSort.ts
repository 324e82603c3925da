import { Migration } from '@mikro-orm/migrations';

/** SIDEBAR_FANOUT_MAX's default: the backfill keys the rows of conversations this small. */
const SMALL = 32;
const ACTIVITY = 'coalesce(greatest(h.activity_at, cm.private_at), cm.joined_at)';

/**
 * Sidebar sort keys in the member rows of small conversations (see ConversationMember.sortAt):
 * a page is read by index instead of probing one head per conversation of the user. Existing
 * small conversations get their keys now, exactly what their heads give; join times are cut to
 * milliseconds, as every other time a sidebar cursor carries.
 */
export class Migration20261123120000_ConversationSort extends Migration {

  override async up(): Promise<void> {
    this.addSql('set local statement_timeout = 0;');
    this.addSql(`alter table "conversation_members" add column "sort_at" timestamptz null;`);
    this.addSql(`alter table "conversation_heads" add column "member_sort" boolean not null default false, add column "sort_cleared_at" timestamptz null;`);
    // Join times in milliseconds, as message times and cursors are (a finer one could be skipped at a page boundary).
    this.addSql(`update "conversation_members" set "joined_at" = date_trunc('milliseconds', "joined_at") where "joined_at" <> date_trunc('milliseconds', "joined_at");`);
    this.addSql(`create temporary table "small_conversations" on commit drop as
      select conversation_key from "conversation_members" group by conversation_key having count(*) <= ${SMALL};`);
    this.addSql(`update "conversation_members" cm set "sort_at" = (select ${ACTIVITY} from (select 1) one left join "conversation_heads" h on h.conversation_key = cm.conversation_key)
      where cm.conversation_key in (select conversation_key from "small_conversations");`);
    this.addSql(`update "conversation_heads" set "member_sort" = true where conversation_key in (select conversation_key from "small_conversations");`);
    this.addSql(`drop index "conversation_members_user";`);
    this.addSql(`create index "conversation_members_user" on "conversation_members" ("user_id", "sort_at", "conversation_key") include ("joined_at", "private_at");`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop index "conversation_members_user";`);
    this.addSql(`create index "conversation_members_user" on "conversation_members" ("user_id", "conversation_key") include ("joined_at", "private_at");`);
    this.addSql(`alter table "conversation_heads" drop column "member_sort", drop column "sort_cleared_at";`);
    this.addSql(`alter table "conversation_members" drop column "sort_at";`);
  }

}
