import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import { unwrapResolverError } from '@apollo/server/errors';
import { ConnectionException, DriverException } from '@mikro-orm/core';
import type { Logger } from '../shared/logger';

const INTERNAL = 'Internal server error';

/** Errors that mean PostgreSQL or Redis is away, not that the request was wrong. */
function isDependencyDown(e: unknown): boolean {
  if (e instanceof ConnectionException) return true;
  const msg = e instanceof Error ? e.message : '';
  const code = (e as { code?: string })?.code ?? '';
  return (
    /Knex: Timeout acquiring a connection|Connection terminated|ECONNREFUSED|connect ETIMEDOUT|the database system is (starting up|shutting down)|terminating connection|Stream isn't writeable|Connection is closed|Reached the max retries per request/.test(
      msg,
    ) ||
    ['ECONNREFUSED', 'ECONNRESET', '57P01', '57P03', '08006', '08001'].includes(code)
  );
}

/**
 * Shapes every error a client sees: known codes pass, a database outage becomes
 * SERVICE_UNAVAILABLE, anything unexpected becomes INTERNAL_SERVER_ERROR (masked in
 * production, logged with the request id either way).
 */
export function createErrorFormatter(opts: { production: boolean; logger: Logger }) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = unwrapResolverError(error);
    const code = formatted.extensions?.code as string | undefined;
    if (isDependencyDown(original) || (original instanceof DriverException && isDependencyDown(original))) {
      return { message: 'Service temporarily unavailable; try again shortly.', path: formatted.path, extensions: { code: 'SERVICE_UNAVAILABLE' } };
    }
    if (code === 'GRAPHQL_PARSE_FAILED' || code === 'GRAPHQL_VALIDATION_FAILED' || code === 'BAD_REQUEST') {
      // The contract speaks of bad input with one code; the parser's own stays as a detail.
      return { ...formatted, extensions: { ...formatted.extensions, code: 'BAD_USER_INPUT', reason: code } };
    }
    if (original instanceof GraphQLError && code && code !== 'INTERNAL_SERVER_ERROR') {
      const { stacktrace: _s, ...extensions } = formatted.extensions ?? {};
      return { ...formatted, extensions };
    }
    opts.logger.error({ err: original }, 'unexpected error');
    return {
      message: opts.production ? INTERNAL : formatted.message,
      path: formatted.path,
      locations: formatted.locations,
      extensions: { code: 'INTERNAL_SERVER_ERROR' },
    };
  };
}
