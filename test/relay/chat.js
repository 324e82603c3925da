// What a Relay client of Parley compiles: test/relay.test.ts runs relay-compiler over this file
// against schema.graphql. Never run; the `graphql` tags are read by the compiler alone.

// A user card that refetches itself through Query.node (needs User to implement Node).
graphql`
  fragment UserCard_user on User @refetchable(queryName: "UserCardRefetchQuery") {
    id
    username
    displayName
    status
  }
`;

// A conversation's history, paged back from the newest (usePaginationFragment's loadPrevious).
graphql`
  fragment ChatHistory_query on Query
  @argumentDefinitions(conversation: { type: "ConversationInput!" }, count: { type: "Int", defaultValue: 20 }, cursor: { type: "String" })
  @refetchable(queryName: "ChatHistoryPaginationQuery") {
    history(conversation: $conversation, last: $count, before: $cursor) @connection(key: "ChatHistory_history") {
      edges {
        node {
          id
          content
          createdAt
          sender {
            ...UserCard_user
          }
        }
      }
    }
  }
`;

// The sidebar, paged forward (loadNext).
graphql`
  fragment Sidebar_query on Query
  @argumentDefinitions(count: { type: "Int", defaultValue: 20 }, cursor: { type: "String" })
  @refetchable(queryName: "SidebarPaginationQuery") {
    conversations(first: $count, after: $cursor) @connection(key: "Sidebar_conversations") {
      edges {
        node {
          id
          title
          unreadCount
        }
      }
    }
  }
`;

graphql`
  query ChatScreenQuery($conversation: ConversationInput!) {
    me {
      ...UserCard_user
    }
    ...ChatHistory_query @arguments(conversation: $conversation)
    ...Sidebar_query
  }
`;
