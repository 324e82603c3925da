import { registerEnumType } from 'type-graphql';

/** Its own file: the user module's UserEdge names it too (Group.members edges). */
export enum GroupRole {
  OWNER = 'OWNER',
  ADMIN = 'ADMIN',
  MEMBER = 'MEMBER',
}
registerEnumType(GroupRole, {
  name: 'GroupRole',
  description: "A member's role in a group. The lobby has no OWNER: its ADMINs are set by the server's configuration.",
  valuesConfig: {
    OWNER: { description: 'One per group: manages roles, hands ownership over, deletes the group, and does all an ADMIN does.' },
    ADMIN: { description: 'Renames, invites, adds, removes and bans members (not the owner, not other admins), deletes any message, sets slow mode; exempt from slow mode.' },
    MEMBER: { description: 'Sends and reads; under slow mode, one message per interval.' },
  },
});
