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
      const items = itemsOf(context, operation.selectionSet, root, 1, new Set());
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
 */
function costOf(context: ValidationContext, operation: OperationDefinitionNode): number {
  /** The fields a selection set holds, its fragments' included; `path` guards against a cycle (which validation refuses too). */
  const fieldsOf = (set: SelectionSetNode, path: Set<string>, out: FieldNode[] = []): FieldNode[] => {
    for (const node of set.selections) {
      if (node.kind === Kind.FIELD) out.push(node);
      else if (node.kind === Kind.INLINE_FRAGMENT) fieldsOf(node.selectionSet, path, out);
      else {
        const fragment = context.getFragment(node.name.value);
        if (!fragment || path.has(node.name.value)) continue;
        path.add(node.name.value);
        fieldsOf(fragment.selectionSet, path, out);
        path.delete(node.name.value);
      }
    }
    return out;
  };
  const of = (field: FieldNode): number => {
    if (!field.selectionSet) return SCALAR_COST;
    let cost = OBJECT_COST;
    for (const child of fieldsOf(field.selectionSet, new Set())) cost += DEPTH_FACTOR * of(child);
    return cost;
  };
  let cost = 0;
  for (const field of fieldsOf(operation.selectionSet, new Set())) cost += of(field);
  return cost;
}

/**
 * Items the pages under `set` can hold, each counted `times` (the pages it sits in). Fragments on
 * other types than `type` (the members of an interface: `node`'s Conversation, Group, …) are
 * alternatives, one of which each object takes: the largest counts, not their sum.
 */
function itemsOf(context: ValidationContext, set: SelectionSetNode, type: GraphQLNamedType, times: number, path: Set<string>): number {
  let items = 0;
  const narrowed = new Map<string, number>();
  const add = (on: GraphQLNamedType, n: number) => (on === type ? (items += n) : narrowed.set(on.name, (narrowed.get(on.name) ?? 0) + n));
  for (const node of set.selections) {
    if (node.kind === Kind.FIELD) {
      const field = isObjectType(type) || isInterfaceType(type) ? type.getFields()[node.name.value] : undefined;
      if (!field) continue;
      const size = pageOf(node.arguments ?? [], field) ?? listOf(type.name, node, field);
      if (size !== undefined) items += times * size;
      if (node.selectionSet) items += itemsOf(context, node.selectionSet, getNamedType(field.type), times * (size ?? 1), path);
    } else if (node.kind === Kind.INLINE_FRAGMENT) {
      const on = node.typeCondition ? context.getSchema().getType(node.typeCondition.name.value) : type;
      if (on) add(on, itemsOf(context, node.selectionSet, on, times, path));
    } else {
      const name = node.name.value;
      const fragment = context.getFragment(name);
      const on = fragment && context.getSchema().getType(fragment.typeCondition.name.value);
      if (!fragment || !on || path.has(name)) continue;
      path.add(name);
      add(on, itemsOf(context, fragment.selectionSet, on, times, path));
      path.delete(name);
    }
  }
  return items + Math.max(0, ...narrowed.values());
}

/**
 * The most a list of objects that is not a page holds, as far as the server bounds it: lists count
 * as pages do (a page of conversations each with its pinned messages each with a page of members
 * was counted as 100 items, and held the server for seconds). A connection's `edges` are its page,
 * counted there. A message's mentions are not bounded (`@all`): counted as a busy message's.
 */
const LIST_MOST: Record<string, number> = {
  'Conversation.pinnedMessages': 50,
  'Group.bannedUsers': 500,
  'Message.mentions': 50,
  'Message.reactions': 20,
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
