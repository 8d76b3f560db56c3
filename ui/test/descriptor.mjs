// The filter descriptor as GET /v1/filters returns it, for the unit tests.
export const DESCRIPTOR = {
  filters: [
    { param: "channel", kind: "multi", facet: "channel", targets: ["conversations", "messages", "aggregates"], section: { title: "Source" } },
    { param: "tag", kind: "multi", facet: "tag", section: { title: "Tags" } },
    { param: "flagged", kind: "bool", facet: "flagged", section: { title: "Flagged" } },
    { param: "label", kind: "multi", facet: "label", section: { title: "Labels", empty: "No labels in this range yet." } },
    { param: "flow", kind: "multi", facet: "flow", section: { title: "Flows", searchable: true } },
    { param: "step", kind: "multi", requires: "flow" },
    { param: "dropoff", kind: "bool", requires: "flow" },
    { param: "node", kind: "multi", facet: "node", section: { title: "Nodes", searchable: true, hint: "prompt nodes" } },
    { param: "role", kind: "multi", targets: ["messages"] },
  ],
};
