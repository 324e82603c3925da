import type { GraphQLResolveInfo } from 'graphql';
import { Arg, Args, Authorized, Ctx, FieldResolver, Info, Mutation, Query, Resolver, Root, Subscription, type SubscribeResolverData } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { argumentGiven, type ConnectionShape } from '../../shared/graphql/connection';
import { Topic, type ReportAddedPayload } from '../../shared/pubsub/topics';
import { viewerOf } from '../auth/auth.viewer';
import type { Context } from '../context';
import { MessageType } from '../message/message.types';
import { SYSTEM_USER } from '../user/user.mapper';
import { UserType } from '../user/user.types';
import { toReportType } from './report.service';
import { ReportConnection, ReportType, ReportsArgs } from './report.types';

@Resolver(() => ReportType)
export class ReportResolver {
  @Authorized()
  @Query(() => ReportConnection, {
    description:
      "Reports the viewer handles, newest first: their groups' (as owner or admin) and, for the instance's moderators, those of direct and project messages. Empty for others. first/after page from the newest toward older reports; last/before from the oldest toward newer ones.",
  })
  reports(@Args() args: ReportsArgs, @Ctx() ctx: Context, @Info() info: GraphQLResolveInfo): Promise<ConnectionShape<ReportType>> {
    return ctx.services.reports.list(ctx.em, viewerOf(ctx).userId, args, (name) => argumentGiven(info, name));
  }

  @Authorized()
  @Mutation(() => ReportType, {
    description:
      "Reports a message the viewer can see (else NOT_FOUND) to the group's owner and admins, or for a direct or project message to the instance's moderators (live reportAdded). Not one's own or a deleted one (BAD_USER_INPUT); once per user and message (CONFLICT).",
  })
  async reportMessage(
    @Arg('messageId', () => IdScalar, { description: 'The message.' }) messageId: string,
    @Arg('reason', { description: 'Why, 1 to 500 characters.' }) reason: string,
    @Ctx() ctx: Context,
  ): Promise<ReportType> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.report.spendWhenMade(me, 'You are reporting messages too fast; try again later.', (made) => ctx.services.reports.report(ctx.em, me, messageId, reason, made));
  }

  @Authorized()
  @Mutation(() => ReportType, { description: 'Marks a report RESOLVED; by those who see it (else NOT_FOUND). Resolving twice changes nothing.' })
  resolveReport(@Arg('reportId', () => IdScalar, { description: 'The report.' }) reportId: string, @Ctx() ctx: Context): Promise<ReportType> {
    return ctx.services.reports.resolve(ctx.em, viewerOf(ctx).userId, reportId);
  }

  @Authorized()
  @Subscription(() => ReportType, {
    description: 'New reports as they are made, to those who handle them (the group owner and admins; moderators for direct and project messages), as they stood when the report was made.',
    subscribe: ({ context }: SubscribeResolverData<unknown, unknown, Context>) => {
      const me = viewerOf(context).userId;
      return context.services.pubsub.iterate(Topic.ReportAdded, (e) => (e.audience.includes(me) ? e : undefined));
    },
  })
  reportAdded(@Root() e: ReportAddedPayload): ReportType {
    return toReportType(e);
  }

  @FieldResolver(() => MessageType, { description: 'The reported message (a tombstone once deleted).' })
  async message(@Root() r: ReportType, @Ctx() ctx: Context): Promise<MessageType> {
    // A report is shown only to those who may see its message (ReportService): one query per page of reports.
    const m = await ctx.loaders.message.load(r.messageId);
    if (!m) throw new Error(`report ${r.id} lost its message`);
    return m;
  }

  @FieldResolver(() => UserType, { description: 'Who made the report.' })
  async reporter(@Root() r: ReportType, @Ctx() ctx: Context): Promise<UserType> {
    return (await ctx.loaders.user.load(r.reporterId)) ?? SYSTEM_USER;
  }
}
