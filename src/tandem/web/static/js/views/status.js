// Status: both model servers, the worker queue and the catalog, refreshed every few
// seconds while this page is open, with charts of the last few minutes (sampled by the
// API server: GET /api/stats/history).

import { api } from "../api.js";
import { latestValue, lineChart } from "../charts.js";
import { formatNumber, h, secondsAgo, setNotice } from "../dom.js";

const REFRESH_MS = 3000;
const SERVERS = [
  {
    key: "inference",
    title: "Inference model server",
    role: "queries and reranking, as the API sees it",
    charts: [
      {
        id: "chart-query-latency",
        title: "Query latency",
        unit: "ms",
        series: [
          { key: "query_p99_ms", label: "p99", className: "series-p99" },
          { key: "query_p50_ms", label: "p50", className: "series-p50" },
        ],
      },
    ],
  },
  {
    key: "indexing",
    title: "Indexing model server",
    role: "bulk embedding, as the workers report it",
    charts: [
      {
        id: "chart-indexing-throughput",
        title: "Passages embedded",
        unit: "/s",
        series: [{ key: "indexing_passages_per_second", label: "passages/s", className: "series-rate" }],
      },
      {
        id: "chart-indexing-queue",
        title: "Queue depth",
        unit: "items",
        digits: 0,
        series: [{ key: "indexing_queue_items", label: "waiting", className: "series-queue" }],
      },
    ],
  },
];
const WORKER_QUEUE_CHART = {
  id: "chart-worker-queue",
  title: "Files waiting and being indexed",
  unit: "files",
  digits: 0,
  series: [
    { key: "worker_items_waiting", label: "waiting", className: "series-queue" },
    { key: "worker_items_running", label: "indexing", className: "series-running" },
  ],
};

function badge(state) {
  const text = { ready: "Ready", down: "Not ready", unknown: "No report" }[state];
  return h("span", { class: `badge ${state}` }, text);
}

function fact(term, value) {
  return h("div", {}, h("dt", {}, term), h("dd", {}, value));
}

function chartsOf(specs, history) {
  if (!history) return h("p", { class: "hint" }, "No history: this API server does not serve /api/stats/history.");
  const common = { samples: history.samples, windowSeconds: history.window_seconds };
  return h("div", { class: "charts" }, specs.map((spec) => lineChart({ ...spec, ...common })));
}

function serverCard({ key, title, role, charts }, status, history) {
  const state = status ? (status.ready ? "ready" : "down") : "unknown";
  const facts = status
    ? [
        fact("URL", status.url),
        fact("Queue", status.queue_items === null ? "–" : `${formatNumber(status.queue_items)} items`),
        fact("Requests/s", formatNumber(status.requests_per_second, 2)),
        fact("Items/s", formatNumber(status.items_per_second, 1)),
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
    chartsOf(charts, history),
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
  const queueChart = h("div", { class: "cards queue-chart" });
  const counts = h("div", { class: "cards counts" });
  const updated = h("p", { id: "status-updated", class: "hint" });
  const root = h(
    "section",
    { class: "view view-status", "aria-labelledby": "status-title" },
    h("div", { class: "title-row" }, h("h1", { id: "status-title" }, "Status"), updated),
    notice,
    servers,
    queueChart,
    counts,
  );
  let timer = null;
  let active = false;

  async function refresh() {
    timer = null;
    try {
      const stats = await api("stats");
      // The charts are extra: an API without the history still gets its numbers shown.
      const history = await api("stats/history").catch(() => null);
      setNotice(notice, "");
      servers.replaceChildren(
        ...SERVERS.map((server) => serverCard(server, stats.model_servers[server.key], history)),
      );
      queueChart.replaceChildren(
        h(
          "article",
          { class: "card", id: "worker-queue" },
          h("header", {}, h("h2", {}, "Worker queue")),
          h("p", { class: "hint" }, "uploaded files (or documents) waiting for a worker, and those being indexed"),
          chartsOf([WORKER_QUEUE_CHART], history),
        ),
      );
      // Files waiting live in PostgreSQL (the work queue); the history's latest sample
      // counts them. Without it, the Redis queue length is the best there is.
      const waiting = latestValue(history ? history.samples : [], "worker_items_waiting");
      const queue =
        waiting !== null
          ? formatNumber(waiting)
          : stats.queue_length < 0
            ? "unknown"
            : formatNumber(stats.queue_length);
      counts.replaceChildren(
        countCard(
          "count-queue",
          "Worker queue",
          queue,
          waiting === null && stats.queue_length < 0 ? "the queue (Redis) cannot be reached" : "files waiting for a worker",
        ),
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
