import { ApolloArmor } from '@escape.tech/graphql-armor';
import type { ApolloServerPlugin } from '@apollo/server';
import {
  GraphQLError,
  NoSchemaIntrospectionCustomRule,
  parse,
  specifiedRules,
  validate,
  getOperationAST,
  type DocumentNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type ValidationRule,
} from 'graphql';
import type { Env } from '../config/env';

/** Validated documents remembered per server (each entry is one document's AST). */
const CHECKED_MAX = 1000;

type LimitsEnv = Pick<
  Env,
  'GRAPHQL_MAX_DEPTH' | 'GRAPHQL_MAX_ALIASES' | 'GRAPHQL_MAX_TOKENS' | 'GRAPHQL_MAX_DIRECTIVES' | 'GRAPHQL_MAX_COST' | 'ENABLE_INTROSPECTION'
>;

export interface DocumentLimits {
  /** Spread into the ApolloServer options. */
  apollo: {
    plugins: ApolloServerPlugin[];
    validationRules: ValidationRule[];
    parseOptions: { maxTokens: number };
    hideSchemaDetailsFromClientErrors: boolean;
  };
  /**
   * Parses and validates a document the way the HTTP path does (same limits, same
   * introspection and suggestion rules), for operations that arrive over WebSocket.
   * @returns the document, or the errors to answer with (nothing thrown).
   */
  check(schema: GraphQLSchema, source: unknown): { document: DocumentNode } | { errors: GraphQLError[] };
  /** The error without "Did you mean …" when the schema is hidden (variables that don't coerce name fields too). */
  scrub(e: GraphQLError): GraphQLError;
}

const SUGGESTION = /\s*Did you mean .+\?/g;

/** HTTP carries queries and mutations; a subscription executed there would run its resolver without an event. */
const noSubscriptionsOverHttp: ApolloServerPlugin = {
  async requestDidStart() {
    return {
      async didResolveOperation({ operation }) {
        if (operation?.operation === 'subscription') {
          throw new GraphQLError('Subscriptions are served over WebSocket (graphql-transport-ws) at the same path.', {
            extensions: { code: 'BAD_USER_INPUT', reason: 'SUBSCRIPTION_OVER_HTTP', http: { status: 400 } },
          });
        }
      },
    };
  },
};

/**
 * Limits on what one document may ask for (graphql-armor): depth, aliases, tokens, directives
 * and cost; field suggestions are hidden whenever introspection is off, so the schema can't be
 * guessed field by field. Errors carry BAD_USER_INPUT.
 */
export function documentLimits(env: LimitsEnv): DocumentLimits {
  const hideSchema = !env.ENABLE_INTROSPECTION;
  const armor = new ApolloArmor({
    maxDepth: { n: env.GRAPHQL_MAX_DEPTH, flattenFragments: true },
    maxAliases: { n: env.GRAPHQL_MAX_ALIASES },
    // graphql's parser counts tokens itself (parseOptions); armor's Apollo plugin throws from a hook, which Apollo 5 answers with 500.
    maxTokens: { enabled: false },
    maxDirectives: { n: env.GRAPHQL_MAX_DIRECTIVES },
    costLimit: { maxCost: env.GRAPHQL_MAX_COST },
    blockFieldSuggestion: { enabled: hideSchema, mask: '' },
  }).protect();
  const rules: ValidationRule[] = [...specifiedRules, ...armor.validationRules, ...(env.ENABLE_INTROSPECTION ? [] : [NoSchemaIntrospectionCustomRule])];
  const bad = (message: string, reason: string) => new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', reason } });
  /** Documents that passed, by source text: graphql-js never mutates a DocumentNode, so one can be executed many times. */
  const checked = new Map<string, { schema: GraphQLSchema; document: DocumentNode }>();

  return {
    apollo: {
      plugins: [...armor.plugins, noSubscriptionsOverHttp],
      validationRules: armor.validationRules,
      parseOptions: { maxTokens: env.GRAPHQL_MAX_TOKENS },
      hideSchemaDetailsFromClientErrors: hideSchema,
    },
    scrub(e) {
      if (!hideSchema || !e.message.includes('Did you mean')) return e;
      return new GraphQLError(e.message.replace(SUGGESTION, ''), { nodes: e.nodes, path: e.path, originalError: e.originalError, extensions: e.extensions });
    },
    check(schema, source) {
      if (typeof source !== 'string' || !source.trim()) return { errors: [bad('The query must be a non-empty string.', 'GRAPHQL_PARSE_FAILED')] };
      // Clients repeat a handful of documents; validating each again cost a third of a WebSocket operation's CPU.
      const known = checked.get(source);
      if (known && known.schema === schema) return { document: known.document };
      let document: DocumentNode;
      try {
        document = parse(source, { maxTokens: env.GRAPHQL_MAX_TOKENS });
      } catch (e) {
        const message = e instanceof GraphQLError ? e.message : 'Syntax error.';
        return { errors: [bad(message.replace(/more that/, 'more than'), 'GRAPHQL_PARSE_FAILED')] };
      }
      const errors = validate(schema, document, rules);
      if (!errors.length) {
        // Same text, same schema, same verdict. Bounded: the oldest entry goes first.
        if (checked.size >= CHECKED_MAX) checked.delete(checked.keys().next().value!);
        checked.set(source, { schema, document });
        return { document };
      }
      return {
        errors: errors.map((e) =>
          bad(hideSchema ? e.message.replace(SUGGESTION, '') : e.message, (e.extensions?.code as string | undefined) === 'BAD_USER_INPUT' ? 'GRAPHQL_LIMIT' : 'GRAPHQL_VALIDATION_FAILED'),
        ),
      };
    },
  };
}

/** The operation a request names, or the error graphql-js answers with over HTTP. */
export function selectOperation(document: DocumentNode, operationName: string | null | undefined): OperationDefinitionNode | GraphQLError {
  const operation = getOperationAST(document, operationName);
  if (operation) return operation;
  // Worded as over HTTP (graphql-js), not graphql-ws's "Unable to identify operation".
  return new GraphQLError(operationName ? `Unknown operation named "${operationName}".` : 'Must provide operation name if query contains multiple operations.');
}
