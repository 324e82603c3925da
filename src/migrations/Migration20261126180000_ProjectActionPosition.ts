import { Migration } from '@mikro-orm/migrations';

/**
 * A project's changes are numbered (`action_seq`, one more with each change that tells its members,
 * under the project's row lock): each instance delivers a project's actions live in that order,
 * whatever order their publishes arrive in (two changes committed back to back on two instances
 * reached a subscriber swapped in 5 of 6 runs of an outside probe). Expand only: the previous
 * release leaves the column at its default and publishes without a position, delivered at once.
 */
export class Migration20261126180000_ProjectActionPosition extends Migration {
  override async up(): Promise<void> {
    this.addSql('alter table "projects" add column if not exists "action_seq" bigint not null default 0;');
  }

  override async down(): Promise<void> {
    this.addSql('alter table "projects" drop column if exists "action_seq";');
  }
}
