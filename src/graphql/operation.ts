import { LRUCache } from 'lru-cache';
import {
  execute,
  GraphQLError,
  Kind,
  type DocumentNode,
  type ExecutionResult,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { getVariableValues } from 'graphql/execution/values';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';
import { documentBytes, selectOperation, type DocumentLimits } from './limits';
import { describeOperation, type OperationDescription } from './operation-metrics';

/** Bytes of documents kept with their operations and plans (clients repeat a handful of documents). */
const DOCUMENT_CACHE_BYTES = 8 * 1024 * 1024;

/** A query or mutation is compiled on its second use: one sent once (or by someone probing) costs no compile. */
const COMPILE_AFTER = 2;

/** One operation of a request, ready to run: what every transport and the fan-out execute. */
export interface PreparedOperation {
  readonly document: DocumentNode;
  readonly operation: OperationDefinitionNode;
  /** As the client sent it (graphql-js's fallback selects with it). */
  readonly operationName: string | null | undefined;
  /** As the client sent them (graphql-js's fallback coerces its own). */
  readonly variableValues: Record<string, unknown> | null | undefined;
  /** Coerced by graphql-js for the plan; undefined when there is no plan or they don't coerce (graphql-js then answers). */
  readonly coercedVariables: Record<string, unknown> | undefined;
  /** The graphql-jit plan, or null while graphql-js runs it (not compiled yet, or not compilable). */
  readonly plan: CompiledQuery | null;
  readonly described: OperationDescription;
}

/** A request refused before anything ran (parse, validation, no such operation): the errors to answer with, unshaped. */
export interface Refusal {
  readonly errors: readonly GraphQLError[];
}

export const isRefusal = (p: PreparedOperation | Refusal): p is Refusal => 'errors' in p;

/** One operation of a cached document: selected and described once, compiled when it is used again. */
interface KnownOperation {
  readonly operation: OperationDefinitionNode;
  readonly described: OperationDescription;
  uses: number;
  /** undefined until it is due to be compiled; null when graphql-jit can't or mustn't run it. */
  plan: CompiledQuery | null | undefined;
}

/** A validated document and its operations by name ('' for the only one). */
class KnownDocument {
  readonly operations = new Map<string, KnownOperation>();
  constructor(readonly document: DocumentNode) {}
}

export interface OperationStats {
  /** Operations and events run on a graphql-jit plan. */
  compiled: number;
  /** Run by graphql-js (first use, not compilable, or refused before a plan ran). */
  interpreted: number;
}

/**
 * The one way Parley runs an operation, for every transport (the Apollo gateway, the HTTP fast
 * path, WebSocket, SSE) and the subscription fan-out: `prepare` finds the document in one cache
 * keyed by its text (parsed and validated on a miss, with the HTTP path's limits), selects and
 * describes the operation once, coerces the variables and hands out the graphql-jit plan; `run`
 * executes it. Every document in the cache passed validation (here or by Apollo), which is what
 * lets the fast path skip Apollo for one it finds.
 */
export class OperationPipeline {
  readonly stats: OperationStats = { compiled: 0, interpreted: 0 };
  private readonly documents = new LRUCache<string, KnownDocument>({
    maxSize: DOCUMENT_CACHE_BYTES,
    // The document (source and AST) and room for its plans once compiled.
    sizeCalculation: (known) => documentBytes(known.document) * 3,
  });

  constructor(
    private readonly schema: GraphQLSchema,
    private readonly limits: Pick<DocumentLimits, 'check'>,
  ) {}

  /**
   * Prepares the operation `operationName` of `query`.
   * @param validated the document Apollo parsed and validated from `query` (nothing is checked again).
   * @returns the operation, or the errors that refuse the request (nothing thrown).
   */
  prepare(query: unknown, operationName: string | null | undefined, variables: Record<string, unknown> | null | undefined, validated?: DocumentNode): PreparedOperation | Refusal {
    let known = typeof query === 'string' ? this.documents.get(query) : undefined;
    if (!known) {
      let document = validated;
      if (!document) {
        const checked = this.limits.check(this.schema, query);
        if ('errors' in checked) return checked;
        document = checked.document;
      }
      known = new KnownDocument(document);
      this.documents.set(query as string, known);
    }
    return this.select(known, operationName, variables, true);
  }

  /**
   * The operation of a document already validated, if it is compiled and its variables coerce;
   * undefined otherwise (nothing parsed, validated or compiled): the fast path's question.
   */
  prepareKnown(query: string, operationName: string | null | undefined, variables: Record<string, unknown> | null | undefined): PreparedOperation | undefined {
    const known = this.documents.get(query);
    const prepared = known && this.select(known, operationName, variables, false);
    return prepared && !isRefusal(prepared) && prepared.coercedVariables ? prepared : undefined;
  }

  /**
   * Runs a prepared operation: its plan when it has one and its variables coerced, graphql-js
   * otherwise, or where a plan answered no data at all (refused before execution: graphql-js has
   * the wording clients expect). Synchronous when every resolver answered synchronously (a
   * subscription event's usually do).
   * @param root the event, for a subscription.
   */
  run(prepared: PreparedOperation, context: unknown, root?: unknown): ExecutionResult | Promise<ExecutionResult> {
    const { plan, coercedVariables } = prepared;
    if (!plan || !coercedVariables) return this.interpret(prepared, context, root);
    const result = plan.query(root, context, coercedVariables) as ExecutionResult | Promise<ExecutionResult>;
    if (!isPromise(result)) return this.located(prepared, context, root, result);
    return result.then((r) => this.located(prepared, context, root, r));
  }

  private located(prepared: PreparedOperation, context: unknown, root: unknown, result: ExecutionResult): ExecutionResult | Promise<ExecutionResult> {
    if (result.data === undefined) return this.interpret(prepared, context, root);
    this.stats.compiled++;
    return result.errors?.length ? { ...result, errors: asGraphQLErrors(prepared.document, prepared.operation, result.errors) } : result;
  }

  private interpret(prepared: PreparedOperation, contextValue: unknown, rootValue: unknown): ExecutionResult | Promise<ExecutionResult> {
    this.stats.interpreted++;
    const { document, operationName, variableValues } = prepared;
    return execute({ schema: this.schema, document, operationName, variableValues, contextValue, rootValue });
  }

  private select(known: KnownDocument, operationName: string | null | undefined, variables: Record<string, unknown> | null | undefined, use: boolean): PreparedOperation | Refusal {
    // No name and an empty one apart: "" names no operation (as Apollo and graphql-js read it), and
    // found under no name's key it ran on the fast path, or made Apollo answer 500 (the fuzzer).
    const key = operationName == null ? '' : `=${operationName}`;
    let op = known.operations.get(key);
    if (!op) {
      const operation = selectOperation(known.document, operationName);
      if (operation instanceof GraphQLError) return { errors: [operation] };
      known.operations.set(key, (op = { operation, described: describeOperation(operation), uses: 0, plan: undefined }));
    }
    // A subscription's plan runs for every event, so it is compiled at once.
    if (use && op.plan === undefined && ++op.uses >= (op.operation.operation === 'subscription' ? 1 : COMPILE_AFTER)) {
      op.plan = planOf(this.schema, known.document, op.operation, operationName);
    }
    const plan = op.plan ?? null;
    let coercedVariables: Record<string, unknown> | undefined;
    if (plan) {
      // Coerced by graphql-js, as its execute does: graphql-jit coerces built-in scalar names (ID)
      // its own way, past the schema's ID scalar that normalizes UUIDs.
      const coerced = getVariableValues(this.schema, op.operation.variableDefinitions ?? [], variables ?? {}, { maxErrors: 50 });
      if (!coerced.errors) coercedVariables = coerced.coerced;
    }
    return { document: known.document, operation: op.operation, operationName, variableValues: variables, coercedVariables, plan, described: op.described };
  }
}

/** The plan of one operation, or null where graphql-jit can't compile it or mustn't run it (see compilable). */
function planOf(schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode, operationName: string | null | undefined): CompiledQuery | null {
  if (operation.operation !== 'subscription' && !compilable(operation)) return null;
  try {
    const compiled = compileQuery(schema, document, operationName ?? undefined);
    return isCompiledQuery(compiled) ? compiled : null;
  } catch {
    return null;
  }
}

/**
 * Whether graphql-jit may run a request with graphql-js's results: queries, and mutations of one
 * root field (with several, graphql-jit goes on past a failed non-null one where graphql-js stops:
 * a document of aliased logins must not try more passwords than allowed). Introspection stays
 * graphql-js's: tools ask for it once, and graphql-jit's answer isn't checked against it.
 * (A subscription's plan runs its events, not the request.)
 */
function compilable(op: OperationDefinitionNode): boolean {
  if (op.operation === 'subscription') return false;
  if (op.selectionSet.selections.some((s) => s.kind !== Kind.FIELD || s.name.value === '__schema' || s.name.value === '__type')) return false;
  return op.operation === 'query' || op.selectionSet.selections.length === 1;
}

export const isPromise = <T>(x: T | Promise<T>): x is Promise<T> => typeof (x as { then?: unknown } | null)?.then === 'function';

/** The AST fields a response path names, through fragments: graphql-js locates an error by them. */
function fieldNodesAt(operation: OperationDefinitionNode, fragments: Map<string, FragmentDefinitionNode>, path: readonly (string | number)[]): FieldNode[] {
  let sets: SelectionSetNode[] = [operation.selectionSet];
  let found: FieldNode[] = [];
  for (const key of path) {
    if (typeof key === 'number') continue;
    found = [];
    const visit = (set: SelectionSetNode) => {
      for (const s of set.selections) {
        if (s.kind === Kind.FIELD && (s.alias?.value ?? s.name.value) === key) found.push(s);
        else if (s.kind === Kind.INLINE_FRAGMENT) visit(s.selectionSet);
        else if (s.kind === Kind.FRAGMENT_SPREAD) {
          const f = fragments.get(s.name.value);
          if (f) visit(f.selectionSet);
        }
      }
    };
    sets.forEach(visit);
    sets = found.flatMap((f) => (f.selectionSet ? [f.selectionSet] : []));
  }
  return found;
}

/**
 * graphql-jit's errors as graphql-js makes them: its own lack `nodes` and, for an error without
 * extensions (anything unexpected), have a frozen `extensions` of undefined where Apollo and the
 * error log expect an object.
 */
function asGraphQLErrors(document: DocumentNode, operation: OperationDefinitionNode, errors: readonly GraphQLError[]): GraphQLError[] {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  return errors.map((e) => {
    const nodes = e.path ? fieldNodesAt(operation, fragments, e.path) : [];
    // As graphql-js's locatedError: the original error's extensions (its code) when there is one.
    return new GraphQLError(e.message, { nodes: nodes.length ? nodes : undefined, path: e.path, originalError: e.originalError, extensions: e.originalError ? undefined : e.extensions });
  });
}
