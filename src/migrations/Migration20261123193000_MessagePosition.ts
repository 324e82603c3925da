import { Migration } from '@mikro-orm/migrations';

/**
 * Every message's position in its conversation, private ones included: the head counts them all
 * (its `seq` counts only what every member sees), so each instance can hand a conversation's new
 * messages to its subscribers in commit order without a gap it cannot explain. Constant defaults:
 * no table rewrite; messages stored before have none, and are not ordered on their way.
 */
export class Migration20261123193000_MessagePosition extends Migration {
  override async up(): Promise<void> {
    this.addSql(`alter table "conversation_heads" add column "pos" bigint not null default 0;`);
    this.addSql(`alter table "messages" add column "pos" bigint null;`);
  }

  override async down(): Promise<void> {
    this.addSql(`alter table "messages" drop column "pos";`);
    this.addSql(`alter table "conversation_heads" drop column "pos";`);
  }
}
