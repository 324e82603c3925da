import { GraphQLError } from 'graphql';
import { createErrorFormatter } from '../src/graphql/errors';
import type { Logger } from '../src/shared/logger';

describe('error shaping', () => {
  const logged: unknown[] = [];
  const warned: string[] = [];
  const format = createErrorFormatter({ production: true, logger: { error: (o: unknown) => logged.push(o), warn: (_o: unknown, m: string) => warned.push(m) } as unknown as Logger });
  const shaped = (e: Error) => format(new GraphQLError(e.message, { originalError: e }).toJSON(), e);

  it("should answer SERVICE_UNAVAILABLE, not a masked internal error, for the ways PostgreSQL is found away, a deadlock's victim and a statement cancelled at its timeout", () => {
    const connectTimeout = new Error('timeout expired'); // pg's own, when a new connection gets no answer (a stalled server)
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    const pool = new Error('Knex: Timeout acquiring a connection. The pool is probably full.');
    // A deadlock's victim, rolled back whole: sent again, it runs.
    const deadlock = Object.assign(new Error('deadlock detected'), { code: '40P01' });
    // Cancelled at the statement timeout (as MikroORM words it, the statement before pg's message): rolled back whole too.
    const timedOut = Object.assign(new Error('delete from message_reactions where message_id = $1 - canceling statement due to statement timeout'), { code: '57014' });
    // No connection slot left (other clients fill max_connections, or the role's limit): pg's own errors.
    const full = Object.assign(new Error('sorry, too many clients already'), { code: '53300' });
    const roleFull = Object.assign(new Error('too many connections for role "parley"'), { code: '53300' });
    // A database that takes no connections for now (ALLOW_CONNECTIONS false): was INTERNAL_SERVER_ERROR (an outside probe).
    const closed = Object.assign(new Error('database "parley" is not currently accepting connections'), { code: '55000' });
    for (const e of [connectTimeout, refused, pool, deadlock, timedOut, full, roleFull, closed]) expect(shaped(e).extensions).toEqual({ code: 'SERVICE_UNAVAILABLE' });
    // Wrapped with no path, as outside a resolver (an SSE stream's set-up): its cause decides, a reset connection's too.
    const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
    const wrapped = new GraphQLError(reset.message, { originalError: reset });
    expect(format(wrapped.toJSON(), wrapped).extensions).toEqual({ code: 'SERVICE_UNAVAILABLE' });
    expect(logged).toEqual([]);
    // A deadlock or a timeout is no outage: the server logs each, a lock order (or a load) being to
    // find. An outage's answers are logged once in 10 s (the first here), so an operator reads why.
    expect(warned).toEqual([
      'PostgreSQL or Redis away: answered SERVICE_UNAVAILABLE (one such line in 10 s at most)',
      'deadlock victim answered SERVICE_UNAVAILABLE',
      'statement timeout answered SERVICE_UNAVAILABLE',
    ]);
    // A cancel for another reason (an operator's pg_cancel_backend) stays unexpected.
    expect(shaped(Object.assign(new Error('canceling statement due to user request'), { code: '57014' })).extensions).toEqual({ code: 'INTERNAL_SERVER_ERROR' });
    logged.length = 0;
  });

  it('should mask and log what it does not know', () => {
    expect(shaped(new Error('a statement timeout expired somewhere')).extensions).toEqual({ code: 'INTERNAL_SERVER_ERROR' });
    expect(logged).toHaveLength(1);
  });
});
