import { GraphQLError, type ExecutionResult, type GraphQLFormattedError } from 'graphql';
import { unwrapResolverError } from '@apollo/server/errors';
import { DriverException } from '@mikro-orm/core';
import type { ApolloServerPlugin } from '@apollo/server';
import type { Logger } from '../shared/logger';
import { isDeadlock, isDependencyDown, isStatementTimeout } from '../shared/sql';
import { INTROSPECTION_OFF, SUGGESTION, limitMessage, type DocumentLimits } from './limits';

// Where the transports (HTTP, WebSocket, SSE) read it; it lives beside isDeadlock, for services too.
export { isDependencyDown };

const INTERNAL = 'Internal server error';
/** How graphql-js ends coercing variables after 50 errors (execution/values.js). */
const TOO_MANY_VARIABLE_ERRORS = 'Too many errors processing variables';

/** What Apollo's `formatError` is: the formatted error and the error it came from, to the error a client sees. */
export type ErrorFormatter = (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError;

/** What an error is to a client: a dependency outage, bad input, a known code, or unexpected. */
function classify(error: unknown, code: string | undefined): 'unavailable' | 'input' | 'known' | 'internal' {
  const original = unwrapResolverError(error);
  // A failure outside a resolver comes wrapped with no path (an SSE stream's set-up): its cause
  // decides. A reset connection's "read ECONNRESET" was masked as internal there (an outside probe).
  const cause = original instanceof GraphQLError && original.originalError ? original.originalError : original;
  if (isDependencyDown(cause) || (cause instanceof DriverException && isDependencyDown(cause))) return 'unavailable';
  // A deadlock's victim (one no retry took again) runs if sent again: the client is told so, not
  // an internal error; the server logs it (see shape), since a lock order is to be found.
  if (isDeadlock(original) || isStatementTimeout(original)) return 'unavailable';
  if (code === 'GRAPHQL_PARSE_FAILED' || code === 'GRAPHQL_VALIDATION_FAILED' || code === 'BAD_REQUEST' || code === 'OPERATION_RESOLUTION_FAILURE') return 'input';
  // graphql-js's last word after 50 variable errors carries no node, so Apollo takes it for its own
  // fault: masked and logged as unexpected, a client could fill the error log (an outside probe).
  if (original instanceof GraphQLError && (!code || code === 'INTERNAL_SERVER_ERROR') && original.message.startsWith(TOO_MANY_VARIABLE_ERRORS)) return 'input';
  // Apollo's own refusals of a request that carry only an HTTP status (a persisted query's unknown
  // version, a hash that doesn't match its query): the client's mistake, not the server's.
  const status = (original instanceof GraphQLError ? (original.extensions?.http as { status?: number } | undefined)?.status : undefined) ?? 0;
  if (status >= 400 && status < 500 && (!code || code === 'INTERNAL_SERVER_ERROR')) return 'input';
  if (original instanceof GraphQLError && code && code !== 'INTERNAL_SERVER_ERROR') return 'known';
  return 'internal';
}

/** Unexpected errors already logged with their request id (by the Apollo plugin), so the formatter doesn't log them again. */
const logged = new WeakSet<object>();

/**
 * Logs every unexpected error of an HTTP request once, with the request id, and puts that id
 * on the error so the masked answer still lets a user quote it.
 */
export function errorLogPlugin(logger: Logger): ApolloServerPlugin<{ requestId?: string; logger?: Logger }> {
  return {
    async requestDidStart() {
      return {
        async didEncounterErrors({ errors, contextValue }) {
          noteUnexpected(errors, contextValue?.requestId, contextValue?.logger ?? logger);
        },
      };
    },
  };
}

/** Logs each unexpected error of a request once, and puts the request id on it (see errorLogPlugin). */
export function noteUnexpected(errors: readonly GraphQLError[], requestId: string | undefined, logger: Logger): void {
  for (const e of errors) {
    if (classify(e, e.extensions?.code as string | undefined) !== 'internal') continue;
    const original = unwrapResolverError(e);
    logger.error({ err: original, requestId }, 'unexpected error');
    if (original && typeof original === 'object') logged.add(original);
    if (requestId) (e.extensions as Record<string, unknown>).requestId = requestId;
  }
}

/** How often an outage's SERVICE_UNAVAILABLE answers are logged, at most. */
const OUTAGE_LOG_MS = 10_000;

/**
 * Shapes every error a client sees: known codes pass, a database outage becomes
 * SERVICE_UNAVAILABLE, anything unexpected becomes INTERNAL_SERVER_ERROR (masked in
 * production: no message, stack or SQL; logged with the request id either way).
 */
export function createErrorFormatter(opts: {
  production: boolean;
  logger: Logger;
  /** No "Did you mean …" in any message (introspection off): a variable that doesn't coerce named the enum's values over HTTP. */
  hideSuggestions?: boolean;
}): ErrorFormatter {
  let outageLoggedAt = -Infinity;
  const shape = (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = unwrapResolverError(error);
    const code = formatted.extensions?.code as string | undefined;
    const kind = classify(error, code);
    if (kind === 'unavailable') {
      if (isDeadlock(original)) opts.logger.warn({ err: original }, 'deadlock victim answered SERVICE_UNAVAILABLE');
      // Held 15 s by locks or load: no outage either, and worth finding.
      else if (isStatementTimeout(original)) opts.logger.warn({ err: original }, 'statement timeout answered SERVICE_UNAVAILABLE');
      // An outage (or PostgreSQL out of connection slots) answers every request alike: one line in
      // OUTAGE_LOG_MS says so and why; the metrics count them all.
      else if (Date.now() - outageLoggedAt >= OUTAGE_LOG_MS) {
        outageLoggedAt = Date.now();
        opts.logger.warn({ err: original }, `PostgreSQL or Redis away: answered SERVICE_UNAVAILABLE (one such line in ${OUTAGE_LOG_MS / 1000} s at most)`);
      }
      return { message: 'Service temporarily unavailable; try again shortly.', path: formatted.path, extensions: { code: 'SERVICE_UNAVAILABLE' } };
    }
    if (kind === 'input') {
      // The contract speaks of bad input with one code; the parser's own stays as a detail (a
      // document limit's as over WebSocket and SSE, GRAPHQL_LIMIT; graphql-js's "more that" fixed, as there).
      const message = limitMessage(formatted.message)
        .replace(/\bmore that (?=\d)/, 'more than ')
        // Apollo's words name its own option; an operator of this server sets ENABLE_INTROSPECTION.
        .replace(/^GraphQL introspection is not allowed by Apollo Server.*$/s, INTROSPECTION_OFF);
      const reason = code === 'GRAPHQL_VALIDATION_FAILED' && /\blimit of \d/.test(message) ? 'GRAPHQL_LIMIT' : code;
      return { ...formatted, message, extensions: { ...formatted.extensions, code: 'BAD_USER_INPUT', ...(reason && reason !== 'INTERNAL_SERVER_ERROR' ? { reason } : {}) } };
    }
    if (kind === 'known') {
      const { stacktrace: _s, ...extensions } = formatted.extensions ?? {};
      return { ...formatted, extensions };
    }
    if (!(original && typeof original === 'object' && logged.has(original))) opts.logger.error({ err: original }, 'unexpected error');
    const requestId = formatted.extensions?.requestId;
    return {
      message: opts.production ? INTERNAL : formatted.message,
      path: formatted.path,
      locations: formatted.locations,
      extensions: { code: 'INTERNAL_SERVER_ERROR', ...(requestId ? { requestId } : {}) },
    };
  };
  return (formatted, error) => {
    const shaped = shape(formatted, error);
    const message = shortened(opts.hideSuggestions ? shaped.message.replace(SUGGESTION, '') : shaped.message);
    return message === shaped.message ? shaped : { ...shaped, message };
  };
}

/**
 * Apollo's error normalization, for an answer written without Apollo (the HTTP fast path): a code
 * on every error, an `http` extension taken as the response's status (and not shown), then the
 * server's formatter.
 */
export function formatAsApollo(errors: readonly GraphQLError[], formatError: ErrorFormatter): { errors: GraphQLFormattedError[]; status: number } {
  let status = 200;
  const formatted = errors.map((e) => {
    const { http, ...rest } = (e.extensions ?? {}) as { http?: { status?: number } } & Record<string, unknown>;
    if (http?.status) status = http.status;
    return formatError({ ...e.toJSON(), extensions: { ...rest, code: rest.code ?? 'INTERNAL_SERVER_ERROR' } }, e);
  });
  return { errors: formatted, status };
}

/**
 * An error's message with the values it quotes cut short, and at most MAX_MESSAGE characters:
 * graphql-js echoes a variable that did not coerce whole, and a 1 MB string (or an object with a
 * 1 MB key) came back as a 1 MB answer (outside probes).
 */
const LONG_QUOTED = /"((?:[^"\\]|\\.){100})(?:[^"\\]|\\.){20,}"/g;
const MAX_MESSAGE = 1000;
const shortened = (message: string): string => {
  if (message.length <= 500) return message;
  const cut = message.replace(LONG_QUOTED, '"$1…"');
  return cut.length > MAX_MESSAGE ? `${cut.slice(0, MAX_MESSAGE)}…` : cut;
};

/** A request-level error from graphql-js (no code of its own) as the bad input it is. */
function asBadInput(e: GraphQLError): GraphQLError {
  if (e.extensions?.code) return e;
  return new GraphQLError(e.message, { nodes: e.nodes, extensions: { code: 'BAD_USER_INPUT' } });
}

/** Error shaping for operations that don't go through Apollo (WebSocket, SSE): see operationErrors. */
export type OperationErrors = ReturnType<typeof operationErrors>;

/** Error shaping for operations that don't go through Apollo (WebSocket, SSE), as the HTTP path shapes them. */
export function operationErrors(formatError: ErrorFormatter, limits: Pick<DocumentLimits, 'scrub'>) {
  const format = (e: GraphQLError) => formatError(e.toJSON(), e);
  /** Errors before execution (parse, validation, no such operation): bad input unless they carry a code. */
  const formatAll = (errors: readonly GraphQLError[]) => errors.map((e) => format(limits.scrub(e.originalError ? e : asBadInput(e))));
  return {
    format,
    formatAll,
    /** A subscription whose event stream failed, as the errors of its last message. */
    failure: (error: unknown) => {
      const original = error instanceof Error ? error : new Error(String(error));
      return formatAll([new GraphQLError(original.message, { originalError: original })]);
    },
    /**
     * An execution result. An error without a path failed before execution (variables that don't
     * coerce): bad input, as Apollo says. One with a path came from a resolver (a subscription's
     * subscribe included) and is shaped as such: its code kept, or masked and logged when unexpected.
     */
    shape: (r: ExecutionResult): ExecutionResult | { data?: unknown; errors: GraphQLFormattedError[] } =>
      r.errors ? { ...r, errors: r.errors.map((e) => format(limits.scrub(e.path ? e : asBadInput(e)))) } : r,
  };
}
