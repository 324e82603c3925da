import { Arg, Args, Authorized, Ctx, FieldResolver, Info, Mutation, Query, Resolver, Root, Subscription, type SubscribeResolverData } from 'type-graphql';
import { IdScalar } from '../../shared/graphql/scalars';
import { viewerOf } from '../auth/auth.viewer';
import { eventToLocalMember, type Context } from '../context';
import { argumentGiven, type ConnectionShape } from '../../shared/graphql/connection';
import type { GraphQLResolveInfo } from 'graphql';
import { Topic, type ProjectActionEntryPayload } from '../../shared/pubsub/topics';
import { MessageType } from '../message/message.types';
import { SYSTEM_USER } from '../user/user.mapper';
import { UserType } from '../user/user.types';
import { ProjectRole } from './project.entity';
import { entryToActionType } from './project.mapper';
import { ProjectActionConnection, ProjectActionsArgs, ProjectActionType, ProjectType } from './project.types';

async function users(ctx: Context, ids: string[]): Promise<UserType[]> {
  const found = await ctx.loaders.user.loadMany(ids);
  return found.filter((u): u is UserType => !!u && !(u instanceof Error));
}

@Resolver(() => ProjectType)
export class ProjectResolver {
  @Authorized()
  @Query(() => [ProjectType], { description: "The viewer's projects, oldest first." })
  projects(@Ctx() ctx: Context): Promise<ProjectType[]> {
    return ctx.services.projects.list(ctx.em, viewerOf(ctx).userId);
  }

  @Authorized()
  @Query(() => ProjectType, { nullable: true, description: 'Null unless the viewer is a member.' })
  project(@Arg('id', () => IdScalar) id: string, @Ctx() ctx: Context): Promise<ProjectType | null> {
    return ctx.services.projects.find(ctx.em, id, viewerOf(ctx).userId);
  }

  @Authorized()
  @Query(() => ProjectActionConnection, { description: "The viewer's inbox, edges oldest first (the newest `last` by default; `before: startCursor` pages back): nothing is lost while offline." })
  projectActions(@Args() args: ProjectActionsArgs, @Ctx() ctx: Context, @Info() info: GraphQLResolveInfo): Promise<ConnectionShape<ProjectActionType>> {
    return ctx.services.projects.actions(ctx.em, viewerOf(ctx).userId, args, (name) => argumentGiven(info, name));
  }

  @Authorized()
  @Mutation(() => ProjectType, { description: 'The caller becomes its owner.' })
  createProject(@Arg('title') title: string, @Ctx() ctx: Context): Promise<ProjectType> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.createProject.spend(me, 'You are creating projects too fast; try again later.', () => ctx.services.projects.create(ctx.em, me, title));
  }

  @Authorized()
  @Mutation(() => ProjectType, { description: 'Owner only.' })
  renameProject(@Arg('projectId', () => IdScalar) projectId: string, @Arg('title') title: string, @Ctx() ctx: Context): Promise<ProjectType> {
    return ctx.services.projects.rename(ctx.em, viewerOf(ctx).userId, projectId, title);
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Owner only; every member is told and loses access.' })
  deleteProject(@Arg('projectId', () => IdScalar) projectId: string, @Ctx() ctx: Context): Promise<boolean> {
    return ctx.services.projects.delete(ctx.em, viewerOf(ctx).userId, projectId);
  }

  @Authorized()
  @Mutation(() => ProjectType, { description: 'Owner and coaches; a user who blocks the adder is FORBIDDEN, as for a group invitation.' })
  addProjectParticipant(@Arg('projectId', () => IdScalar) projectId: string, @Arg('userId', () => IdScalar) userId: string, @Ctx() ctx: Context): Promise<ProjectType> {
    const me = viewerOf(ctx).userId;
    return ctx.services.rates.projectAdd.spendWhenMade(me, 'You are adding participants too fast; try again later.', (made) => ctx.services.projects.addParticipant(ctx.em, me, projectId, userId, made));
  }

  @Authorized()
  @Mutation(() => ProjectType, { description: 'Owner and coaches; only the owner removes a coach.' })
  removeProjectParticipant(@Arg('projectId', () => IdScalar) projectId: string, @Arg('userId', () => IdScalar) userId: string, @Ctx() ctx: Context): Promise<ProjectType> {
    return ctx.services.projects.removeParticipant(ctx.em, viewerOf(ctx).userId, projectId, userId);
  }

  @Authorized()
  @Mutation(() => Boolean, { description: 'Anyone; an owner hands the project to the coach who joined it first, else the participant who joined it first; the last one out deletes it.' })
  leaveProject(@Arg('projectId', () => IdScalar) projectId: string, @Ctx() ctx: Context): Promise<boolean> {
    return ctx.services.projects.leave(ctx.em, viewerOf(ctx).userId, projectId);
  }

  @Authorized()
  @Mutation(() => ProjectType, { description: 'Owner only.' })
  designateCoach(@Arg('projectId', () => IdScalar) projectId: string, @Arg('userId', () => IdScalar) userId: string, @Ctx() ctx: Context): Promise<ProjectType> {
    return ctx.services.projects.designateCoach(ctx.em, viewerOf(ctx).userId, projectId, userId);
  }

  @Authorized()
  @Mutation(() => ProjectType, { description: 'Owner only; the coach stays a participant.' })
  withdrawCoach(@Arg('projectId', () => IdScalar) projectId: string, @Arg('userId', () => IdScalar) userId: string, @Ctx() ctx: Context): Promise<ProjectType> {
    return ctx.services.projects.withdrawCoach(ctx.em, viewerOf(ctx).userId, projectId, userId);
  }

  @Authorized()
  @Subscription(() => ProjectActionType, {
    description: "Each subscriber receives its own entry of every action (the message written for it). No argument: all the viewer's projects.",
    subscribe: async ({ args, context }: SubscribeResolverData<unknown, { projectId?: string | null }, Context>) => {
      const me = viewerOf(context).userId;
      const { projects, pubsub } = context.services;
      // An empty id names nothing (NOT_FOUND), as any other that is no project's: read as none, it subscribed to every project.
      const check = args.projectId != null ? projects.asMember(context.em, args.projectId, me).then((m) => m.project.id) : null;
      // The entries were addressed to the members at commit time: one who left or was removed has none.
      return pubsub.iterateChecked(Topic.ProjectAction, check, (p, only) => (only && p.projectId !== only ? undefined : p.entries.find((e) => e.recipientId === me)), { keys: me });
    },
  })
  projectAction(@Root() e: ProjectActionEntryPayload, @Arg('projectId', () => IdScalar, { nullable: true }) _projectId?: string | null): ProjectActionType {
    return entryToActionType(e);
  }

  @FieldResolver(() => UserType)
  async owner(@Root() p: ProjectType, @Ctx() ctx: Context): Promise<UserType> {
    return (await ctx.loaders.user.load(p.ownerId)) ?? SYSTEM_USER;
  }

  @FieldResolver(() => [UserType], { description: 'Participants with the coach role, longest-standing first.' })
  coaches(@Root() p: ProjectType, @Ctx() ctx: Context): Promise<UserType[]> {
    return users(
      ctx,
      p.members.filter((m) => m.role === ProjectRole.COACH).map((m) => m.userId),
    );
  }

  @FieldResolver(() => [UserType], { description: 'Every member but the owner, coaches included, longest-standing first.' })
  participants(@Root() p: ProjectType, @Ctx() ctx: Context): Promise<UserType[]> {
    return users(
      ctx,
      p.members.filter((m) => m.role !== ProjectRole.OWNER).map((m) => m.userId),
    );
  }

  @FieldResolver(() => ProjectRole, { nullable: true, description: "The viewer's role in the project." })
  viewerRole(@Root() p: ProjectType, @Ctx() ctx: Context): ProjectRole | null {
    return p.members.find((m) => m.userId === ctx.viewer?.userId)?.role ?? null;
  }
}

@Resolver(() => ProjectActionType)
export class ProjectActionResolver {
  @FieldResolver(() => ProjectType, { nullable: true, description: 'Null once the project is gone or the viewer is no longer in it.' })
  project(@Root() a: ProjectActionType, @Ctx() ctx: Context): Promise<ProjectType | null> {
    return ctx.loaders.project.load(a.projectId);
  }

  @FieldResolver(() => UserType, { nullable: true, description: 'Who made the change.' })
  actor(@Root() a: ProjectActionType, @Ctx() ctx: Context): Promise<UserType | null> {
    return a.actorId ? ctx.loaders.user.load(a.actorId) : Promise.resolve(null);
  }

  @FieldResolver(() => UserType, { nullable: true, description: 'Whom the change is about (added, removed, designated, withdrawn, left).' })
  target(@Root() a: ProjectActionType, @Ctx() ctx: Context): Promise<UserType | null> {
    return a.targetId ? ctx.loaders.user.load(a.targetId) : Promise.resolve(null);
  }
}

/** Message.project lives with the projects: the message module knows only the id. */
@Resolver(() => MessageType)
export class ProjectMessageResolver {
  @FieldResolver(() => ProjectType, { nullable: true, description: 'Set for project messages.' })
  project(@Root() m: MessageType, @Ctx() ctx: Context, @Info() info: GraphQLResolveInfo): Promise<ProjectType | null> {
    if (!m.projectId) return Promise.resolve(null);
    // An event to a member connected here: the project as every subscriber here reads it (see ProjectSnapshots).
    return eventToLocalMember(ctx, info, 'project', m.projectId) ? ctx.services.projectSnapshots.get(ctx.em, m.projectId) : ctx.loaders.project.load(m.projectId);
  }
}
