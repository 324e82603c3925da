import type { ServerResponse } from 'node:http';
import type { ApolloServerPlugin } from '@apollo/server';
import { type DocumentNode, type ExecutionResult, type GraphQLFormattedError, type GraphQLSchema, type OperationDefinitionNode } from 'graphql';
import { getVariableValues } from 'graphql/execution/values';
import type { CompiledQuery } from 'graphql-jit';
import type { Logger } from '../shared/logger';
import type { Metrics } from '../shared/metrics';
import { noteUnexpected } from './errors';
import { asGraphQLErrors, compilable, compile } from './executor';
import { ByteLru, documentBytes, type DocumentLimits } from './limits';
import { describeOperation, firstCode } from './operation-metrics';

/** Bytes of operations kept runnable (a client repeats a handful of documents). */
const PLAN_CACHE_BYTES = 4 * 1024 * 1024;
/** Accept headers whose content type Apollo chose, remembered (clients send one or two). */
const ACCEPT_MAX = 64;
const JSON_TYPE = 'application/json; charset=utf-8';

interface Plan {
  compiled: CompiledQuery;
  document: DocumentNode;
  operation: OperationDefinitionNode;
  described: ReturnType<typeof describeOperation>;
}

export interface FastPathOptions {
  schema: GraphQLSchema;
  limits: Pick<DocumentLimits, 'scrub'>;
  formatError: (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError;
  logger: Logger;
  metrics: Pick<Metrics, 'operation'>;
}

export interface FastPath {
  /** Apollo's side: learns the operations it validated. */
  plugin: ApolloServerPlugin;
  /**
   * Answers the request if it is an operation already known; false, having written nothing, when
   * Apollo must take it.
   */
  handle(res: ServerResponse, body: unknown, accept: string | undefined, requestId: string, context: () => Promise<unknown>): Promise<boolean>;
  /** Apollo answered a request with this Accept header with this content type. */
  learn(accept: string | undefined, type: string | undefined): void;
  /** Requests answered here (for tests and metrics). */
  readonly served: number;
}


/** Responses up to this many characters are encoded without measuring them first (see jsonLine). */
const ENCODE_AT_ONCE = 64 * 1024;

/**
 * The response as Apollo writes it (JSON and a newline), encoded once into memory outside the JS
 * heap. Appending the newline to the string, measuring it and writing it each copied it again on
 * the heap (Buffer.byteLength flattens): ~50 of the ~370 KB a page of history allocated, and so
 * more frequent scavenges. A usual response is written into room for its worst case (3 bytes per
 * UTF-16 unit); a large one (an attachment) is measured first.
 */
function jsonLine(value: unknown): Buffer {
  const json = JSON.stringify(value);
  const line = Buffer.allocUnsafe((json.length <= ENCODE_AT_ONCE ? json.length * 3 : Buffer.byteLength(json)) + 1);
  const length = line.write(json, 0, 'utf8');
  line[length] = 0x0a;
  return line.subarray(0, length + 1);
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * The HTTP request path for operations clients repeat. Apollo's pipeline costs more than most
 * operations themselves (bench:http, `heartbeat` profiled: processGraphQLRequest, its plugin hooks,
 * HeaderMap and context copies, per-request promise chains — about 300 µs of a 500 µs request),
 * so a document Apollo has parsed, validated and answered twice runs again here: its graphql-jit
 * plan, the same context, the same error shaping and logging, the same metrics, the content type
 * Apollo chose for that Accept header. Anything else — a new document, GET, batched or persisted
 * queries, extensions, variables that don't coerce, a context that fails (a bad token) — goes to
 * Apollo, which answers it as before. Subscriptions never come here; a mutation only with one root
 * field (graphql-jit would go on past a failed one where graphql-js stops).
 */
export function createFastPath(o: FastPathOptions): FastPath {
  // By operation name and text: null once seen, the plan from the second time Apollo validated it.
  const plans = new ByteLru<Plan | null>(PLAN_CACHE_BYTES, (key, plan) => key.length * 2 + (plan ? documentBytes(plan.document) * 4 : 0));
  const contentTypes = new Map<string, string>();
  let served = 0;

  const plugin: ApolloServerPlugin = {
    async requestDidStart() {
      return {
        // Reached only once the document parsed and passed every validation rule and limit.
        async didResolveOperation({ request, document, operation }) {
          if (!operation || typeof request.query !== 'string' || request.extensions) return;
          if (!compilable(operation)) return;
          const key = `${request.operationName ?? ''}\u0000${request.query}`;
          const known = plans.peek(key);
          if (known) return;
          if (known === undefined) return plans.put(key, null);
          const compiled = compile(o.schema, document, request.operationName);
          if (compiled) plans.put(key, { compiled, document, operation, described: describeOperation(operation) });
        },
      };
    },
  };

  /** The content type Apollo answered a request with this Accept header: the fast path answers alike. */
  function learn(accept: string | undefined, type: string | undefined): void {
    if (!type || !accept || contentTypes.get(accept) === type) return;
    if (contentTypes.size >= ACCEPT_MAX) contentTypes.delete(contentTypes.keys().next().value!);
    contentTypes.set(accept, type);
  }

  async function handle(res: ServerResponse, body: unknown, accept: string | undefined, requestId: string, contextOf: () => Promise<unknown>): Promise<boolean> {
    if (!isPlainObject(body) || 'extensions' in body) return false;
    const { query, variables, operationName } = body;
    if (typeof query !== 'string' || (operationName != null && typeof operationName !== 'string') || (variables != null && !isPlainObject(variables))) return false;
    const plan = plans.peek(`${operationName ?? ''}\u0000${query}`);
    if (!plan) return false;
    const contentType = accept ? contentTypes.get(accept) : JSON_TYPE;
    if (!contentType) return false;
    const coerced = getVariableValues(o.schema, plan.operation.variableDefinitions ?? [], variables ?? {}, { maxErrors: 50 });
    if (coerced.errors) return false;
    let context: unknown;
    try {
      context = await contextOf();
    } catch {
      return false;
    }
    const started = performance.now();
    const result = (await plan.compiled.query(undefined, context, coerced.coerced)) as ExecutionResult;
    // Refused before executing: nothing ran, so Apollo can answer it in its words.
    if (result.data === undefined && plan.operation.operation === 'query') return false;
    let status = 200;
    let errors: GraphQLFormattedError[] | undefined;
    if (result.errors?.length) {
      const located = asGraphQLErrors(plan.document, plan.operation, result.errors).map((e) => o.limits.scrub(e));
      noteUnexpected(located, requestId, (context as { logger?: Logger }).logger ?? o.logger);
      // As Apollo's error normalization: a code on every error, an `http` extension taken as the status.
      errors = located.map((e) => {
        const { http, ...rest } = e.extensions as { http?: { status?: number } } & Record<string, unknown>;
        if (http?.status) status = http.status;
        return o.formatError({ ...e.toJSON(), extensions: { ...rest, code: rest.code ?? 'INTERNAL_SERVER_ERROR' } }, e);
      });
    }
    const line = jsonLine({ errors, data: result.data });
    o.metrics.operation({ ...plan.described, code: firstCode(errors), seconds: (performance.now() - started) / 1000 });
    served++;
    res.statusCode = status;
    res.setHeader('content-type', contentType);
    res.setHeader('content-length', line.length);
    res.end(line);
    return true;
  }

  return {
    plugin,
    handle,
    learn,
    get served() {
      return served;
    },
  };
}
