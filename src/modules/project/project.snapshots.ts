import { Topic } from '../../shared/pubsub/topics';
import { Snapshots } from '../../shared/snapshots';
import { toProjectType } from './project.mapper';
import { projectRepository } from './project.repository';
import type { ProjectType } from './project.types';

/**
 * Projects as message events show them (`Message.project` in a subscription), one read shared by
 * the subscribers here (see Snapshots): each member's run read the project and its members apart,
 * two queries an event a subscriber. Every change to a project (renamed, a member added, removed or
 * gone, a coach designated or withdrawn, deleted) is a project action or a membership change, and
 * forgets its copy as it is told here.
 */
export class ProjectSnapshots extends Snapshots<ProjectType> {
  constructor() {
    super(
      async (em, id) => {
        const project = await projectRepository.byId(em, id);
        return project && toProjectType(project, (await projectRepository.members(em, [id])).get(id)!);
      },
      (pubsub, forget) => [
        pubsub.on(Topic.ProjectAction, (a) => forget(a.projectId)),
        pubsub.on(Topic.MembershipChanged, (m) => m.scope === 'project' && forget(m.id)),
      ],
    );
  }
}
