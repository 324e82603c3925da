
      export type PossibleTypesResultData = {
  "possibleTypes": {
    "Node": [
      "Conversation",
      "Group",
      "Message",
      "Project",
      "ProjectAction",
      "Report",
      "User"
    ]
  }
};
      const result: PossibleTypesResultData = {
  "possibleTypes": {
    "Node": [
      "Conversation",
      "Group",
      "Message",
      "Project",
      "ProjectAction",
      "Report",
      "User"
    ]
  }
};
      export default result;
    