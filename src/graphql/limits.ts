import { ApolloArmor } from '@escape.tech/graphql-armor';
import type { ApolloServerPlugin } from '@apollo/server';
import {
  GraphQLError,
  Kind,
  parse,
  SingleFieldSubscriptionsRule,
  specifiedRules,
  validate,
  getOperationAST,
  type DocumentNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';
import { LRUCache } from 'lru-cache';
import type { Env } from '../config/env';
import { documentCostRule } from './cost';

/** Where Apollo keeps a persisted query's text in its cache: this before the hash (its requestPipeline's APQ_CACHE_PREFIX, not exported). */
export const APQ_CACHE_PREFIX = 'apq:';

/** Bytes each of Apollo's caches keeps (parsed documents, and persisted queries). */
const APOLLO_CACHE_BYTES = 8 * 1024 * 1024;

/**
 * A least-recently-used map bounded by the bytes its entries hold, not by their count: a handful
 * of big documents must not be able to keep the heap. It has the shape of Apollo's KeyValueCache,
 * so it serves as Apollo Server's documentStore and cache.
 */
export class ByteCache<V extends {}> {
  private readonly entries: LRUCache<string, V>;

  constructor(maxBytes: number, sizeOf: (key: string, value: V) => number) {
    this.entries = new LRUCache<string, V>({ maxSize: maxBytes, sizeCalculation: (value, key) => Math.max(1, sizeOf(key, value)) });
  }

  async get(key: string): Promise<V | undefined> {
    return this.entries.get(key);
  }

  async set(key: string, value: V): Promise<void> {
    this.entries.set(key, value);
  }

  async delete(key: string): Promise<boolean> {
    return this.entries.delete(key);
  }
}

/**
 * What a parsed document keeps alive: its source text (every node's `loc` points to it) and its
 * AST, estimated as Apollo does by its JSON (which leaves the source out, hence the first term).
 */
export function documentBytes(document: DocumentNode): number {
  return Buffer.byteLength(document.loc?.source.body ?? '') + Buffer.byteLength(JSON.stringify(document));
}

/** Whether a document's text is longer than `max` bytes of UTF-8; checked before anything parses it. */
export function oversizedDocument(source: string, max: number): boolean {
  // A character is one to three UTF-8 bytes (a surrogate pair is four for two), so the length decides most cases alone.
  return source.length > max || (source.length * 3 > max && Buffer.byteLength(source) > max);
}

/** The refusal of a document over GRAPHQL_MAX_DOCUMENT_BYTES, the same over HTTP and WebSocket. */
export function documentTooLargeMessage(max: number): string {
  return `The GraphQL document is longer than ${max} bytes; send large values (attachments) in variables.`;
}

type LimitsEnv = Pick<
  Env,
  'GRAPHQL_MAX_DOCUMENT_BYTES' | 'GRAPHQL_MAX_DEPTH' | 'GRAPHQL_MAX_ALIASES' | 'GRAPHQL_MAX_TOKENS' | 'GRAPHQL_MAX_DIRECTIVES' | 'GRAPHQL_MAX_COST' | 'GRAPHQL_MAX_ITEMS' | 'ENABLE_INTROSPECTION'
>;

export interface DocumentLimits {
  /** Spread into the ApolloServer options. */
  apollo: {
    plugins: ApolloServerPlugin[];
    validationRules: ValidationRule[];
    parseOptions: { maxTokens: number };
    hideSchemaDetailsFromClientErrors: boolean;
    /** Parsed and validated documents, bounded by bytes (Apollo's default bounds only the AST estimate, not the source each node points to). */
    documentStore: ByteCache<DocumentNode>;
    /** Apollo's own cache (persisted queries: query text by hash), bounded like the documents. */
    cache: ByteCache<string>;
  };
  /**
   * Parses and validates a document the way the HTTP path does (same limits, same
   * introspection and suggestion rules), for operations that don't go through Apollo (the
   * operation pipeline caches what passed, by text).
   * @returns the document, or the errors to answer with (nothing thrown).
   */
  check(schema: GraphQLSchema, source: unknown): { document: DocumentNode } | { errors: GraphQLError[] };
  /** The error without "Did you mean …" when the schema is hidden (variables that don't coerce name fields too). */
  scrub(e: GraphQLError): GraphQLError;
}

/** graphql-js's "Did you mean …?" ending of a message, which names the schema's fields and values. */
export const SUGGESTION = /\s*Did you mean .+\?/g;

/** Whether a root selection set skips or includes something conditionally, through its fragments too. */
function conditionalRoot(set: SelectionSetNode, context: ValidationContext, seen: Set<string>): boolean {
  for (const selection of set.selections) {
    if (selection.directives?.some((d) => d.name.value === 'skip' || d.name.value === 'include')) return true;
    if (selection.kind === Kind.INLINE_FRAGMENT && conditionalRoot(selection.selectionSet, context, seen)) return true;
    if (selection.kind === Kind.FRAGMENT_SPREAD && !seen.has(selection.name.value)) {
      seen.add(selection.name.value);
      const fragment = context.getFragment(selection.name.value);
      if (fragment && conditionalRoot(fragment.selectionSet, context, seen)) return true;
    }
  }
  return false;
}

/**
 * A subscription's root field is never conditional (@skip, @include), as the GraphQL spec now
 * says: graphql-js 16 threw while validating one whose condition is a variable (it has no values
 * then), and answered a skipped one with no field to subscribe to, both INTERNAL_SERVER_ERROR (a
 * socket closed with 4500). Stands in for SingleFieldSubscriptionsRule, which runs on the rest.
 */
export const SubscriptionRootRule: ValidationRule = (context) => {
  const single = SingleFieldSubscriptionsRule(context) as { OperationDefinition?: (node: OperationDefinitionNode) => void };
  return {
    OperationDefinition(node) {
      if (node.operation === 'subscription' && conditionalRoot(node.selectionSet, context, new Set())) {
        context.reportError(new GraphQLError("A subscription's root field can't be skipped or included (@skip, @include): subscribe to it or not.", { nodes: node }));
        return;
      }
      single.OperationDefinition?.(node);
    },
  };
};

/** The spec's rules, with SubscriptionRootRule in SingleFieldSubscriptionsRule's place. */
const SPECIFIED = specifiedRules.map((r) => (r === SingleFieldSubscriptionsRule ? SubscriptionRootRule : r));

/** The refusal of a subscription sent over HTTP. */
export function subscriptionOverHttp(): GraphQLError {
  // Named both ways: a client whose network blocks WebSockets learns of the stream here.
  return new GraphQLError('Subscriptions are served over WebSocket (graphql-transport-ws) at the same path, or as Server-Sent Events at /graphql/stream.', {
    extensions: { code: 'BAD_USER_INPUT', reason: 'SUBSCRIPTION_OVER_HTTP', http: { status: 400 } },
  });
}

/**
 * Whether a document sent over HTTP selects a subscription, told before Apollo validates it (its
 * validation keeps graphql-js's own subscription rule, which throws on a conditional root: see
 * SubscriptionRootRule). Only a text that says `subscription` is parsed; one that doesn't parse is
 * Apollo's to answer.
 */
export function selectsSubscription(query: unknown, operationName: unknown, maxTokens: number): boolean {
  if (typeof query !== 'string' || !/\bsubscription\b/.test(query)) return false;
  return operationOf(query, operationName, maxTokens)?.operation === 'subscription';
}

/** The operation a request's document runs, parsed here before Apollo; none when it doesn't parse (Apollo's to answer). */
function operationOf(query: string, operationName: unknown, maxTokens: number): OperationDefinitionNode | null | undefined {
  try {
    return getOperationAST(parse(query, { maxTokens }), typeof operationName === 'string' ? operationName : undefined);
  } catch {
    return undefined;
  }
}

/** Room beside the document in a request body (variables, names, JSON). */
const BODY_ROOM = 64 * 1024;

/**
 * The largest body of a request without a valid token (an HTTP POST, a WebSocket's frames before
 * its connection_ack): the longest allowed document and room for the rest, no attachment.
 */
export function anonymousBodyLimit(env: Pick<Env, 'GRAPHQL_MAX_DOCUMENT_BYTES'>): number {
  return env.GRAPHQL_MAX_DOCUMENT_BYTES + BODY_ROOM;
}

/** The largest request body: one that carries the largest allowed attachment (base64 is 4/3 of it) too. */
export function bodyLimit(env: Pick<Env, 'ATTACHMENT_MAX_BYTES' | 'GRAPHQL_MAX_DOCUMENT_BYTES'>): number {
  return Math.ceil((env.ATTACHMENT_MAX_BYTES * 4) / 3) + anonymousBodyLimit(env);
}

/**
 * The most `,`, `:`, `[` and `{` a request body (or a WebSocket frame) may hold, counted before it
 * is parsed. Parsing many small values costs far more than one long string: 400,000 unused
 * variables (6.6 MB, under the limit an attachment needs) held the event loop 1.3-1.6 s, every
 * other user waiting (an outside probe, 2 of 2); one 6.6 MB string parses in a tenth of that. So
 * did 3,000,000 nested empty lists, which hold no separator (4.4-5.9 s: an outside probe). An
 * attachment is one base64 string (none of these characters), a message 4,000 characters at most.
 */
export const MAX_BODY_VALUES = 20_000;

const VALUE_MARKS = [',', ':', '[', '{'];

/** Whether `text` holds more than MAX_BODY_VALUES separators and openings (a shorter text can't). */
export function tooManyValues(text: string): boolean {
  if (text.length <= MAX_BODY_VALUES) return false;
  let n = 0;
  for (const separator of VALUE_MARKS) {
    for (let i = text.indexOf(separator); i >= 0; i = text.indexOf(separator, i + 1)) if (++n > MAX_BODY_VALUES) return true;
  }
  return false;
}

export const TOO_MANY_VALUES = `The request holds more than ${MAX_BODY_VALUES} values (commas, colons and opening brackets counted); send only the variables the operation declares.`;

/** Root fields that need no token: a sign-in may carry a stale one (a client that kept it after a logout). */
const SIGN_IN_FIELDS = new Set(['login', 'signup', '__typename']);

/** Whether the operation to run is a mutation of login and signup alone (no fragments): answered as if without a token. */
export function signsIn(query: unknown, operationName: unknown, maxTokens: number): boolean {
  if (typeof query !== 'string' || !/\b(login|signup)\b/.test(query)) return false;
  const operation = operationOf(query, operationName, maxTokens);
  return operation?.operation === 'mutation' && operation.selectionSet.selections.every((f) => f.kind === Kind.FIELD && SIGN_IN_FIELDS.has(f.name.value));
}

/** graphql-armor words a limit as a syntax error ("Syntax Error: Query Cost limit of 5000 exceeded"); the document parsed, and its size is what is wrong. */
export function limitMessage(message: string): string {
  return message.replace(/^Syntax Error: (?=[^.]*\blimit of \d)/, '');
}

/** HTTP carries queries and mutations; a subscription executed there would run its resolver without an event. */
const noSubscriptionsOverHttp: ApolloServerPlugin = {
  async requestDidStart() {
    return {
      async didResolveOperation({ operation }) {
        if (operation?.operation === 'subscription') throw subscriptionOverHttp();
      },
    };
  },
};

/** Why a document was refused with introspection off, over every transport (Apollo's own words, over HTTP, are made these: see errors.ts). */
export const INTROSPECTION_OFF = 'GraphQL introspection is off on this server (ENABLE_INTROSPECTION), and the query asked for __schema or __type.';

/**
 * Apollo's rule, for the operations it doesn't run (WebSocket, SSE): one error a `__schema` or
 * `__type` field. graphql-js's NoSchemaIntrospectionCustomRule said it in other words, and once
 * more for each field under them (`queryType`: an outside probe).
 */
const noIntrospection: ValidationRule = (context) => ({
  Field(node) {
    if (node.name.value === '__schema' || node.name.value === '__type') context.reportError(new GraphQLError(INTROSPECTION_OFF, { nodes: [node] }));
  },
});

/**
 * Limits on what one document may ask for: depth, aliases, tokens, directives (graphql-armor),
 * cost and the items its pages hold (documentCostRule); field suggestions are hidden whenever introspection is off, so the schema can't be
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
    // Its cost multiplied by literal page sizes only (see documentCostRule, which takes its place).
    costLimit: { enabled: false },
    // Its Apollo plugin cuts `Did you mean "x"` and leaves the `?` (an outside probe read `…". ?`);
    // Apollo's hideSchemaDetailsFromClientErrors and the formatter's SUGGESTION take it all.
    blockFieldSuggestion: { enabled: false },
  }).protect();
  const validationRules = [...armor.validationRules, documentCostRule(env.GRAPHQL_MAX_COST, env.GRAPHQL_MAX_ITEMS)];
  const rules: ValidationRule[] = [...SPECIFIED, ...validationRules, ...(env.ENABLE_INTROSPECTION ? [] : [noIntrospection])];
  const bad = (message: string, reason: string) => new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT', reason } });

  return {
    apollo: {
      plugins: [...armor.plugins, noSubscriptionsOverHttp],
      validationRules,
      parseOptions: { maxTokens: env.GRAPHQL_MAX_TOKENS },
      hideSchemaDetailsFromClientErrors: hideSchema,
      documentStore: new ByteCache<DocumentNode>(APOLLO_CACHE_BYTES, (key, document) => key.length + documentBytes(document)),
      cache: new ByteCache<string>(APOLLO_CACHE_BYTES, (key, text) => key.length + Buffer.byteLength(text)),
    },
    scrub(e) {
      if (!hideSchema || !e.message.includes('Did you mean')) return e;
      return new GraphQLError(e.message.replace(SUGGESTION, ''), { nodes: e.nodes, path: e.path, originalError: e.originalError, extensions: e.extensions });
    },
    check(schema, source) {
      if (typeof source !== 'string' || !source.trim()) return { errors: [bad('The query must be a non-empty string.', 'GRAPHQL_PARSE_FAILED')] };
      if (oversizedDocument(source, env.GRAPHQL_MAX_DOCUMENT_BYTES)) {
        return { errors: [new GraphQLError(documentTooLargeMessage(env.GRAPHQL_MAX_DOCUMENT_BYTES), { extensions: { code: 'PAYLOAD_TOO_LARGE', reason: 'GRAPHQL_DOCUMENT_TOO_LARGE' } })] };
      }
      let document: DocumentNode;
      try {
        document = parse(source, { maxTokens: env.GRAPHQL_MAX_TOKENS });
      } catch (e) {
        const message = e instanceof GraphQLError ? e.message : 'Syntax error.';
        return { errors: [bad(message.replace(/more that/, 'more than'), 'GRAPHQL_PARSE_FAILED')] };
      }
      const errors = validate(schema, document, rules);
      if (!errors.length) return { document };
      return {
        errors: errors.map((e) => {
          const limit = (e.extensions?.code as string | undefined) === 'BAD_USER_INPUT';
          const message = limit ? limitMessage(e.message) : e.message;
          return bad(hideSchema ? message.replace(SUGGESTION, '') : message, limit ? 'GRAPHQL_LIMIT' : 'GRAPHQL_VALIDATION_FAILED');
        }),
      };
    },
  };
}

/** The operation a request names, or the error graphql-js answers with over HTTP. */
export function selectOperation(document: DocumentNode, operationName: string | null | undefined): OperationDefinitionNode | GraphQLError {
  const operation = getOperationAST(document, operationName);
  if (operation) return operation;
  // Worded as over HTTP (graphql-js), not graphql-ws's "Unable to identify operation".
  return new GraphQLError(operationName != null ? `Unknown operation named "${operationName}".` : 'Must provide operation name if query contains multiple operations.');
}
