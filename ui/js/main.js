// convlog web UI: native ES modules, no framework, no build step, no network beyond
// this server. This entry module reads the filter descriptor, wires the modules and
// renders the page of the current URL.
//
// Modules: router (URLs, navigation), api (requests, the key), session (role,
// sign-in), shell (header, view dispatch, keys), home, list + panel (conversation
// logs and their filter sidebar), filters (the filter model from the descriptor),
// conversation + debugger (the drawer), sharepage, dashboards + charts, range,
// format and shared (helpers).

import { restoreKey } from "./api.js";
import { filterModel } from "./filters.js";
import { configureList } from "./list.js";
import { onNavigate } from "./router.js";
import { installSession } from "./session.js";
import { installShell, render, startOver } from "./shell.js";

// The server's filter table, here until GET /v1/filters serves it. `dropoff` has no
// `requires`: the server accepts it alone ("dropped off in any flow").
const FILTERS = {
  filters: [
    { param: "channel", kind: "multi", facet: "channel", targets: ["conversations", "messages", "aggregates"], section: { title: "Source" } },
    { param: "tag", kind: "multi", facet: "tag", section: { title: "Tags" } },
    { param: "flagged", kind: "bool", facet: "flagged", section: { title: "Flagged" } },
    { param: "label", kind: "multi", facet: "label", section: { title: "Labels", empty: "No labels in this range yet." } },
    { param: "flow", kind: "multi", facet: "flow", section: { title: "Flows", searchable: true } },
    { param: "step", kind: "multi", requires: "flow" },
    { param: "dropoff", kind: "bool" },
    { param: "node", kind: "multi", facet: "node", section: { title: "Nodes", searchable: true, hint: "prompt nodes" } },
    { param: "role", kind: "multi", targets: ["messages"] },
  ],
};

restoreKey();
installSession(startOver);
installShell();
configureList(filterModel(FILTERS));
onNavigate(render);
render();
