import { MAX_REACTION_KINDS } from '../modules/message/reaction.validation';
import {
  getNamedType,
  GraphQLError,
  isCompositeType,
  isInterfaceType,
  isListType,
  isNonNullType,
  isObjectType,
  Kind,
  type ArgumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLNamedType,
  type OperationDefinitionNode,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
} from 'graphql';

/** The most a page may hold (every connection's `first`/`last`: 0 to 100). */
const PAGE_MAX = 100;
const OBJECT_COST = 2;
const SCALAR_COST = 1;
const DEPTH_FACTOR = 1.5;

/**
 * Two limits on what a document asks for, checked before it runs:
 * - its cost, as graphql-armor estimates it (objects 2, scalars 1, ×1.5 per level), of its shape
 *   alone: armor also multiplied a field's cost by a literal `first`/`last` but not by a variable
 *   one, so a page of 100 messages with their senders was refused written one way (13,156 against
 *   5,000) and let through the other, as was a page of pages;
 * - the items its pages and lists can hold: each page's size (its literal, the largest page for a
 *   variable, else the field's default) or list's most (LIST_MOST) times the pages and lists it
 *   sits in, summed. A page of 100 is one hundred items, a page of 100 groups each with a page of
 *   100 members ten thousand more.
 */
export function documentCostRule(maxCost: number, maxItems: number): ValidationRule {
  return (context: ValidationContext) => ({
    OperationDefinition(operation: OperationDefinitionNode) {
      const cost = costOf(context, operation);
      if (cost > maxCost) context.reportError(limitError(`Query Cost limit of ${maxCost} exceeded, found ${cost}.`));
      const root = context.getSchema().getRootType(operation.operation);
      if (!root) return;
      const items = itemsOfOperation(context, operation, root);
      if (items > maxItems) {
        context.reportError(limitError(`Items limit of ${maxItems} exceeded, found ${items}: the sizes of the document's pages (first/last, a variable counted as ${PAGE_MAX}) and lists, each times those it sits in.`));
      }
    },
  });
}

const limitError = (message: string) => new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT' } });

/**
 * graphql-armor's estimate (without its page multiplier), with fragments flattened: a fragment's
 * fields cost what they would written in place. Armor counted each spread and inline fragment as a
 * level of its own (×1.5 each), so a client's colocated fragments (a sidebar's row, its message,
 * its sender) cost ten times the same fields inline and were refused at any page size.
 * Introspection costs nothing, as with armor (GraphiQL's own query is about the limit).
 */
function costOf(context: ValidationContext, operation: OperationDefinitionNode): number {
  const spread = once(context, (fragment) => setCost(fragment.selectionSet));
  /** What a selection set's fields cost: an object 2 and 1.5 times its own fields', a scalar 1. */
  const setCost = (set: SelectionSetNode): number => {
    let cost = 0;
    for (const node of set.selections) {
      if (node.kind === Kind.FIELD) {
        if (node.name.value === '__schema' || node.name.value === '__type') continue;
        cost += node.selectionSet ? OBJECT_COST + DEPTH_FACTOR * setCost(node.selectionSet) : SCALAR_COST;
      } else if (node.kind === Kind.INLINE_FRAGMENT) cost += setCost(node.selectionSet);
      else cost += spread(node.name.value);
    }
    return cost;
  };
  return setCost(operation.selectionSet);
}

/**
 * A fragment's figure, worked out once however often it is spread: expanded at each spread, a
 * fragment spreading another twice, thirty deep, was a billion visits in one small document. One
 * being worked out (a cycle, which validation refuses too) counts nothing more.
 */
function once(context: ValidationContext, figure: (fragment: FragmentDefinitionNode) => number): (name: string) => number {
  const known = new Map<string, number>();
  return (name) => {
    const seen = known.get(name);
    if (seen !== undefined) return seen;
    known.set(name, 0);
    const fragment = context.getFragment(name);
    const n = fragment ? figure(fragment) : 0;
    known.set(name, n);
    return n;
  };
}

/** Items the pages and lists of an operation can hold (see documentCostRule). */
function itemsOfOperation(context: ValidationContext, operation: OperationDefinitionNode, root: GraphQLNamedType): number {
  const spread = once(context, (fragment) => {
    const on = context.getSchema().getType(fragment.typeCondition.name.value);
    return on ? itemsOf(fragment.selectionSet, on) : 0;
  });
  /**
   * Items the pages and lists under `set` hold, for one `type` object. Fragments on other types
   * than `type` (the members of an interface: `node`'s Conversation, Group, …) are alternatives, one
   * of which each object takes: the largest counts, not their sum.
   */
  const itemsOf = (set: SelectionSetNode, type: GraphQLNamedType): number => {
    let items = 0;
    const narrowed = new Map<string, number>();
    const add = (on: GraphQLNamedType, n: number) => (on === type ? (items += n) : narrowed.set(on.name, (narrowed.get(on.name) ?? 0) + n));
    for (const node of set.selections) {
      if (node.kind === Kind.FIELD) {
        const field = isObjectType(type) || isInterfaceType(type) ? type.getFields()[node.name.value] : undefined;
        if (!field) continue;
        const size = pageOf(node.arguments ?? [], field) ?? listOf(type.name, node, field);
        const inner = node.selectionSet ? itemsOf(node.selectionSet, getNamedType(field.type)) : 0;
        // A page's items, each with what it holds.
        items += size === undefined ? inner : size * (1 + inner);
      } else if (node.kind === Kind.INLINE_FRAGMENT) {
        const on = node.typeCondition ? context.getSchema().getType(node.typeCondition.name.value) : type;
        if (on) add(on, itemsOf(node.selectionSet, on));
      } else {
        const fragment = context.getFragment(node.name.value);
        const on = fragment && context.getSchema().getType(fragment.typeCondition.name.value);
        if (on) add(on, spread(node.name.value));
      }
    }
    return items + Math.max(0, ...narrowed.values());
  };
  return itemsOf(operation.selectionSet, root);
}

/**
 * The most a list of objects that is not a page holds, as far as the server bounds it: lists count
 * as pages do (a page of conversations each with its pinned messages each with a page of members
 * was counted as 100 items, and held the server for seconds). A connection's `edges` are its page,
 * counted there.
 */
const LIST_MOST: Record<string, number> = {
  'Conversation.pinnedMessages': 50,
  'Group.bannedUsers': 500,
  'Message.mentions': 50,
  'Message.reactions': MAX_REACTION_KINDS,
  'Message.threadParticipants': 5,
  'Query.readReceipts': 100,
  // Not bounded either: counted as a busy user's.
  'Query.projects': 20,
  'Project.coaches': 20,
  'Project.participants': 50,
};

/** A list field's count (undefined for a field that is not a list of objects, or a connection's edges). */
function listOf(parent: string, node: FieldNode, field: GraphQLField<unknown, unknown>): number | undefined {
  const type = isNonNullType(field.type) ? field.type.ofType : field.type;
  if (!isListType(type) || !isCompositeType(getNamedType(type))) return undefined;
  if (parent.endsWith('Connection') && field.name === 'edges') return undefined;
  if (parent === 'Query' && field.name === 'nodes') {
    const ids = node.arguments?.find((a) => a.name.value === 'ids')?.value;
    return ids?.kind === Kind.LIST ? ids.values.length : PAGE_MAX;
  }
  return LIST_MOST[`${parent}.${field.name}`] ?? PAGE_MAX;
}

/** A page's size as the document gives it; undefined for a field that is not a page. */
function pageOf(args: readonly ArgumentNode[], field: GraphQLField<unknown, unknown>): number | undefined {
  const declared = field.args.filter((a) => a.name === 'first' || a.name === 'last');
  if (!declared.length) return undefined;
  let size: number | undefined;
  for (const arg of args) {
    if (arg.name.value !== 'first' && arg.name.value !== 'last') continue;
    const value = arg.value.kind === Kind.INT ? Number(arg.value.value) : arg.value.kind === Kind.VARIABLE ? PAGE_MAX : undefined;
    if (value !== undefined) size = Math.max(size ?? 0, Math.min(value, PAGE_MAX));
  }
  if (size !== undefined) return size;
  const defaults = declared.map((a) => a.defaultValue).filter((v): v is number => typeof v === 'number');
  return defaults.length ? Math.max(...defaults) : PAGE_MAX;
}
