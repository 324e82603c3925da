import type { EntityManager } from '@mikro-orm/postgresql';
import type { MembershipIndex } from '../../core/membership';
import { ForbiddenError, NotFoundError } from '../../shared/errors';
import type { PubSub } from '../../shared/pubsub/pubsub';
import { isId } from '../../shared/validation';
import { Project, ProjectMember } from './project.entity';

/** Projects, their roles and the actions that notify members. Every project rule lives here. */
export class ProjectService {
  constructor(
    private readonly pubsub: PubSub,
    private readonly memberships: MembershipIndex,
  ) {}

  /** A project the viewer belongs to. NOT_FOUND when it does not exist or the viewer is not in it. */
  async asMember(em: EntityManager, projectId: string, viewerId: string): Promise<{ project: Project; member: ProjectMember }> {
    const project = isId(projectId) ? await em.findOne(Project, { id: projectId }) : null;
    const member = project ? await em.findOne(ProjectMember, { project: project.id, user: viewerId }) : null;
    if (!project || !member) throw new NotFoundError('Project');
    return { project, member };
  }

  /** For subscription filters: answered from memory. */
  isMemberCached(userId: string, projectId: string): boolean {
    return this.memberships.has('project', userId, projectId);
  }

  /** Whether `userId` is a member of the project (used for private messages inside it). */
  async isMember(em: EntityManager, projectId: string, userId: string): Promise<boolean> {
    return !!(await em.findOne(ProjectMember, { project: projectId, user: userId }));
  }

  protected forbidden(): never {
    throw new ForbiddenError();
  }

  protected get bus(): PubSub {
    return this.pubsub;
  }
}
