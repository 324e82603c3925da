import { Migration } from '@mikro-orm/migrations';

export class Migration20261123053316_ServerSecrets extends Migration {

  override async up(): Promise<void> {
    this.addSql(`create table "server_secrets" ("name" varchar(64) not null, "value" text not null, "created_at" timestamptz not null, constraint "server_secrets_pkey" primary key ("name"));`);
  }

  override async down(): Promise<void> {
    this.addSql(`drop table if exists "server_secrets" cascade;`);
  }

}
