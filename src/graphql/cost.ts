import {
  getNamedType,
  GraphQLError,
  isInterfaceType,
  isObjectType,
  Kind,
  type ArgumentNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLNamedType,
  type OperationDefinitionNode,
  type SelectionNode,
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
 * - the items its pages can hold: each page's size (its literal, the largest page for a variable,
 *   else the field's default) times the pages it sits in, summed. A page of 100 is one hundred
 *   items, a page of 100 groups each with a page of 100 members ten thousand more.
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
        context.reportError(limitError(`Items limit of ${maxItems} exceeded, found ${items}: the document's pages (first/last, a variable counted as ${PAGE_MAX}) times the pages they are in.`));
      }
    },
  });
}

const limitError = (message: string) => new GraphQLError(message, { extensions: { code: 'BAD_USER_INPUT' } });

/** graphql-armor's estimate (without its page multiplier): the figures GRAPHQL_MAX_COST was set against stay the same. */
function costOf(context: ValidationContext, operation: OperationDefinitionNode): number {
  const fragments = new Map<string, number>();
  const of = (node: SelectionNode | FragmentDefinitionNode): number => {
    if (node.kind === Kind.FRAGMENT_SPREAD) {
      const known = fragments.get(node.name.value);
      // A spread seen before costs what it did; one being costed (a cycle, which validation refuses too) costs nothing more.
      if (known !== undefined) return SCALAR_COST + DEPTH_FACTOR * Math.max(0, known);
      fragments.set(node.name.value, -1);
      const fragment = context.getFragment(node.name.value);
      if (!fragment) return SCALAR_COST;
      const cost = of(fragment);
      fragments.set(node.name.value, cost);
      return SCALAR_COST + DEPTH_FACTOR * cost;
    }
    if (!node.selectionSet) return SCALAR_COST;
    let cost = OBJECT_COST;
    for (const child of node.selectionSet.selections) cost += DEPTH_FACTOR * of(child);
    return cost;
  };
  let cost = 0;
  for (const child of operation.selectionSet.selections) cost += of(child);
  return cost;
}

/** Items the pages under `set` can hold, each counted `times` (the pages it sits in). */
function itemsOf(context: ValidationContext, set: SelectionSetNode, type: GraphQLNamedType, times: number, path: Set<string>): number {
  let items = 0;
  for (const node of set.selections) {
    if (node.kind === Kind.FIELD) {
      const field = isObjectType(type) || isInterfaceType(type) ? type.getFields()[node.name.value] : undefined;
      if (!field) continue;
      const page = pageOf(node.arguments ?? [], field);
      if (page !== undefined) items += times * page;
      if (node.selectionSet) items += itemsOf(context, node.selectionSet, getNamedType(field.type), times * (page ?? 1), path);
    } else if (node.kind === Kind.INLINE_FRAGMENT) {
      const on = node.typeCondition ? context.getSchema().getType(node.typeCondition.name.value) : type;
      if (on) items += itemsOf(context, node.selectionSet, on, times, path);
    } else {
      const name = node.name.value;
      const fragment = context.getFragment(name);
      const on = fragment && context.getSchema().getType(fragment.typeCondition.name.value);
      if (!fragment || !on || path.has(name)) continue;
      path.add(name);
      items += itemsOf(context, fragment.selectionSet, on, times, path);
      path.delete(name);
    }
  }
  return items;
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
