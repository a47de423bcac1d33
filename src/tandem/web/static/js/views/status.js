// Status: both model servers, the worker queue and the catalog, refreshed every few
// seconds while this page is open.

import { api } from "../api.js";
import { formatNumber, h, secondsAgo, setNotice } from "../dom.js";

const REFRESH_MS = 3000;
const SERVERS = [
  { key: "inference", title: "Inference model server", role: "queries and reranking, as the API sees it" },
  { key: "indexing", title: "Indexing model server", role: "bulk embedding, as the workers report it" },
];

function badge(state) {
  const text = { ready: "Ready", down: "Not ready", unknown: "No report" }[state];
  return h("span", { class: `badge ${state}` }, text);
}

function fact(term, value) {
  return h("div", {}, h("dt", {}, term), h("dd", {}, value));
}

function serverCard({ key, title, role }, status) {
  const state = status ? (status.ready ? "ready" : "down") : "unknown";
  const facts = status
    ? [
        fact("URL", status.url),
        fact("Queue", status.queue_items === null ? "–" : `${formatNumber(status.queue_items)} items`),
        fact("Requests/s", formatNumber(status.requests_per_second, 2)),
        fact("Requests served", formatNumber(status.requests_total)),
        fact("Checked", secondsAgo(status.checked_at)),
      ]
    : [fact("Report", "none yet: nothing has checked this server recently")];
  return h(
    "article",
    { class: `card server ${state}`, id: `server-${key}`, dataset: { ready: String(state === "ready") } },
    h("header", {}, h("h2", {}, title), badge(state)),
    h("p", { class: "hint" }, role),
    h("dl", { class: "facts" }, facts),
  );
}

function countCard(id, title, value, note) {
  return h(
    "article",
    { class: "card count", id },
    h("h2", {}, title),
    h("p", { class: "big-number" }, value),
    note ? h("p", { class: "hint" }, note) : null,
  );
}

export function createStatusView() {
  const notice = h("div", { id: "status-notice", role: "status", hidden: true });
  const servers = h("div", { class: "cards servers" });
  const counts = h("div", { class: "cards counts" });
  const updated = h("p", { id: "status-updated", class: "hint" });
  const root = h(
    "section",
    { class: "view view-status", "aria-labelledby": "status-title" },
    h("div", { class: "title-row" }, h("h1", { id: "status-title" }, "Status"), updated),
    notice,
    servers,
    counts,
  );
  let timer = null;
  let active = false;

  async function refresh() {
    timer = null;
    try {
      const stats = await api("stats");
      setNotice(notice, "");
      servers.replaceChildren(...SERVERS.map((server) => serverCard(server, stats.model_servers[server.key])));
      const queue = stats.queue_length < 0 ? "unknown" : formatNumber(stats.queue_length);
      counts.replaceChildren(
        countCard("count-queue", "Worker queue", queue, stats.queue_length < 0 ? "the queue (Redis) cannot be reached" : "files waiting for a worker"),
        countCard("count-documents", "Documents", formatNumber(stats.documents)),
        countCard("count-chunks", "Chunks", formatNumber(stats.chunks)),
      );
      updated.textContent = `Updated ${new Date().toLocaleTimeString()} · every ${REFRESH_MS / 1000} s`;
    } catch (error) {
      setNotice(notice, `Cannot read the status: ${error.message}`, "error");
    }
    // One request at a time: the next starts only after this one has finished.
    if (active && timer === null) timer = setTimeout(refresh, REFRESH_MS);
  }

  return {
    root,
    title: "Status",
    show() {
      active = true;
      if (timer !== null) clearTimeout(timer);
      refresh();
    },
    hide() {
      active = false;
      if (timer !== null) clearTimeout(timer);
      timer = null;
    },
  };
}
