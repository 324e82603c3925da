import { lexicographicSortSchema, printSchema, type GraphQLSchema } from 'graphql';
import { buildSchema, type AuthChecker } from 'type-graphql';
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
import type { Context } from './context';

/** Every resolver, listed explicitly. */
export const resolvers = [AuthResolver, UserResolver, PresenceResolver, GroupResolver, GroupEventResolver, FriendResolver, MessageResolver, AttachmentResolver, MessageConnectionResolver, ProjectResolver, ProjectActionResolver, ProjectMessageResolver, ConversationResolver, ReadReceiptResolver] as const;

/** The one auth check behind @Authorized(): a valid token. Finer rules live in the services. */
export const authChecker: AuthChecker<Context> = ({ context }) => {
  if (!context.viewer) throw new UnauthenticatedError();
  return true;
};

export async function createSchema(): Promise<GraphQLSchema> {
  return buildSchema({
    resolvers,
    authChecker,
    scalarsMap: [{ type: Date, scalar: DateTimeScalar }],
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
}

/** The SDL committed as schema.graphql, sorted so that it only changes when the API does. */
export function printSdl(schema: GraphQLSchema): string {
  return printSchema(lexicographicSortSchema(schema)) + '\n';
}
