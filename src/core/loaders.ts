import DataLoader from 'dataloader';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { PresenceService, PresenceState } from '../modules/presence/presence.service';
import { User } from '../modules/user/user.entity';
import { toUserType } from '../modules/user/user.mapper';
import type { UserType } from '../modules/user/user.types';

/** Per-operation batch loaders: one query for every user or presence a response needs. */
export interface Loaders {
  user: DataLoader<string, UserType | null>;
  presence: DataLoader<string, PresenceState>;
}

export function createLoaders(em: EntityManager, presence: PresenceService): Loaders {
  return {
    user: new DataLoader(async (ids) => {
      const users = await em.find(User, { id: { $in: [...ids] } });
      const byId = new Map(users.map((u) => [u.id, toUserType(u)]));
      return ids.map((id) => byId.get(id) ?? null);
    }),
    presence: new DataLoader((ids) => presence.states([...ids])),
  };
}
