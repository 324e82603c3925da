import type { ApolloServerOptionsWithGateway } from '@apollo/server';
import {
  execute,
  GraphQLError,
  Kind,
  type DocumentNode,
  type ExecutionArgs,
  type ExecutionResult,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLSchema,
  type OperationDefinitionNode,
  type SelectionSetNode,
} from 'graphql';
import { getVariableValues } from 'graphql/execution/values';
import { compileQuery, isCompiledQuery, type CompiledQuery } from 'graphql-jit';

type Gateway = ApolloServerOptionsWithGateway<Record<string, unknown>>['gateway'];
type Executor = Awaited<ReturnType<Gateway['load']>>['executor'];

/** A document is compiled on its second use: one sent once (or by someone probing) costs no compile. */
const COMPILE_AFTER = 2;

/** Per document (Apollo's document store hands out one DocumentNode per distinct text): uses so far, then the plans by operation name. */
type Entry = { uses: number; plans?: Map<string, CompiledQuery | null> };

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
export function asGraphQLErrors(document: DocumentNode, operation: OperationDefinitionNode, errors: readonly GraphQLError[]): GraphQLError[] {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);
  return errors.map((e) => {
    const nodes = e.path ? fieldNodesAt(operation, fragments, e.path) : [];
    // As graphql-js's locatedError: the original error's extensions (its code) when there is one.
    return new GraphQLError(e.message, { nodes: nodes.length ? nodes : undefined, path: e.path, originalError: e.originalError, extensions: e.originalError ? undefined : e.extensions });
  });
}

/** A compiled plan of one operation of a document, or null where graphql-jit can't compile it. */
export function compile(schema: GraphQLSchema, document: DocumentNode, operationName: string | null | undefined): CompiledQuery | null {
  try {
    const c = compileQuery(schema, document, operationName ?? undefined);
    return isCompiledQuery(c) ? c : null;
  } catch {
    return null;
  }
}

/**
 * Runs a compiled plan with variables graphql-js coerced, and gives its result as graphql-js would
 * (errors located and carrying their original error); null when it produced no data at all (refused
 * before execution), where the caller's graphql-js path has the wording clients expect. Synchronous
 * when every resolver answered synchronously (a subscription event's usually do).
 */
export function runCompiled(
  compiled: CompiledQuery,
  document: DocumentNode,
  operation: OperationDefinitionNode,
  root: unknown,
  context: unknown,
  coercedVariables: Record<string, unknown>,
): ExecutionResult | null | Promise<ExecutionResult | null> {
  const result = compiled.query(root, context, coercedVariables) as ExecutionResult | Promise<ExecutionResult>;
  return isPromise(result) ? result.then((r) => located(document, operation, r)) : located(document, operation, result);
}

function located(document: DocumentNode, operation: OperationDefinitionNode, result: ExecutionResult): ExecutionResult | null {
  if (result.data === undefined) return null;
  return result.errors?.length ? { ...result, errors: asGraphQLErrors(document, operation, result.errors) } : result;
}

export const isPromise = <T>(x: T | Promise<T>): x is Promise<T> => typeof (x as { then?: unknown } | null)?.then === 'function';

/**
 * Whether graphql-jit may run an operation with graphql-js's results: queries, and mutations of
 * one root field (with several, graphql-jit goes on past a failed non-null one where graphql-js
 * stops: a document of aliased logins must not try more passwords than allowed). Introspection
 * stays graphql-js's: tools ask for it once, and graphql-jit's answer isn't checked against it.
 */
export function compilable(op: OperationDefinitionNode): boolean {
  if (op.operation === 'subscription') return false;
  if (op.selectionSet.selections.some((s) => s.kind !== Kind.FIELD || s.name.value === '__schema' || s.name.value === '__type')) return false;
  return op.operation === 'query' || op.selectionSet.selections.length === 1;
}

/**
 * Queries and mutations over a WebSocket: graphql-jit plans kept per document (the document cache
 * hands out one DocumentNode per text), compiled on a document's second use; graphql-js for the
 * rest, and wherever a plan would not answer as graphql-js does (variables that don't coerce, an
 * operation refused before it ran). bench:conversations' typing (500 setTyping/s over sockets)
 * spent 14% of the server's time in graphql-js's execute.
 */
export function compiledOperations(schema: GraphQLSchema): (args: ExecutionArgs & { operation: OperationDefinitionNode }) => Promise<ExecutionResult> {
  const documents = new WeakMap<DocumentNode, Entry>();
  return async (args) => {
    const { document, operation } = args;
    const graphqlJs = () => execute(args) as Promise<ExecutionResult>;
    if (!compilable(operation)) return graphqlJs();
    let entry = documents.get(document);
    if (!entry) documents.set(document, (entry = { uses: 0 }));
    if (++entry.uses < COMPILE_AFTER) return graphqlJs();
    const plans = (entry.plans ??= new Map());
    const key = args.operationName ?? '';
    if (!plans.has(key)) plans.set(key, compile(schema, document, args.operationName));
    const compiled = plans.get(key);
    if (!compiled) return graphqlJs();
    const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], args.variableValues ?? {}, { maxErrors: 50 });
    if (coerced.errors) return graphqlJs();
    return (await runCompiled(compiled, document, operation, undefined, args.contextValue, coerced.coerced)) ?? graphqlJs();
  };
}

/**
 * Executes HTTP queries with graphql-jit: a document is compiled once into a function that
 * resolves its fields without graphql-js's per-field bookkeeping (a page of 50 messages: ~0.3 ms
 * instead of ~1 ms). Results are what graphql-js gives: resolver errors keep their message, path,
 * locations, extensions and original error (so codes and masking are unchanged); what graphql-jit
 * can't compile, mutations and operations refused before execution run on graphql-js.
 * Plugged in as Apollo's gateway: the only supported way to replace its executor; parsing,
 * validation, plugins and error formatting stay Apollo's.
 */
export function compiledExecution(schema: GraphQLSchema): Gateway {
  const documents = new WeakMap<DocumentNode, Entry>();
  let onLoad: ((s: { apiSchema: GraphQLSchema; coreSupergraphSdl: string }) => void) | undefined;

  const plan = (document: DocumentNode, operationName: string | null): CompiledQuery | null => {
    let entry = documents.get(document);
    if (!entry) documents.set(document, (entry = { uses: 0 }));
    if (++entry.uses < COMPILE_AFTER) return null;
    const plans = (entry.plans ??= new Map());
    const key = operationName ?? '';
    if (!plans.has(key)) plans.set(key, compile(schema, document, operationName));
    return plans.get(key)!;
  };

  const executor: Executor = async (rc) => {
    const { document, operation } = rc;
    // The name the client asked for (Apollo's own is null when it names no operation of the document).
    const operationName = rc.request.operationName ?? null;
    const variables = rc.request.variables ?? {};
    const graphqlJs = () => execute({ schema, document, contextValue: rc.context, variableValues: variables, operationName }) as Promise<ExecutionResult>;
    // Queries only: graphql-jit goes on with the next mutation field after a non-null one failed,
    // where graphql-js stops (and a document of aliased logins must not try more passwords than allowed).
    // No operation: graphql-js's error is the one Apollo turns into its answer.
    if (operation?.operation !== 'query') return graphqlJs();
    const compiled = plan(document, operationName);
    if (!compiled) return graphqlJs();
    // Variables coerced by graphql-js, as its execute does: graphql-jit coerces built-in scalar names
    // (ID) its own way, past the schema's ID scalar that normalizes UUIDs. A refusal gets graphql-js's answer.
    const coerced = getVariableValues(schema, operation.variableDefinitions ?? [], variables, { maxErrors: 50 });
    if (coerced.errors) return graphqlJs();
    return (await runCompiled(compiled, document, operation, undefined, rc.context, coerced.coerced)) ?? graphqlJs();
  };

  return {
    onSchemaLoadOrUpdate(callback) {
      onLoad = callback;
      return () => (onLoad = undefined);
    },
    async load() {
      onLoad?.({ apiSchema: schema, coreSupergraphSdl: '' });
      return { executor };
    },
    async stop() {},
  };
}
