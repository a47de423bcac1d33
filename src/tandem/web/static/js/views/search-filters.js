// The search page's filters: source, path prefix, content type, updated since. They live
// in the URL with the query (#/search?q=…&source=…&path=…&type=…&since=…), so a filtered
// search can be shared and Back restores it. Every filter given narrows the results.

import { api } from "../api.js";
import { h } from "../dom.js";

const CONTENT_TYPES = [
  { value: "text/plain", label: "Text" },
  { value: "text/markdown", label: "Markdown" },
  { value: "text/html", label: "HTML" },
  { value: "application/pdf", label: "PDF" },
  { value: "application/vnd.openxmlformats-officedocument.wordprocessingml.document", label: "Word" },
  { value: "application/json", label: "JSON" },
];
// URL parameter -> filter control; the same names are read back by `fromParams`.
export const FILTER_PARAMS = ["source", "path", "type", "since"];

function option(value, label) {
  return h("option", { value }, label);
}

function labelled(id, text, control) {
  return h("div", { class: "filter" }, h("label", { for: id }, text), control);
}

/** "2024-05-01" (a date picked in this browser's time zone) -> an ISO instant, or "". */
function sinceInstant(day) {
  const moment = new Date(`${day}T00:00:00`);
  return Number.isNaN(moment.getTime()) ? "" : moment.toISOString();
}

export function createSearchFilters(onChange) {
  const source = h("select", { id: "filter-source", name: "source" }, option("", "All sources"));
  const path = h("input", {
    id: "filter-path",
    type: "text",
    name: "path",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "guides/ or https://…",
  });
  const type = h(
    "select",
    { id: "filter-type", name: "type" },
    option("", "All types"),
    CONTENT_TYPES.map((t) => option(t.value, t.label)),
  );
  const since = h("input", { id: "filter-since", type: "date", name: "since" });
  const clear = h("button", { type: "button", class: "secondary small", id: "filter-clear" }, "Clear filters");
  const root = h(
    "fieldset",
    { class: "filters", id: "search-filters" },
    h("legend", { class: "visually-hidden" }, "Filters"),
    labelled("filter-source", "Source", source),
    labelled("filter-path", "Path starts with", path),
    labelled("filter-type", "Type", type),
    labelled("filter-since", "Updated since", since),
    clear,
  );
  const controls = { source, path, type, since };
  for (const control of Object.values(controls)) control.addEventListener("change", () => onChange());
  clear.addEventListener("click", () => {
    for (const control of Object.values(controls)) control.value = "";
    onChange();
  });

  let sourcesLoaded = false;

  /** The select's options from GET /api/sources; kept as they are if that fails. */
  async function loadSources() {
    if (sourcesLoaded) return;
    let names;
    try {
      names = (await api("sources")).items.map((s) => s.name);
    } catch {
      return; // an API without sources: "All sources" (and a value from the URL) only
    }
    sourcesLoaded = true;
    const chosen = source.value;
    source.replaceChildren(option("", "All sources"), ...names.map((name) => option(name, name)));
    if (chosen && !names.includes(chosen)) source.append(option(chosen, chosen));
    source.value = chosen;
  }

  return {
    root,
    loadSources,
    /** The filters as URL parameters (only those set). */
    params() {
      const params = {};
      for (const [name, control] of Object.entries(controls)) {
        const value = control.value.trim();
        if (value) params[name] = value;
      }
      return params;
    },
    /** Set the controls from URL parameters. */
    fromParams(params) {
      const chosen = params.get("source") || "";
      if (chosen && ![...source.options].some((o) => o.value === chosen)) source.append(option(chosen, chosen));
      source.value = chosen;
      path.value = params.get("path") || "";
      type.value = CONTENT_TYPES.some((t) => t.value === params.get("type")) ? params.get("type") : "";
      since.value = /^\d{4}-\d{2}-\d{2}$/.test(params.get("since") || "") ? params.get("since") : "";
    },
    /** The request's `filters` object for URL parameters (null when none is set). */
    request(params) {
      const filters = {};
      if (params.get("source")) filters.sources = [params.get("source")];
      if (params.get("path")) filters.path_prefix = params.get("path");
      if (params.get("type")) filters.content_types = [params.get("type")];
      const instant = params.get("since") ? sinceInstant(params.get("since")) : "";
      if (instant) filters.updated_since = instant;
      if (params.get("doc")) filters.document_ids = [params.get("doc")];
      return Object.keys(filters).length ? filters : null;
    },
  };
}
