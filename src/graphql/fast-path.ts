import type { ServerResponse } from 'node:http';
import type { GraphQLFormattedError } from 'graphql';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../shared/logger';
import type { Metrics } from '../shared/metrics';
import { formatAsApollo, noteUnexpected } from './errors';
import type { DocumentLimits } from './limits';
import type { OperationPipeline } from './operation';
import { firstCode } from './operation-metrics';

/** Accept headers whose content type Apollo chose, remembered (clients send one or two). */
const ACCEPT_MAX = 64;
const JSON_TYPE = 'application/json; charset=utf-8';

export interface FastPathOptions {
  /** Where the documents Apollo validated are found compiled (its gateway prepares them). */
  operations: OperationPipeline;
  limits: Pick<DocumentLimits, 'scrub'>;
  formatError: (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError;
  logger: Logger;
  metrics: Pick<Metrics, 'operation'>;
}

export interface FastPath {
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
 * so a document the operation pipeline holds compiled (Apollo's gateway prepares every document
 * Apollo validated, compiled on its second use) runs again here: its graphql-jit plan, the same
 * context, the same error shaping and logging, the same metrics, the content type
 * Apollo chose for that Accept header. Anything else — a new document, GET, batched or persisted
 * queries, extensions, variables that don't coerce, a context that fails (a bad token) — goes to
 * Apollo, which answers it as before. Subscriptions never come here; a mutation only with one root
 * field (graphql-jit would go on past a failed one where graphql-js stops).
 */
export function createFastPath(o: FastPathOptions): FastPath {
  // Accept headers whose content type Apollo chose (clients send one or two).
  const contentTypes = new LRUCache<string, string>({ max: ACCEPT_MAX });
  let served = 0;

  /** The content type Apollo answered a request with this Accept header: the fast path answers alike. */
  function learn(accept: string | undefined, type: string | undefined): void {
    if (type && accept && contentTypes.get(accept) !== type) contentTypes.set(accept, type);
  }

  async function handle(res: ServerResponse, body: unknown, accept: string | undefined, requestId: string, contextOf: () => Promise<unknown>): Promise<boolean> {
    if (!isPlainObject(body) || 'extensions' in body) return false;
    const { query, variables, operationName } = body;
    if (typeof query !== 'string' || (operationName != null && typeof operationName !== 'string') || (variables != null && !isPlainObject(variables))) return false;
    const prepared = o.operations.prepareKnown(query, operationName, variables);
    // Subscriptions are compiled for their events, and HTTP doesn't carry them (Apollo refuses them).
    if (!prepared || prepared.operation.operation === 'subscription') return false;
    const contentType = accept ? contentTypes.get(accept) : JSON_TYPE;
    if (!contentType) return false;
    let context: unknown;
    try {
      context = await contextOf();
    } catch {
      return false;
    }
    const started = performance.now();
    const result = await o.operations.run(prepared, context);
    let status = 200;
    let errors: GraphQLFormattedError[] | undefined;
    if (result.errors?.length) {
      const scrubbed = result.errors.map((e) => o.limits.scrub(e));
      noteUnexpected(scrubbed, requestId, (context as { logger?: Logger }).logger ?? o.logger);
      ({ errors, status } = formatAsApollo(scrubbed, o.formatError));
    }
    const line = jsonLine({ errors, data: result.data });
    const { name, type, rootFields } = prepared.described;
    o.metrics.operation({ name, type, rootFields, code: firstCode(errors), seconds: (performance.now() - started) / 1000 });
    served++;
    res.statusCode = status;
    res.setHeader('content-type', contentType);
    res.setHeader('content-length', line.length);
    res.end(line);
    return true;
  }

  return {
    handle,
    learn,
    get served() {
      return served;
    },
  };
}
