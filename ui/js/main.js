// convlog web UI: native ES modules, no framework, no build step, no network beyond
// this server. This entry module loads the filter descriptor, wires the modules and
// renders the page of the current URL.
//
// Modules: router (URLs, navigation), api (requests, the key), session (role,
// sign-in), shell (header, view dispatch, keys), home, list + panel (conversation
// logs and their filter sidebar), filters (the filter model from GET /v1/filters),
// conversation + debugger (the drawer), sharepage, dashboards + charts, range,
// format and shared (helpers).

import { api, restoreKey } from "./api.js";
import { filterModel } from "./filters.js";
import { configureList } from "./list.js";
import { onNavigate } from "./router.js";
import { installSession } from "./session.js";
import { installShell, render, showMessage, startOver } from "./shell.js";

restoreKey();
installSession(startOver);
installShell();
let filters = null;
try {
  // Public: no key needed. The list's filters, their parameters and sidebar sections come from it.
  filters = filterModel(await api("GET", "/v1/filters", { probe: true }));
} catch (e) {
  showMessage(`The filter list could not be loaded from the server: ${e.message}`);
}
if (filters) {
  configureList(filters);
  onNavigate(render);
  render();
}
