import { Topic } from '../../shared/pubsub/topics';
import { Snapshots } from '../../shared/snapshots';
import { toGroupType } from './group.mapper';
import { groupRepository } from './group.repository';
import type { GroupType } from './group.types';

/**
 * Groups as message events show them (`Message.group` in a subscription), one read shared by the
 * subscribers here (see Snapshots). A change to the group (a rename, slow mode, a member come or
 * gone) forgets its copy as it is told here.
 */
export class GroupSnapshots extends Snapshots<GroupType> {
  constructor() {
    super(
      async (em, id) => {
        const [g] = await groupRepository.byIds(em, [id]);
        return g ? toGroupType(g) : null;
      },
      (pubsub, forget) => [
        pubsub.on(Topic.GroupEvent, (e) => forget(e.groupId)),
        pubsub.on(Topic.MembershipChanged, (m) => m.scope === 'group' && forget(m.id)),
      ],
    );
  }
}
