import { ArgsType, Field, Int, ObjectType, registerEnumType } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { ConnectionType } from '../../shared/graphql/connection';
import { Node } from '../../shared/graphql/node';

export enum ReportStatus {
  OPEN = 'OPEN',
  RESOLVED = 'RESOLVED',
}
registerEnumType(ReportStatus, {
  name: 'ReportStatus',
  description: 'Where a report stands.',
  valuesConfig: {
    OPEN: { description: 'Not handled yet.' },
    RESOLVED: { description: 'Marked handled by a moderator (resolveReport).' },
  },
});

@ObjectType('Report', {
  implements: Node,
  description:
    "A user's report of a message. Seen by the group's owner and admins (a group message) or the instance's moderators (MODERATORS: a direct or project message), and returned to the reporter when made.",
})
export class ReportType {
  @Field(() => IdScalar, { description: 'The report.' }) id!: string;
  @Field({ description: 'Why the reporter flagged the message (1 to 500 characters).' }) reason!: string;
  @Field(() => ReportStatus, { description: 'OPEN until resolved.' }) status!: ReportStatus;
  @Field(() => Date, { description: 'When it was made.' }) createdAt!: Date;
  messageId!: string;
  reporterId!: string;
}

export const ReportConnection = ConnectionType('Report', ReportType);

@ArgsType()
export class ReportsArgs {
  @Field(() => ReportStatus, { nullable: true, defaultValue: ReportStatus.OPEN, description: 'Which reports: OPEN (the default) or RESOLVED.' })
  status?: ReportStatus | null;
  @Field(() => Int, { nullable: true, description: 'Page size, 0 to 100 (default 20).' }) first?: number | null;
  @Field(() => String, { nullable: true, description: 'The endCursor of the previous page.' }) after?: string | null;
  @Field(() => Int, { nullable: true, description: 'Page size paging from the oldest toward newer reports, 0 to 100 (default 20); not with first/after.' }) last?: number | null;
  @Field(() => String, { nullable: true, description: 'Reports newer than this cursor (the startCursor of the page after); not with first/after.' }) before?: string | null;
}
