/* eslint-disable */
import * as types from './graphql';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "mutation Signup($username: String!, $password: String!, $displayName: String) {\n  signup(username: $username, password: $password, displayName: $displayName) {\n    token\n    expiresAt\n    user {\n      id\n      username\n      displayName\n      status\n    }\n  }\n}\n\nmutation Login($username: String!, $password: String!) {\n  login(username: $username, password: $password) {\n    token\n    expiresAt\n    user {\n      id\n      username\n      status\n    }\n  }\n}\n\nmutation Logout {\n  logout\n}\n\nquery Me {\n  me {\n    id\n    username\n    displayName\n    status\n    lastSeenAt\n    createdAt\n  }\n}\n\nmutation UpdateProfile($username: String, $displayName: String) {\n  updateProfile(username: $username, displayName: $displayName) {\n    id\n    username\n    displayName\n  }\n}\n\nmutation DeleteAccount($password: String!) {\n  deleteAccount(password: $password)\n}\n\nquery Users($search: String, $first: Int, $after: String) {\n  users(search: $search, first: $first, after: $after) {\n    totalCount\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n    edges {\n      cursor\n      node {\n        id\n        username\n        displayName\n        status\n      }\n    }\n  }\n}": typeof types.SignupDocument,
    "query Typename {\n  __typename\n}": typeof types.TypenameDocument,
};
const documents: Documents = {
    "mutation Signup($username: String!, $password: String!, $displayName: String) {\n  signup(username: $username, password: $password, displayName: $displayName) {\n    token\n    expiresAt\n    user {\n      id\n      username\n      displayName\n      status\n    }\n  }\n}\n\nmutation Login($username: String!, $password: String!) {\n  login(username: $username, password: $password) {\n    token\n    expiresAt\n    user {\n      id\n      username\n      status\n    }\n  }\n}\n\nmutation Logout {\n  logout\n}\n\nquery Me {\n  me {\n    id\n    username\n    displayName\n    status\n    lastSeenAt\n    createdAt\n  }\n}\n\nmutation UpdateProfile($username: String, $displayName: String) {\n  updateProfile(username: $username, displayName: $displayName) {\n    id\n    username\n    displayName\n  }\n}\n\nmutation DeleteAccount($password: String!) {\n  deleteAccount(password: $password)\n}\n\nquery Users($search: String, $first: Int, $after: String) {\n  users(search: $search, first: $first, after: $after) {\n    totalCount\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n    edges {\n      cursor\n      node {\n        id\n        username\n        displayName\n        status\n      }\n    }\n  }\n}": types.SignupDocument,
    "query Typename {\n  __typename\n}": types.TypenameDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "mutation Signup($username: String!, $password: String!, $displayName: String) {\n  signup(username: $username, password: $password, displayName: $displayName) {\n    token\n    expiresAt\n    user {\n      id\n      username\n      displayName\n      status\n    }\n  }\n}\n\nmutation Login($username: String!, $password: String!) {\n  login(username: $username, password: $password) {\n    token\n    expiresAt\n    user {\n      id\n      username\n      status\n    }\n  }\n}\n\nmutation Logout {\n  logout\n}\n\nquery Me {\n  me {\n    id\n    username\n    displayName\n    status\n    lastSeenAt\n    createdAt\n  }\n}\n\nmutation UpdateProfile($username: String, $displayName: String) {\n  updateProfile(username: $username, displayName: $displayName) {\n    id\n    username\n    displayName\n  }\n}\n\nmutation DeleteAccount($password: String!) {\n  deleteAccount(password: $password)\n}\n\nquery Users($search: String, $first: Int, $after: String) {\n  users(search: $search, first: $first, after: $after) {\n    totalCount\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n    edges {\n      cursor\n      node {\n        id\n        username\n        displayName\n        status\n      }\n    }\n  }\n}"): (typeof documents)["mutation Signup($username: String!, $password: String!, $displayName: String) {\n  signup(username: $username, password: $password, displayName: $displayName) {\n    token\n    expiresAt\n    user {\n      id\n      username\n      displayName\n      status\n    }\n  }\n}\n\nmutation Login($username: String!, $password: String!) {\n  login(username: $username, password: $password) {\n    token\n    expiresAt\n    user {\n      id\n      username\n      status\n    }\n  }\n}\n\nmutation Logout {\n  logout\n}\n\nquery Me {\n  me {\n    id\n    username\n    displayName\n    status\n    lastSeenAt\n    createdAt\n  }\n}\n\nmutation UpdateProfile($username: String, $displayName: String) {\n  updateProfile(username: $username, displayName: $displayName) {\n    id\n    username\n    displayName\n  }\n}\n\nmutation DeleteAccount($password: String!) {\n  deleteAccount(password: $password)\n}\n\nquery Users($search: String, $first: Int, $after: String) {\n  users(search: $search, first: $first, after: $after) {\n    totalCount\n    pageInfo {\n      hasNextPage\n      endCursor\n    }\n    edges {\n      cursor\n      node {\n        id\n        username\n        displayName\n        status\n      }\n    }\n  }\n}"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "query Typename {\n  __typename\n}"): (typeof documents)["query Typename {\n  __typename\n}"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;