import { Migration } from '@mikro-orm/migrations';

/**
 * A follower who replied took part from their first reply (threadParticipants' order, as the
 * thread's events give it): rows an earlier release kept at the time they began to follow move to
 * their first reply. The root's author stays first. Data only: both releases read the column alike.
 */
export class Migration20261127060000_ThreadParticipantOrder extends Migration {
  override async up(): Promise<void> {
    this.addSql(`update "thread_members" t set "joined_at" = f.first_at
      from (select r."parent_id" as root_id, r."sender_id" as user_id, min(r."created_at") as first_at
              from "messages" r where r."parent_id" is not null group by r."parent_id", r."sender_id") f
      where t."root_id" = f.root_id and t."user_id" = f.user_id and t."replied" and f.first_at > t."joined_at"
        and not exists (select 1 from "messages" rt where rt."id" = t."root_id" and rt."sender_id" = t."user_id");`);
  }

  override async down(): Promise<void> {
    // Nothing to undo: the earlier order is not kept, and either release reads this one.
  }
}
