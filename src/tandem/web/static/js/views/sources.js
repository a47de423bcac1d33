// Sources: where documents come from (GET /api/sources): each folder or web source with its
// settings, its last sync's counts, errors and times, and when it runs next; "Sync now"
// asks for a sync (POST /api/sources/{name}/sync). While a sync runs the page refreshes
// every 2 s, and stops when none does or the page is left.

import { ApiError, api } from "../api.js";
import { formatDate, formatNumber, h, setNotice } from "../dom.js";

const REFRESH_MS = 2000;
const COUNTS = ["added", "updated", "unchanged", "deleted", "failed"];
const SHOWN_ERRORS = 10;
const RUNNING = new Set(["running", "indexing"]);
const KIND_LABELS = { folder: "Folder", web: "Web site", upload: "Uploads" };
// A requested sync that has not shown up as running by then is no longer waited for.
const REQUEST_WAIT_MS = 30000;

function fact(term, value) {
  return h("div", {}, h("dt", {}, term), h("dd", {}, value));
}

function interval(seconds) {
  if (!seconds) return "on request only";
  if (seconds % 3600 === 0) return `every ${formatNumber(seconds / 3600)} h`;
  if (seconds % 60 === 0) return `every ${formatNumber(seconds / 60)} min`;
  return `every ${formatNumber(seconds)} s`;
}

function isBusy(source) {
  return Boolean(source.syncing) || RUNNING.has(source.last_sync?.status);
}

/** The state shown in a source's badge, and its look. */
function state(source) {
  if (source.kind === "upload") return { text: "Uploads", look: "unknown" };
  if (isBusy(source)) return { text: source.last_sync?.status === "indexing" ? "Indexing" : "Syncing", look: "busy" };
  const status = source.last_sync?.status;
  if (!status) return { text: "Never synced", look: "unknown" };
  const looks = { succeeded: "ready", failed: "down", interrupted: "down" };
  return { text: status[0].toUpperCase() + status.slice(1), look: looks[status] || "unknown" };
}

function settingsFacts(source) {
  const settings = source.settings || {};
  if (source.kind === "folder") {
    return [
      fact("Folder", h("code", { class: "setting-path" }, settings.path || "–")),
      fact("Include", settings.include?.length ? settings.include.join(", ") : "everything"),
      fact("Exclude", settings.exclude?.length ? settings.exclude.join(", ") : "nothing"),
    ];
  }
  if (source.kind === "web") {
    return [
      fact("Start URL", h("code", { class: "setting-url" }, settings.url || "–")),
      fact("At most", `${formatNumber(settings.max_pages)} pages, ${formatNumber(settings.max_depth)} links deep`),
    ];
  }
  return [fact("Documents", "files and batches sent to the API (Upload page, tandem ingest)")];
}

function syncFacts(sync) {
  if (!sync) return [h("p", { class: "hint" }, "No sync has run yet.")];
  const counts = h(
    "dl",
    { class: "sync-counts" },
    COUNTS.map((name) =>
      h("div", { class: `count-${name}` }, h("dt", {}, name), h("dd", {}, formatNumber(sync[name]))),
    ),
  );
  const errors = sync.errors || [];
  return [
    h(
      "dl",
      { class: "facts" },
      fact("Last sync", sync.status),
      fact("Started", formatDate(sync.started_at)),
      fact("Walked", formatDate(sync.walked_at)),
      fact("Finished", formatDate(sync.finished_at)),
    ),
    counts,
    errors.length
      ? h(
          "div",
          { class: "sync-errors" },
          h("h3", {}, `${formatNumber(errors.length)} error${errors.length === 1 ? "" : "s"}`),
          h("ul", {}, errors.slice(0, SHOWN_ERRORS).map((error) => h("li", {}, error))),
          errors.length > SHOWN_ERRORS ? h("p", { class: "hint" }, `… and ${errors.length - SHOWN_ERRORS} more`) : null,
        )
      : null,
  ];
}

export function createSourcesView() {
  const notice = h("div", { id: "sources-notice", role: "status", hidden: true });
  const updated = h("p", { id: "sources-updated", class: "hint" });
  const refreshButton = h("button", { type: "button", class: "secondary", id: "sources-refresh" }, "Refresh");
  const list = h("div", { id: "sources-list", class: "cards sources" });
  const root = h(
    "section",
    { class: "view view-sources", "aria-labelledby": "sources-title" },
    h("div", { class: "title-row" }, h("h1", { id: "sources-title" }, "Sources"), h("div", { class: "title-actions" }, updated, refreshButton)),
    notice,
    list,
  );
  let timer = null;
  let active = false;
  // Sources asked to sync whose sync has not shown up yet: name -> {syncId, at}.
  const requested = new Map();

  /** Whether a sync asked for is still awaited: not running yet, no newer sync, not long ago. */
  function awaited(source) {
    const asked = requested.get(source.name);
    if (!asked) return false;
    const newer = (source.last_sync?.id ?? null) !== asked.syncId;
    if (isBusy(source) || newer || Date.now() - asked.at > REQUEST_WAIT_MS) {
      requested.delete(source.name);
      return false;
    }
    return true;
  }

  function card(source) {
    const { text, look } = state(source);
    const busy = isBusy(source);
    const waiting = awaited(source);
    const sync =
      source.kind === "upload"
        ? null
        : h(
            "button",
            {
              type: "button",
              class: "primary small sync-now",
              disabled: busy || waiting,
              "aria-label": `Sync ${source.name} now`,
            },
            busy ? "Syncing…" : waiting ? "Requested…" : "Sync now",
          );
    sync?.addEventListener("click", () => syncNow(source));
    return h(
      "article",
      {
        class: `card source ${look}`,
        id: `source-${source.name}`,
        dataset: { source: source.name, kind: source.kind, status: source.last_sync?.status || "none", syncing: String(busy) },
      },
      h("header", {}, h("h2", {}, source.name), h("span", { class: `badge ${look}` }, text)),
      h(
        "dl",
        { class: "facts" },
        fact("Kind", KIND_LABELS[source.kind] || source.kind),
        settingsFacts(source),
        source.kind === "upload" ? null : fact("Schedule", interval(source.interval_seconds)),
        source.kind === "upload" ? null : fact("Next run", source.next_sync_at ? formatDate(source.next_sync_at) : "–"),
      ),
      source.kind === "upload" ? null : syncFacts(source.last_sync),
      sync ? h("div", { class: "card-actions" }, sync) : null,
    );
  }

  async function syncNow(source) {
    const { name } = source;
    requested.set(name, { syncId: source.last_sync?.id ?? null, at: Date.now() });
    try {
      await api(`sources/${encodeURIComponent(name)}/sync`, { method: "POST" });
      setNotice(notice, `Sync of “${name}” requested.`, "success");
    } catch (error) {
      requested.delete(name);
      setNotice(notice, `Cannot sync “${name}”: ${error.message}`, "error");
    }
    load({ keepNotice: true });
  }

  async function load({ keepNotice = false } = {}) {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    if (!keepNotice) setNotice(notice, "");
    root.setAttribute("aria-busy", "true");
    let polling = false;
    try {
      const { items } = await api("sources");
      list.replaceChildren(...items.map(card));
      if (!items.length) list.replaceChildren(h("p", { class: "hint" }, "No sources."));
      polling = items.some((s) => isBusy(s) || requested.has(s.name));
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}${polling ? ` · every ${REFRESH_MS / 1000} s while syncing` : ""}`;
    } catch (error) {
      const missing = error instanceof ApiError && error.status === 404;
      setNotice(
        notice,
        missing ? "This API server does not list sources (no GET /api/sources)." : `Cannot list sources: ${error.message}`,
        "error",
      );
    } finally {
      root.removeAttribute("aria-busy");
    }
    // One request at a time: the next starts only after this one has finished.
    if (active && polling && timer === null) timer = setTimeout(() => load({ keepNotice: true }), REFRESH_MS);
  }

  refreshButton.addEventListener("click", () => load());

  return {
    root,
    title: "Sources",
    show() {
      active = true;
      load();
    },
    hide() {
      active = false;
      if (timer !== null) clearTimeout(timer);
      timer = null;
    },
  };
}
