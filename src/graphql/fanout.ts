import {
  createSourceEventStream,
  execute,
  getOperationAST,
  Kind,
  type ExecutionArgs,
  type ExecutionResult,
  type GraphQLError,
  type GraphQLFormattedError,
} from 'graphql';
import WebSocket from 'ws';
import type { Context } from './context';

/** What one subscription operation needs to write its own frames. */
export interface OperationTarget {
  id: string;
  socket: WebSocket;
  query: string;
  variables: Record<string, unknown> | null | undefined;
  operationName: string | null | undefined;
}

export type FanoutContext = Context & { operation?: OperationTarget };

/**
 * Root fields whose result is the same for every viewer allowed to receive the event, so
 * one execution serves them all. Others (groupEvent, projectAction) resolve viewer-specific
 * data and are executed once per viewer instead.
 */
const VIEWER_INDEPENDENT = new Set(['messageAdded', 'presenceChanged']);

export interface FanoutStats {
  executions: number;
  deliveries: number;
  slowConsumersClosed: number;
  /** Subscription operations running now, by root field. */
  active: Record<string, number>;
}

export interface FanoutOptions {
  /** A socket with more than this many bytes waiting to be sent is closed with 1013. */
  maxBufferedBytes: number;
  /** Shapes errors as the HTTP path does (codes kept, internals masked). */
  formatError: (e: GraphQLError) => GraphQLFormattedError;
  /** Called per frame written, with the seconds since the event reached this instance (a metric). */
  onDelivered?: (seconds: number) => void;
}

/**
 * The `subscribe` graphql-ws calls for subscription operations. graphql-ws still runs the
 * protocol (ids, complete, errors, close codes); what changes is the per-event work:
 * each event is executed once per distinct (document, variables[, viewer]) and serialized
 * once, and every subscriber gets the same pre-built `next` frame written straight to its socket.
 */
export function createFanout(opts: FanoutOptions) {
  // Per event payload object: shape key -> serialized ExecutionResult. Collected with the event.
  const results = new WeakMap<object, Map<string, Promise<string>>>();
  // Per event payload object: when the first subscriber on this instance saw it.
  const seenAt = new WeakMap<object, number>();
  const stats: FanoutStats = { executions: 0, deliveries: 0, slowConsumersClosed: 0, active: {} };

  const serialize = async (args: ExecutionArgs, root: unknown): Promise<string> => {
    stats.executions++;
    const result = (await execute({ ...args, rootValue: root })) as ExecutionResult;
    if (!result.errors) return JSON.stringify({ data: result.data });
    return JSON.stringify({ data: result.data, errors: result.errors.map(opts.formatError) });
  };

  async function subscribe(args: ExecutionArgs): Promise<AsyncIterableIterator<never> | ExecutionResult> {
    const ctx = args.contextValue as FanoutContext;
    const target = ctx.operation;
    const source = await createSourceEventStream(args);
    if (!target || !(Symbol.asyncIterator in (source as object))) return source as ExecutionResult;
    const events = source as AsyncIterableIterator<unknown>;
    const op = getOperationAST(args.document, args.operationName);
    const first = op?.selectionSet.selections[0];
    const rootField = first?.kind === Kind.FIELD ? first.name.value : '';
    const scope = VIEWER_INDEPENDENT.has(rootField) && op!.selectionSet.selections.length === 1 ? '*' : (ctx.viewer?.userId ?? '');
    const shapeKey = `${scope}\u0000${target.operationName ?? ''}\u0000${target.query}\u0000${JSON.stringify(target.variables ?? null)}`;
    const prefix = `{"id":${JSON.stringify(target.id)},"type":"next","payload":`;

    stats.active[rootField] = (stats.active[rootField] ?? 0) + 1;
    let counted = true;
    const uncount = () => {
      if (counted) stats.active[rootField]--;
      counted = false;
    };

    let settle: ((r: IteratorResult<never>) => void) | undefined;
    let fail: ((e: unknown) => void) | undefined;
    let finished = false;
    const ended = new Promise<IteratorResult<never>>((resolve, reject) => ((settle = resolve), (fail = reject)));
    ended.catch(() => undefined);
    const stop = () => {
      if (finished) return;
      finished = true;
      uncount();
      void events.return?.();
      settle!({ value: undefined as never, done: true });
    };

    void (async () => {
      try {
        for await (const root of events) {
          if (finished) break;
          let text: Promise<string>;
          let since = performance.now();
          if (root !== null && typeof root === 'object') {
            let byShape = results.get(root);
            if (!byShape) results.set(root, (byShape = new Map()));
            if (seenAt.has(root)) since = seenAt.get(root)!;
            else seenAt.set(root, since);
            let cached = byShape.get(shapeKey);
            if (!cached) byShape.set(shapeKey, (cached = serialize(args, root)));
            text = cached;
          } else {
            text = serialize(args, root);
          }
          const payload = await text;
          const socket = target.socket;
          if (finished || socket.readyState !== WebSocket.OPEN) break;
          if (socket.bufferedAmount > opts.maxBufferedBytes) {
            // A client that stopped reading can't grow our memory: it reconnects and catches up by query.
            stats.slowConsumersClosed++;
            socket.close(1013, 'Try again later');
            break;
          }
          socket.send(prefix + payload + '}');
          stats.deliveries++;
          opts.onDelivered?.((performance.now() - since) / 1000);
        }
        stop();
      } catch (e) {
        finished = true;
        uncount();
        void events.return?.();
        fail!(e);
      }
    })();

    // graphql-ws iterates this to learn when the operation ends; it never yields a value itself.
    const iterator: AsyncIterableIterator<never> = {
      next: () => ended,
      return: () => {
        stop();
        return Promise.resolve({ value: undefined as never, done: true });
      },
      throw: (e) => {
        stop();
        return Promise.reject(e);
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
    return iterator;
  }

  return { subscribe, stats };
}
