import type { CodegenConfig } from '@graphql-codegen/cli';

/**
 * Typed documents for clients (Apollo Client, urql, graphql-request) from the operations
 * kept in operations/*.graphql, checked against the committed schema.graphql.
 */
const config: CodegenConfig = {
  schema: 'schema.graphql',
  documents: ['operations/**/*.graphql'],
  ignoreNoDocuments: false,
  generates: {
    'generated/client/': {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: { scalars: { DateTime: 'string' }, enumsAsTypes: true, useTypeImports: true },
    },
    // Which types implement Node: Apollo Client's cache matches `... on Message` inside a
    // `node`/`nodes` answer only with them (InMemoryCache's `possibleTypes`, docs/CLIENTS.md).
    'generated/client/possible-types.ts': {
      plugins: ['fragment-matcher'],
      config: { apolloClientVersion: 3, useExplicitTyping: true },
    },
  },
};

export default config;
