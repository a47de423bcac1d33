// Search: one box, a mode switch, ranked chunks with highlighted snippets. The query and
// mode live in the URL (#/search?q=…&mode=…), so Back and shared links work.

import { api } from "../api.js";
import { documentHref, formatNumber, h, markedSnippet, setNotice } from "../dom.js";

const MODES = [
  { value: "hybrid", label: "Hybrid", hint: "meaning and keywords" },
  { value: "semantic", label: "Semantic", hint: "meaning only" },
  { value: "keyword", label: "Keyword", hint: "exact words" },
];
const RESULT_LIMIT = 20;

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
  const form = h(
    "form",
    { class: "search-form", role: "search" },
    h("label", { for: "search-input", class: "visually-hidden" }, "Search documents"),
    h("div", { class: "search-row" }, input, h("button", { type: "submit", class: "primary" }, "Search")),
    modeSwitch,
    h("p", { id: "search-hint", class: "hint" }, "Press / to come back here; ↓ moves through results."),
  );
  const notice = h("div", { id: "search-notice", role: "status", hidden: true });
  const summary = h("p", { id: "search-summary", class: "summary", "aria-live": "polite" });
  const results = h("ol", { id: "search-results", class: "results" });
  const root = h("section", { class: "view view-search", "aria-labelledby": "search-title" },
    h("h1", { id: "search-title", class: "visually-hidden" }, "Search"),
    form, notice, summary, results);

  let lastRun = "";
  let inFlight = null;
  let visible = false;

  const selectedMode = () => modeInputs.find((radio) => radio.checked)?.value || "hybrid";

  function navigate(query, mode) {
    const hash = `#/search?${new URLSearchParams({ q: query, mode })}`;
    if (location.hash === hash) run(query, mode, true);
    else location.hash = hash;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = input.value.trim();
    if (query) navigate(query, selectedMode());
  });
  modeSwitch.addEventListener("change", () => {
    const query = input.value.trim();
    if (query) navigate(query, selectedMode());
  });
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

  function renderHit(hit) {
    return h(
      "li",
      { class: "result", dataset: { documentId: hit.document_id } },
      h("a", { class: "result-title", href: documentHref(hit.document_id, hit.chunk) }, hit.title || hit.document_id),
      h(
        "div",
        { class: "result-meta" },
        h("span", { class: "source" }, hit.source || hit.document_id),
        h("span", {}, `chunk ${hit.chunk + 1}`),
        h("span", { class: "score", title: "relevance score" }, `score ${formatNumber(hit.score, 3)}`),
      ),
      h("p", { class: "snippet" }, markedSnippet(hit.snippet)),
    );
  }

  async function run(query, mode, force = false) {
    const key = `${mode}\n${query}`;
    if (!force && key === lastRun) return;
    lastRun = key;
    inFlight?.abort();
    const controller = new AbortController();
    inFlight = controller;
    root.setAttribute("aria-busy", "true");
    summary.textContent = "Searching…";
    try {
      const response = await api("search", {
        method: "POST",
        json: { query, mode, limit: RESULT_LIMIT },
        signal: controller.signal,
      });
      setNotice(notice, response.notice, response.degraded ? "warning" : "info");
      notice.dataset.degraded = String(response.degraded);
      const count = response.results.length;
      summary.textContent = count
        ? `${count} result${count === 1 ? "" : "s"} · ${response.mode} · ${formatNumber(response.took_ms)} ms`
        : `No matches for “${response.query}”.`;
      results.replaceChildren(...response.results.map(renderHit));
    } catch (error) {
      if (error.name === "AbortError") return;
      lastRun = "";
      setNotice(notice, `Search failed: ${error.message}`, "error");
      summary.textContent = "";
      results.replaceChildren();
    } finally {
      if (inFlight === controller) root.removeAttribute("aria-busy");
    }
  }

  return {
    root,
    title: "Search",
    focusTarget: input,
    show({ params, reload }) {
      const query = (params.get("q") || "").trim();
      const mode = MODES.some((m) => m.value === params.get("mode")) ? params.get("mode") : selectedMode();
      for (const radio of modeInputs) radio.checked = radio.value === mode;
      if (query) {
        input.value = query;
        // Coming back from another page: documents may have changed, so ask again.
        run(query, mode, Boolean(reload) || !visible);
      }
      visible = true;
    },
    hide() {
      visible = false;
    },
  };
}
