import { GraphQLError, GraphQLID, GraphQLScalarType, Kind } from 'graphql';
import { normalizeId } from '../validation';
import { isoTime } from '../time';

const ISO = /^(\d{4})-(\d{2})-(\d{2})T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/** Whether the string's calendar date exists: Date.parse rolls 2027-02-30 over to March 2 instead of refusing it. */
function realDay(value: string): boolean {
  const [, y, m, d] = ISO.exec(value)!.map(Number);
  return m >= 1 && m <= 12 && d >= 1 && d <= new Date(Date.UTC(y, m, 0)).getUTCDate();
}

function parse(value: unknown): Date {
  if (typeof value !== 'string' || !ISO.test(value) || Number.isNaN(Date.parse(value)) || !realDay(value)) {
    throw new GraphQLError('DateTime must be an ISO-8601 string such as 2024-01-31T12:00:00.000Z.', { extensions: { code: 'BAD_USER_INPUT' } });
  }
  return new Date(value);
}

/** ISO-8601 times, as the contract names them. */
export const DateTimeScalar = new GraphQLScalarType<Date, string>({
  name: 'DateTime',
  description: 'An ISO-8601 date-time string in UTC, such as 2024-01-31T12:00:00.000Z.',
  serialize(value) {
    const d = value instanceof Date ? value : new Date(value as string);
    if (Number.isNaN(d.getTime())) throw new GraphQLError('DateTime cannot represent an invalid date.');
    return isoTime(d.getTime());
  },
  parseValue: parse,
  parseLiteral(ast) {
    if (ast.kind !== Kind.STRING) throw new GraphQLError('DateTime must be a string.', { extensions: { code: 'BAD_USER_INPUT' } });
    return parse(ast.value);
  },
});

/**
 * The schema's `ID`, in place of graphql's: same name and wire format, but every ID argument
 * and input field is normalized once here (a UUID in any case becomes lower case), so services
 * compare and key on one spelling. Every `ID` in the schema must be this one: graphql refuses a
 * schema with two types named ID.
 */
export const IdScalar = new GraphQLScalarType<string, string>({
  name: 'ID',
  description: GraphQLID.description,
  specifiedByURL: GraphQLID.specifiedByURL,
  serialize: (value) => GraphQLID.serialize(value),
  parseValue: (value) => normalizeId(GraphQLID.parseValue(value)),
  parseLiteral: (ast, variables) => normalizeId(GraphQLID.parseLiteral(ast, variables)),
});
