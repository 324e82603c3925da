import { Field, InterfaceType } from 'type-graphql';
import { IdScalar } from './scalars';

/** The concrete type of a value `node`/`nodes` answers, set where it was resolved (values are plain objects). */
export const NODE_TYPE = Symbol('nodeType');

export type NodeTypeName = 'User' | 'Group' | 'Message' | 'Project' | 'Conversation' | 'ProjectAction' | 'Report';

/** Marks `value` as a `typeName` for the Node interface's resolveType; returns it. */
export function asNode<T extends object>(value: T, typeName: NodeTypeName): T {
  Object.defineProperty(value, NODE_TYPE, { value: typeName, enumerable: false, configurable: true });
  return value;
}

/** The type name `asNode` set on a value. Synchronous: graphql-jit, which runs repeated operations, does not await a resolveType. */
export function nodeTypeOf(value: unknown): NodeTypeName | undefined {
  return (value as { [NODE_TYPE]?: NodeTypeName })[NODE_TYPE];
}

/**
 * Relay's Global Object Identification: an object that `node(id:)` refetches by its id. Ids are
 * the objects' own (UUIDs; a conversation's opaque key such as `g:<uuid>`), not encoded with the type.
 */
@InterfaceType('Node', {
  description: 'An object with an id that `node(id:)` fetches again (Relay refetching); every id is unique across types.',
  resolveType: nodeTypeOf,
})
export abstract class Node {
  @Field(() => IdScalar, { description: 'Unique across every Node type; stable for the life of the object.' })
  id!: string;
}
