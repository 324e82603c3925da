import DataLoader from 'dataloader';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { PresenceService, PresenceState } from './presence/presence.service';
import type { ProjectService } from './project/project.service';
import type { ProjectType } from './project/project.types';
import { User } from './user/user.entity';
import { toUserType } from './user/user.mapper';
import type { UserType } from './user/user.types';

/** Per-operation batch loaders: one query for every user or presence a response needs. */
export interface Loaders {
  user: DataLoader<string, UserType | null>;
  presence: DataLoader<string, PresenceState>;
  /** Projects as the viewer sees them (null when not a member); each loaded once per operation, however many entries name it. */
  project: DataLoader<string, ProjectType | null>;
}

export function createLoaders(em: EntityManager, services: { presence: PresenceService; projects: ProjectService }, viewerId: string | null): Loaders {
  const { presence, projects } = services;
  return {
    user: new DataLoader(async (ids) => {
      const users = await em.find(User, { id: { $in: [...ids] } });
      const byId = new Map(users.map((u) => [u.id, toUserType(u)]));
      return ids.map((id) => byId.get(id) ?? null);
    }),
    presence: new DataLoader((ids) => presence.states([...ids])),
    project: new DataLoader((ids) => Promise.all(ids.map((id) => (viewerId ? projects.find(em, id, viewerId) : null)))),
  };
}
