import { GraphQLObjectType, lexicographicSortSchema, printSchema, type GraphQLSchema } from 'graphql';
import { buildSchema, getMetadataStorage, type AuthChecker } from 'type-graphql';
import { AuthResolver } from '../modules/auth/auth.resolver';
import { ConversationResolver, ReadReceiptResolver } from '../modules/conversation/conversation.resolver';
import { FriendResolver } from '../modules/friend/friend.resolver';
import { GroupEventResolver, GroupResolver } from '../modules/group/group.resolver';
import { AttachmentResolver, MessageConnectionResolver, MessageResolver } from '../modules/message/message.resolver';
import { PresenceResolver } from '../modules/presence/presence.resolver';
import { ProjectActionResolver, ProjectMessageResolver, ProjectResolver } from '../modules/project/project.resolver';
import { UserResolver } from '../modules/user/user.resolver';
import { UnauthenticatedError } from '../shared/errors';
import { DateTimeScalar } from '../shared/graphql/scalars';
import type { Context } from '../modules/context';

/** Every resolver, listed explicitly. */
export const resolvers = [AuthResolver, UserResolver, PresenceResolver, GroupResolver, GroupEventResolver, FriendResolver, MessageResolver, AttachmentResolver, MessageConnectionResolver, ProjectResolver, ProjectActionResolver, ProjectMessageResolver, ConversationResolver, ReadReceiptResolver] as const;

/** The one auth check behind @Authorized(): a valid token. Finer rules live in the services. */
export const authChecker: AuthChecker<Context> = ({ context }) => {
  if (!context.viewer) throw new UnauthenticatedError();
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

/**
 * A subscription's resolve runs once per event (and shape; see fanout.ts) and maps the event's
 * payload, its @Root(), to the API type. type-graphql runs @Authorized() there again, in an async
 * middleware chain: a promise per event, and every event's execution asynchronous (~5 of ~9 µs per
 * executed message). The subscribe ran that same check, and a subscription's viewer never
 * changes, so a field whose only middleware is that check calls its method directly, with the
 * root and the arguments as the client gave them (the subscribe is what reads them).
 */
function subscriptionEventsResolveDirectly(schema: GraphQLSchema): GraphQLSchema {
  const fields = schema.getSubscriptionType()?.getFields() ?? {};
  for (const s of getMetadataStorage().subscriptions) {
    const field = fields[s.schemaName];
    const params = [...(s.params ?? [])].sort((a, b) => a.index - b.index);
    if (!field || s.middlewares?.length || !params.every((p) => (p.kind === 'root' && !p.propertyName && !p.getType) || p.kind === 'arg')) continue;
    const instance = new (s.target as new () => Record<string, (...args: unknown[]) => unknown>)();
    const method = instance[s.methodName];
    field.resolve = (root, args) => method.apply(instance, params.map((p) => (p.kind === 'root' ? root : args[(p as { name: string }).name])));
  }
  return schema;
}

export async function createSchema(): Promise<GraphQLSchema> {
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
  return subscriptionEventsResolveDirectly(plainFieldsResolveByDefault(schema));
}

/** The SDL committed as schema.graphql, sorted so that it only changes when the API does. */
export function printSdl(schema: GraphQLSchema): string {
  return printSchema(lexicographicSortSchema(schema)) + '\n';
}
