import { Migration } from '@mikro-orm/migrations';

/**
 * A group's events are numbered (`event_seq`, one more with each event that tells its members,
 * under the group's row lock), as a project's actions are: each instance delivers a group's events
 * live in that order, whatever order their publishes arrive in (two changes committed back to back
 * on two instances reached a member swapped in 3 of 30 rounds of an outside probe). Expand only:
 * the previous release leaves the column at its default and publishes without a position,
 * delivered at once.
 */
export class Migration20261127190000_GroupEventPosition extends Migration {
  override async up(): Promise<void> {
    this.addSql('alter table "groups" add column if not exists "event_seq" bigint not null default 0;');
  }

  override async down(): Promise<void> {
    this.addSql('alter table "groups" drop column if exists "event_seq";');
  }
}
