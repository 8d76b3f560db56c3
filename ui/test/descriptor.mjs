// The filter descriptor in the shape GET /v1/filters answers (crates/engine/src/query/
// filters.rs), for the unit tests.
const ALL = ["conversations", "messages", "aggregates"];

export const DESCRIPTOR = {
  filters: [
    { param: "channel", kind: "multi", description: "Channel the conversation came in on (case-insensitive).", facet: "channel", targets: ALL, section: { title: "Source" } },
    { param: "tag", kind: "multi", description: "A tag the tagging job gave the conversation.", facet: "tag", targets: ALL, section: { title: "Tags" } },
    { param: "flagged", kind: "bool", description: "Whether a reviewer flagged the conversation.", facet: "flagged", targets: ALL, section: { title: "Flagged" } },
    { param: "label", kind: "multi", description: "A reviewer's label (case-insensitive).", facet: "label", targets: ALL, section: { title: "Labels", empty: "No labels in this range yet." } },
    { param: "flow", kind: "multi", description: "A flow the conversation entered.", facet: "flow", targets: ALL, section: { title: "Flows", searchable: true } },
    { param: "step", kind: "multi", description: "A step of the `flow` the conversation reached.", facet: "flow", targets: ALL, requires: "flow" },
    { param: "dropoff", kind: "bool", description: "Whether the conversation dropped off.", facet: "flow", targets: ALL },
    { param: "node", kind: "multi", description: "A dialog node the conversation passed through.", facet: "node", targets: ALL, section: { title: "Nodes", searchable: true, hint: "prompt nodes" } },
    { param: "intent", kind: "multi", description: "An intent the NLU recognised in a user message.", facet: "intent", targets: ALL, section: { title: "Intents", searchable: true } },
    { param: "role", kind: "multi", description: "Who sent the message: user, bot, agent or system.", targets: ["messages"] },
  ],
};
