import { randomBytes } from 'node:crypto';
import { Entity, PrimaryKey, Property } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';

/**
 * Secrets the server makes up itself when none is configured, kept in the database so that
 * every instance sharing it agrees (and a restart keeps what was signed valid).
 */
@Entity({ tableName: 'server_secrets' })
export class ServerSecret {
  @PrimaryKey({ type: 'string', length: 64 })
  name!: string;

  /** base64 of 32 random bytes. */
  @Property({ type: 'text' })
  value!: string;

  @Property({ type: 'datetime' })
  createdAt: Date = new Date();
}

/** The secret named `name`: created once by whichever instance asks first, then the same for all. */
export async function serverSecret(em: EntityManager, name: string): Promise<Buffer> {
  await em.execute('insert into server_secrets (name, value, created_at) values (?, ?, now()) on conflict (name) do nothing', [
    name,
    randomBytes(32).toString('base64'),
  ]);
  const [row]: { value: string }[] = await em.execute('select value from server_secrets where name = ?', [name]);
  return Buffer.from(row.value, 'base64');
}
