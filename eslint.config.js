// The GraphQL lint, run by test/schema-lint.test.ts (so CI counts it): @graphql-eslint's
// schema-recommended and relay rules over schema.graphql, operations-recommended over the
// operations clients use. Each rule changed from its preset says why.
const graphql = require('@graphql-eslint/eslint-plugin');

module.exports = [
  {
    files: ['schema.graphql'],
    languageOptions: { parser: graphql.parser, parserOptions: { graphQLConfig: { schema: 'schema.graphql' } } },
    plugins: { '@graphql-eslint': graphql },
    rules: {
      ...graphql.configs['flat/schema-recommended'].rules,
      ...graphql.configs['flat/schema-relay'].rules,
      // Stricter than the preset: every field, argument, input field and enum value too, as GraphiQL's docs pane shows them.
      '@graphql-eslint/require-description': [
        'error',
        { types: true, rootField: true, DirectiveDefinition: true, FieldDefinition: true, InputValueDefinition: true, EnumValueDefinition: true },
      ],
      // Off: it flags only `User.username`, a contract name (docs/API.md) that clients already use.
      '@graphql-eslint/no-typename-prefix': 'off',
      // Values with no identity of their own (pages, edges, events, a login's answer, counts, receipts, ranked hits) have no id to refetch them by.
      '@graphql-eslint/strict-id-in-types': [
        'error',
        {
          acceptedIdNames: ['id'],
          acceptedIdTypes: ['ID'],
          exceptions: { suffixes: ['Connection', 'Edge', 'Event', 'Payload'], types: ['PageInfo', 'Presence', 'ReactionCount', 'ReadReceipt', 'SearchHit'] },
        },
      ],
      // listTypeCanWrapOnlyEdgeType off: small bounded lists (friends, participants, pins, reactions) are plain lists by contract.
      // shouldImplementNode off: a SearchHit is a ranked result, not an object to refetch; test/schema-lint.test.ts checks every other edge's node is a Node.
      '@graphql-eslint/relay-edge-types': ['error', { withEdgeSuffix: true, shouldImplementNode: false, listTypeCanWrapOnlyEdgeType: false }],
    },
  },
  {
    files: ['operations/*.graphql'],
    languageOptions: { parser: graphql.parser, parserOptions: { graphQLConfig: { schema: 'schema.graphql', documents: 'operations/*.graphql' } } },
    plugins: { '@graphql-eslint': graphql },
    rules: graphql.configs['flat/operations-recommended'].rules,
  },
];
