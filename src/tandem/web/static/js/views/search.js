// Search: one box, a mode switch, filters, and the ranked documents (each at its best
// chunk, with its path and source) a page at a time, with highlighted snippets. "More from
// this document" lists that document's matching chunks. The query, mode, filters, page
// and document live in the URL (#/search?q=…&mode=…&offset=…), so Back and shared links
// work.

import { api } from "../api.js";
import { documentHref, formatNumber, h, markedSnippet, setNotice } from "../dom.js";
import { FILTER_PARAMS, createSearchFilters } from "./search-filters.js";

const MODES = [
  { value: "hybrid", label: "Hybrid", hint: "meaning and keywords" },
  { value: "semantic", label: "Semantic", hint: "meaning only" },
  { value: "keyword", label: "Keyword", hint: "exact words" },
];
const RESULT_LIMIT = 10;
const MAX_OFFSET = 1000; // the API's

/** A path worth a link: a web page's URL. Anything else is shown as text. */
function isWebAddress(path) {
  return /^https?:\/\//i.test(path);
}

export function createSearchView() {
  const input = h("input", {
    id: "search-input",
    type: "search",
    name: "q",
    autocomplete: "off",
    placeholder: "Search your documents…",
    "aria-describedby": "search-hint",
  });
  const modeInputs = MODES.map((mode) =>
    h("input", { type: "radio", name: "mode", value: mode.value, id: `mode-${mode.value}` }),
  );
  const modeSwitch = h(
    "fieldset",
    { class: "segmented", id: "search-mode" },
    h("legend", { class: "visually-hidden" }, "Search mode"),
    MODES.map((mode, i) => [
      modeInputs[i],
      h("label", { for: `mode-${mode.value}`, title: mode.hint }, mode.label),
    ]),
  );
  const filters = createSearchFilters(() => search());
  const form = h(
    "form",
    { class: "search-form", role: "search" },
    h("label", { for: "search-input", class: "visually-hidden" }, "Search documents"),
    h("div", { class: "search-row" }, input, h("button", { type: "submit", class: "primary" }, "Search")),
    modeSwitch,
    filters.root,
    h("p", { id: "search-hint", class: "hint" }, "Press / to come back here; ↓ moves through results."),
  );
  const notice = h("div", { id: "search-notice", role: "status", hidden: true });
  const scope = h("p", { id: "search-scope", class: "scope", hidden: true });
  const summary = h("p", { id: "search-summary", class: "summary", "aria-live": "polite" });
  const results = h("ol", { id: "search-results", class: "results" });
  const previous = h("button", { type: "button", class: "secondary", id: "search-previous" }, "← Previous");
  const next = h("button", { type: "button", class: "secondary", id: "search-next" }, "Next →");
  const pager = h("nav", { class: "pager", "aria-label": "Result pages", hidden: true }, previous, next);
  const root = h("section", { class: "view view-search", "aria-labelledby": "search-title" },
    h("h1", { id: "search-title", class: "visually-hidden" }, "Search"),
    form, notice, scope, summary, results, pager);

  let lastRun = "";
  let inFlight = null;
  let visible = false;
  let shown = new URLSearchParams(); // the parameters of the results on the page

  const selectedMode = () => modeInputs.find((radio) => radio.checked)?.value || "hybrid";

  /** Go to #/search with these parameters (run again if they are the current ones). */
  function navigate(params) {
    const hash = `#/search?${params}`;
    if (location.hash === hash) run(params, true);
    else location.hash = hash;
  }

  /** A new search from the controls: first page, every document. */
  function search() {
    const query = input.value.trim();
    if (query) navigate(new URLSearchParams({ q: query, mode: selectedMode(), ...filters.params() }));
  }

  /** The shown search with some parameters changed (null: removed). */
  function withParams(changes) {
    const params = new URLSearchParams(shown);
    for (const [name, value] of Object.entries(changes)) {
      if (value === null) params.delete(name);
      else params.set(name, String(value));
    }
    return params;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  modeSwitch.addEventListener("change", () => search());
  previous.addEventListener("click", () => {
    const offset = Math.max(0, Number(shown.get("offset") || 0) - RESULT_LIMIT);
    navigate(withParams({ offset: offset || null }));
  });
  next.addEventListener("click", () => navigate(withParams({ offset: next.dataset.offset })));
  // Arrow keys walk from the box through the result links and back.
  root.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowDown" && event.key !== "ArrowUp") return;
    const links = [...results.querySelectorAll("a.result-title")];
    const at = links.indexOf(document.activeElement);
    if (document.activeElement !== input && at < 0) return;
    event.preventDefault();
    const next = event.key === "ArrowDown" ? at + 1 : at - 1;
    if (next < 0) input.focus();
    else links[Math.min(next, links.length - 1)]?.focus();
  });

  function renderHit(hit, inDocument) {
    const path = isWebAddress(hit.path)
      ? h("a", { class: "path", href: hit.path, rel: "noopener noreferrer", target: "_blank" }, hit.path)
      : h("span", { class: "path" }, hit.path || hit.document_id);
    const more = inDocument
      ? null
      : h(
          "a",
          { class: "more", href: `#/search?${withParams({ doc: hit.document_id, offset: null })}` },
          "More from this document",
        );
    return h(
      "li",
      { class: "result", dataset: { documentId: hit.document_id, source: hit.source, path: hit.path } },
      h("a", { class: "result-title", href: documentHref(hit.document_id, hit.chunk) }, hit.title || hit.document_id),
      h(
        "div",
        { class: "result-meta" },
        h("span", { class: "source", title: "source" }, hit.source),
        path,
        h("span", { class: "chunk-number" }, `chunk ${hit.chunk + 1}`),
        h("span", { class: "score", title: "relevance score" }, `score ${formatNumber(hit.score, 3)}`),
      ),
      h("p", { class: "snippet" }, markedSnippet(hit.snippet)),
      more,
    );
  }

  function describe(response, inDocument) {
    const count = response.results.length;
    if (!count) {
      return response.offset > 0 ? "No more results." : `No matches for “${response.query}”.`;
    }
    const what = inDocument ? "passage" : "result";
    const range =
      response.offset === 0 && response.next_offset === null
        ? `${count} ${what}${count === 1 ? "" : "s"}`
        : `${what[0].toUpperCase()}${what.slice(1)}s ${response.offset + 1}–${response.offset + count}`;
    return `${range} · ${response.mode} · ${formatNumber(response.took_ms)} ms`;
  }

  async function run(params, force = false) {
    const key = params.toString();
    if (!force && key === lastRun) return;
    lastRun = key;
    shown = params;
    inFlight?.abort();
    const controller = new AbortController();
    inFlight = controller;
    const documentId = params.get("doc");
    const offset = Math.min(MAX_OFFSET, Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0));
    const body = { query: params.get("q"), mode: params.get("mode"), limit: RESULT_LIMIT, offset };
    const chosen = filters.request(params);
    if (chosen) body.filters = chosen;
    // Within one document: its chunks, not the document once.
    if (documentId) body.group_by_document = false;
    scope.hidden = !documentId;
    const everyDocument = `#/search?${withParams({ doc: null, offset: null })}`;
    scope.replaceChildren(
      ...(documentId
        ? ["Passages of ", h("strong", {}, documentId), " · ", h("a", { href: everyDocument }, "back to all results")]
        : []),
    );
    root.setAttribute("aria-busy", "true");
    summary.textContent = "Searching…";
    try {
      const response = await api("search", { method: "POST", json: body, signal: controller.signal });
      setNotice(notice, response.notice, response.degraded ? "warning" : "info");
      notice.dataset.degraded = String(response.degraded);
      summary.textContent = describe(response, Boolean(documentId));
      results.replaceChildren(...response.results.map((hit) => renderHit(hit, Boolean(documentId))));
      previous.disabled = response.offset === 0;
      next.disabled = response.next_offset === null || response.next_offset > MAX_OFFSET;
      next.dataset.offset = String(response.next_offset ?? "");
      pager.hidden = previous.disabled && next.disabled;
    } catch (error) {
      if (error.name === "AbortError") return;
      lastRun = "";
      setNotice(notice, `Search failed: ${error.message}`, "error");
      summary.textContent = "";
      results.replaceChildren();
      pager.hidden = true;
    } finally {
      if (inFlight === controller) root.removeAttribute("aria-busy");
    }
  }

  return {
    root,
    title: "Search",
    focusTarget: input,
    show({ params, reload }) {
      filters.loadSources();
      const query = (params.get("q") || "").trim();
      const mode = MODES.some((m) => m.value === params.get("mode")) ? params.get("mode") : selectedMode();
      for (const radio of modeInputs) radio.checked = radio.value === mode;
      filters.fromParams(params);
      if (query) {
        input.value = query;
        const wanted = new URLSearchParams({ q: query, mode });
        for (const name of [...FILTER_PARAMS, "doc", "offset"]) {
          if (params.get(name)) wanted.set(name, params.get(name));
        }
        // Coming back from another page: documents may have changed, so ask again.
        run(wanted, Boolean(reload) || !visible);
      }
      visible = true;
    },
    hide() {
      visible = false;
    },
  };
}
