import { GraphQLInterfaceType, GraphQLObjectType, lexicographicSortSchema, printSchema, type GraphQLFieldResolver, type GraphQLSchema } from 'graphql';
import { buildSchema, getMetadataStorage, type ResolverData } from 'type-graphql';
import { AuthResolver } from '../modules/auth/auth.resolver';
import { ConversationResolver, ReadReceiptResolver } from '../modules/conversation/conversation.resolver';
import { FriendEventResolver, FriendResolver } from '../modules/friend/friend.resolver';
import { GroupEventResolver, GroupResolver } from '../modules/group/group.resolver';
import { AttachmentResolver, MessageConnectionResolver, MessageResolver } from '../modules/message/message.resolver';
import { ConversationPinsResolver, PinResolver } from '../modules/message/pin.resolver';
import { ThreadResolver } from '../modules/message/thread.resolver';
import { ConversationMentionsResolver, MentionResolver, MessageMentionsResolver } from '../modules/message/mention.resolver';
import { NodeResolver } from '../modules/node/node.resolver';
import { NotificationResolver } from '../modules/notification/notification.resolver';
import { ReportResolver } from '../modules/safety/report.resolver';
import { PresenceResolver, PresenceVisibilityResolver } from '../modules/presence/presence.resolver';
import { SearchResolver } from '../modules/search/search.resolver';
import { ProjectActionResolver, ProjectMessageResolver, ProjectResolver } from '../modules/project/project.resolver';
import { UserResolver } from '../modules/user/user.resolver';
import { BlockResolver } from '../modules/safety/block.resolver';
import { MuteResolver } from '../modules/safety/mute.resolver';
import { UnauthenticatedError } from '../shared/errors';
import { nodeTypeOf } from '../shared/graphql/node';
import { PageInfoResolver } from '../shared/graphql/connection';
import { describeSchema } from './descriptions';
import { DateTimeScalar } from '../shared/graphql/scalars';
import type { Context } from '../modules/context';

/** Every resolver, listed explicitly. */
export const resolvers = [AuthResolver, UserResolver, PresenceResolver, GroupResolver, GroupEventResolver, FriendResolver, FriendEventResolver, MessageResolver, AttachmentResolver, MessageConnectionResolver, ProjectResolver, ProjectActionResolver, ProjectMessageResolver, ConversationResolver, ReadReceiptResolver, PinResolver, ConversationPinsResolver, SearchResolver, NotificationResolver, BlockResolver, MuteResolver, ReportResolver, PresenceVisibilityResolver, ThreadResolver, MentionResolver, MessageMentionsResolver, ConversationMentionsResolver, NodeResolver, PageInfoResolver] as const;

/** The one auth check behind @Authorized(): a valid token. Finer rules live in the services. Synchronous (see checkedFirst). */
export const authChecker = ({ context }: ResolverData<Context>): true => {
  if (!context.viewer) throw new UnauthenticatedError();
  // Revoked while this operation ran (its own logout or deleteAccount, a logoutOtherSessions elsewhere): no further field.
  if (context.services.auth.revokedSince(context.viewer.tokenHash)) throw new UnauthenticatedError('Your session was ended (logged out or revoked) while this operation ran.');
  return true;
};

/**
 * type-graphql gives every plain @Field a resolver of its own that allocates the resolver data
 * and runs the field's middlewares, even when there are none: in a page of 50 messages that is
 * most of the 500 fields resolved. A field with no middleware, no roles, no field resolver and the
 * property's own name reads the same through graphql's default resolver.
 */
function plainFieldsResolveByDefault(schema: GraphQLSchema): GraphQLSchema {
  const storage = getMetadataStorage();
  for (const ot of storage.objectTypes) {
    const type = schema.getType(ot.name);
    if (!(type instanceof GraphQLObjectType)) continue;
    const fields = type.getFields();
    for (const f of ot.fields ?? []) {
      const field = fields[f.schemaName];
      if (!field || f.name !== f.schemaName || f.roles || f.middlewares?.length) continue;
      if (storage.fieldResolvers.some((r) => r.methodName === f.name && r.getObjectType?.() === f.target)) continue;
      field.resolve = undefined;
    }
  }
  return schema;
}

type ParamMetadata = NonNullable<ReturnType<typeof getMetadataStorage>['fieldResolvers'][number]['params']>[number];
type Read = (root: unknown, args: Record<string, unknown>, context: unknown, info: unknown) => unknown;

/** How a parameter is read from graphql's (root, args, context, info); undefined for what type-graphql must convert. */
function reader(p: ParamMetadata, withArgs: boolean): Read | undefined {
  switch (p.kind) {
    case 'root':
      return p.propertyName ? (r) => (r as Record<string, unknown>)[p.propertyName!] : (r) => r;
    case 'context':
      return p.propertyName ? (_r, _a, c) => (c as Record<string, unknown>)[p.propertyName!] : (_r, _a, c) => c;
    case 'info':
      return (_r, _a, _c, i) => i;
    case 'arg':
      return withArgs ? (_r, a) => a[p.name] : undefined;
    default:
      return undefined;
  }
}

/**
 * A resolve that calls the resolver class's method with its parameters read straight from
 * graphql's arguments; undefined when one of them needs type-graphql (arguments it converts to
 * input classes, unless `withArgs`). Roots are passed as they are: the API's object types are
 * plain data, where type-graphql copied each root into a new instance of the type's class.
 */
function directResolve(target: Function, methodName: string, params: readonly ParamMetadata[], withArgs: boolean): GraphQLFieldResolver<unknown, unknown> | undefined {
  const reads = [...params].sort((x, y) => x.index - y.index).map((p) => reader(p, withArgs));
  if (reads.some((r) => !r)) return undefined;
  const instance = new (target as new () => Record<string, (...args: unknown[]) => unknown>)();
  const method = instance[methodName];
  const [a, b] = reads as Read[];
  if (reads.length === 1) return (r, x, c, i) => method.call(instance, a(r, x, c, i));
  if (reads.length === 2) return (r, x, c, i) => method.call(instance, a(r, x, c, i), b(r, x, c, i));
  return (r, x, c, i) => method.apply(instance, (reads as Read[]).map((read) => read(r, x, c, i)));
}

/**
 * type-graphql calls a field resolver through a wrapper that allocates the resolver data, sorts
 * its parameters again, copies the root into an instance of the object type's class and runs
 * the (empty) middleware chain: per field, per object, per event. A resolver class's field
 * resolver with no middleware or roles, whose parameters are its root, context or info, calls its
 * method directly.
 *
 * A subscription's resolve runs once per event (and shape; see fanout.ts) and maps the event's
 * payload, its @Root(), to the API type. type-graphql runs @Authorized() there again, in an async
 * middleware chain: a promise per event, and every event's execution asynchronous (~5 of ~9 µs per
 * executed message). The subscribe ran that same check, and a subscription's viewer never
 * changes, so a field whose only middleware is that check calls its method directly too, with the
 * root and the arguments as the client gave them (the subscribe is what reads them).
 */
function resolversCalledDirectly(schema: GraphQLSchema): GraphQLSchema {
  const storage = getMetadataStorage();
  for (const r of storage.fieldResolvers) {
    if (r.kind !== 'external' || r.roles || r.middlewares?.length) continue;
    const typeName = storage.objectTypes.find((o) => o.target === r.getObjectType?.())?.name;
    const type = typeName ? schema.getType(typeName) : undefined;
    const field = type instanceof GraphQLObjectType ? type.getFields()[r.schemaName] : undefined;
    const resolve = field && directResolve(r.target, r.methodName, r.params ?? [], false);
    if (resolve) field.resolve = resolve;
  }
  // Queries and mutations: type-graphql runs @Authorized() in an async middleware chain and
  // converts each argument through another promise (validateArg is async even with validation
  // off): sendMessage's resolve made 24 promises, 7 of them its own and its services'. A root field whose arguments are read
  // as given (no @Args() class) and whose only middleware is that check runs the check, then the
  // method, directly. Input objects stay the plain objects graphql coerced: the API's input
  // classes declare fields only (no initializers, no methods), so a class instance added nothing.
  const roots = { ...schema.getQueryType()?.getFields(), ...schema.getMutationType()?.getFields() };
  for (const q of [...storage.queries, ...storage.mutations]) {
    const field = roots[q.schemaName];
    if (!field || q.middlewares?.length || (q.roles && q.roles.length)) continue;
    const call = directResolve(q.target, q.methodName, q.params ?? [], true);
    if (!call) continue;
    field.resolve = q.roles ? checkedFirst(call) : call;
  }
  const subscriptions = schema.getSubscriptionType()?.getFields() ?? {};
  for (const s of storage.subscriptions) {
    const field = subscriptions[s.schemaName];
    const resolve = field && !s.middlewares?.length && directResolve(s.target, s.methodName, s.params ?? [], true);
    if (resolve) field.resolve = resolve;
  }
  return schema;
}

/** `call` after @Authorized()'s check (authChecker throws for a request without a viewer), as type-graphql runs it but without its promises. */
function checkedFirst(call: GraphQLFieldResolver<unknown, unknown>): GraphQLFieldResolver<unknown, unknown> {
  return (root, args, context, info) => {
    authChecker({ root, args, context: context as Context, info: info as ResolverData<Context>['info'] });
    return call(root, args, context, info);
  };
}

/** Built once per process (see createSchema). */
let built: Promise<GraphQLSchema> | undefined;

/**
 * The executable schema. It holds no server's state (resolvers reach their services through the
 * context), so every server of a process shares one: building it was ~70 ms of each server's
 * ~250 ms start, which the test suites pay hundreds of times.
 */
export function createSchema(): Promise<GraphQLSchema> {
  if (!built) {
    built = buildOnce();
    // A failed build is tried again by the next caller.
    built.catch(() => (built = undefined));
  }
  return built;
}

async function buildOnce(): Promise<GraphQLSchema> {
  const schema = await buildSchema({
    resolvers,
    authChecker,
    scalarsMap: [{ type: Date, scalar: DateTimeScalar }],
    // Input rules live in src/shared/validation.ts and each module's *.validation.ts, written out
    // so every rule answers with its own extensions.code; no class-validator decorators.
    validate: false,
    // Every subscription brings its own `subscribe` (filtered in memory by the services' PubSub);
    // type-graphql still wants an engine, so this one refuses topic-based use.
    pubSub: {
      publish: () => {
        throw new Error('publish through services.pubsub');
      },
      subscribe: () => {
        throw new Error('subscriptions declare their own subscribe()');
      },
    },
  });
  // type-graphql wraps resolveType in an async function; the plain one answers at once.
  (schema.getType('Node') as GraphQLInterfaceType).resolveType = nodeTypeOf;
  return freshLoadersPerMutationField(resolversCalledDirectly(plainFieldsResolveByDefault(describeSchema(schema))));
}

/**
 * Each root field of a mutation reads through loaders of its own: the fields run one after
 * another, and one that read a group's myRole after another changed it answered the role from
 * before (an outside probe: OWNER beside the owner it had just handed the group to). One call a
 * mutation field: a send's cost does not move.
 */
function freshLoadersPerMutationField(schema: GraphQLSchema): GraphQLSchema {
  for (const field of Object.values(schema.getMutationType()?.getFields() ?? {})) {
    const resolve = field.resolve;
    if (!resolve) continue;
    field.resolve = (source, args, context: Context, info) => {
      context.freshLoaders?.();
      return resolve(source, args, context, info);
    };
  }
  return schema;
}

/** The SDL committed as schema.graphql, sorted so that it only changes when the API does. */
export function printSdl(schema: GraphQLSchema): string {
  return printSchema(lexicographicSortSchema(schema)) + '\n';
}
