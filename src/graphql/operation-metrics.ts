import type { ApolloServerPlugin } from '@apollo/server';
import { Kind, type OperationDefinitionNode } from 'graphql';
import type { Metrics, OperationRecord } from '../shared/metrics';

/** What the metrics say of an operation: its name, type and root field names. */
export type OperationDescription = Pick<OperationRecord, 'name' | 'type' | 'rootFields'>;

/** The name, type and root field names of a resolved operation (fragment spreads at the root are not followed). */
export function describeOperation(op: OperationDefinitionNode): OperationDescription {
  const rootFields = op.selectionSet.selections.flatMap((s) => (s.kind === Kind.FIELD ? [s.name.value] : []));
  // The document's own name: graphql-ws clients send none beside it.
  return { name: op.name?.value, type: op.operation, rootFields };
}

/** The code of the first error a client got, or null when there was none. */
export function firstCode(errors: readonly { extensions?: Record<string, unknown> }[] | undefined): string | null {
  if (!errors?.length) return null;
  const code = errors[0].extensions?.code;
  return typeof code === 'string' ? code : 'INTERNAL_SERVER_ERROR';
}

/** Counts every HTTP operation once it is answered: `parley_graphql_operations_total` and the duration histogram. */
export function operationMetricsPlugin(metrics: Metrics): ApolloServerPlugin {
  return {
    async requestDidStart() {
      const started = performance.now();
      let described: OperationDescription = {};
      return {
        async didResolveOperation({ operation }) {
          if (operation) described = describeOperation(operation);
        },
        async willSendResponse({ response }) {
          // The errors as the client sees them (formatted: masked ones are INTERNAL_SERVER_ERROR).
          const errors = response.body.kind === 'single' ? response.body.singleResult.errors : undefined;
          metrics.operation({ ...described, code: firstCode(errors), seconds: (performance.now() - started) / 1000 });
        },
      };
    },
  };
}
