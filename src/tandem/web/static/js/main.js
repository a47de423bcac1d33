// The page shell: a hash router over views that are built once and then shown or hidden,
// so a search's results and running uploads survive moving between pages.

import { api } from "./api.js";
import { initKeyDialog, onKeyChange } from "./auth.js";
import { createDocumentView } from "./views/document.js";
import { createDocumentsView } from "./views/documents.js";
import { createSearchView } from "./views/search.js";
import { createSourcesView } from "./views/sources.js";
import { createStatusView } from "./views/status.js";
import { createUploadView } from "./views/upload.js";

const factories = {
  search: createSearchView,
  upload: createUploadView,
  documents: createDocumentsView,
  document: createDocumentView,
  sources: createSourcesView,
  status: createStatusView,
};
const views = new Map();
let current = null;

/** "#/documents/a%2Fb?chunk=2" -> {name: "document", id: "a/b", params: {chunk: "2"}} */
function parseRoute(hash) {
  const route = hash.replace(/^#\/?/, "");
  const queryAt = route.indexOf("?");
  const path = queryAt < 0 ? route : route.slice(0, queryAt);
  const params = new URLSearchParams(queryAt < 0 ? "" : route.slice(queryAt + 1));
  const [first, ...rest] = path.split("/");
  if (first === "documents" && rest.length > 0 && rest.join("/") !== "") {
    return { name: "document", id: decodeURIComponent(rest.join("/")), params };
  }
  return { name: first in factories && first !== "document" ? first : "search", params };
}

function viewFor(name) {
  if (!views.has(name)) {
    const view = factories[name]();
    view.root.hidden = true;
    document.getElementById("view").append(view.root);
    views.set(name, view);
  }
  return views.get(name);
}

function markNavigation(name) {
  const section = name === "document" ? "documents" : name;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function route() {
  const { name, id, params } = parseRoute(location.hash);
  const view = viewFor(name);
  if (current && current !== view) {
    current.hide?.();
    current.root.hidden = true;
  }
  const moved = current !== view;
  current = view;
  view.root.hidden = false;
  markNavigation(name);
  document.title = `${view.title} · Tandem`;
  view.show({ id, params });
  // Keyboard and screen-reader users land on the new page, not on the nav link they used.
  if (moved) (view.focusTarget || document.getElementById("view")).focus();
}

function isTyping(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

function bindShortcuts() {
  document.addEventListener("keydown", (event) => {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (isTyping(event.target) || document.querySelector("dialog[open]")) return;
    event.preventDefault();
    if (parseRoute(location.hash).name !== "search") location.hash = "#/search";
    else viewFor("search").focusTarget.focus();
  });
}

/** Who the key signs in as, beside the key button: "alice · search", or open access. */
async function showCaller() {
  const label = document.getElementById("whoami");
  try {
    const me = await api("me");
    const who = me.open_access ? "open access" : me.user || `service key ${me.key_name}`;
    label.textContent = `${who} · ${me.scope}`;
    label.dataset.user = me.user || "";
    label.dataset.scope = me.scope;
    label.title = me.reads_everything
      ? "Reads every document"
      : "Reads public documents and those shared with this user or their groups";
  } catch {
    label.textContent = "";
    label.dataset.user = "";
    label.dataset.scope = "";
  }
}

// A key set from the header: reload what the current page shows, now the API may answer.
initKeyDialog(() => current?.show({ ...parseRoute(location.hash), reload: true }));
onKeyChange(() => showCaller());
showCaller();
bindShortcuts();
window.addEventListener("hashchange", route);
route();
