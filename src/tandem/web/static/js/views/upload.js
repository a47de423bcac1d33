// Upload: drop or pick many files; each is its own request with its own progress bar, then
// its index attempt is polled until the file is indexed or has failed. Uploads keep going
// while other pages are open.

import { ApiError, api, uploadFile } from "../api.js";
import { formatBytes, h } from "../dom.js";

const PARALLEL_UPLOADS = 3;
const POLL_MS = 1000;
const ACCEPT = ".txt,.md,.markdown,.html,.htm,.pdf,.docx,.json";
const LABELS = {
  waiting: "waiting",
  uploading: "uploading",
  queued: "queued for indexing",
  indexing: "indexing",
  indexed: "indexed",
  failed: "failed",
};

export function createUploadView() {
  const fileInput = h("input", {
    id: "file-input",
    type: "file",
    multiple: true,
    accept: ACCEPT,
    class: "visually-hidden",
  });
  const dropzone = h(
    "div",
    { id: "dropzone", class: "dropzone" },
    h("p", { class: "dropzone-title" }, "Drop files here"),
    h("p", {}, "or ", fileInput, h("label", { for: "file-input", class: "button primary" }, "Choose files…")),
    h("p", { class: "hint" }, "Text, Markdown, HTML, PDF, Word (.docx) and JSON. Each file is uploaded and indexed on its own."),
  );
  const summary = h("p", { id: "upload-summary", class: "summary", "aria-live": "polite" });
  const clearButton = h("button", { type: "button", class: "secondary", hidden: true }, "Clear finished");
  const list = h("ul", { id: "upload-list", class: "uploads", "aria-label": "Uploads" });
  const root = h(
    "section",
    { class: "view view-upload", "aria-labelledby": "upload-title" },
    h("h1", { id: "upload-title" }, "Upload"),
    dropzone,
    h("div", { class: "list-header" }, summary, clearButton),
    list,
  );

  const entries = [];
  let uploading = 0;
  let pollTimer = null;

  function setState(entry, status, { progress, detail, error } = {}) {
    entry.status = status;
    entry.row.dataset.status = status;
    entry.statusText.textContent = detail ? `${LABELS[status]} · ${detail}` : LABELS[status];
    if (progress === null) entry.bar.removeAttribute("value"); // indeterminate: indexing
    else if (progress !== undefined) entry.bar.value = progress;
    entry.error.hidden = !error;
    entry.error.textContent = error || "";
    refreshSummary();
  }

  function refreshSummary() {
    const count = (status) => entries.filter((e) => e.status === status).length;
    const done = count("indexed");
    const failed = count("failed");
    const busy = entries.length - done - failed;
    summary.textContent = entries.length
      ? `${done} indexed, ${failed} failed, ${busy} in progress`
      : "No uploads yet.";
    clearButton.hidden = done + failed === 0;
  }

  function addFiles(files) {
    for (const file of files) {
      const bar = h("progress", { max: "1", value: "0", "aria-label": `Progress of ${file.name}` });
      const statusText = h("span", { class: "upload-status" });
      const error = h("p", { class: "upload-error", role: "alert", hidden: true });
      const row = h(
        "li",
        { class: "upload", dataset: { filename: file.name } },
        h("div", { class: "upload-head" }, h("span", { class: "upload-name" }, file.name), h("span", { class: "upload-size" }, formatBytes(file.size))),
        bar,
        statusText,
        error,
      );
      const entry = { file, row, bar, statusText, error, status: "waiting", attemptId: null };
      entries.push(entry);
      list.append(row);
      setState(entry, "waiting", { progress: 0 });
    }
    pump();
  }

  function pump() {
    while (uploading < PARALLEL_UPLOADS) {
      const next = entries.find((e) => e.status === "waiting");
      if (!next) return;
      uploading += 1;
      upload(next).finally(() => {
        uploading -= 1;
        pump();
      });
    }
  }

  async function upload(entry) {
    setState(entry, "uploading", { progress: 0, detail: "0%" });
    try {
      const accepted = await uploadFile(entry.file, (fraction) => {
        setState(entry, "uploading", { progress: fraction, detail: `${Math.round(fraction * 100)}%` });
      });
      entry.attemptId = accepted.attempt_id;
      setState(entry, "queued", { progress: null });
      schedulePoll();
    } catch (error) {
      const status = error instanceof ApiError && error.status ? ` (HTTP ${error.status})` : "";
      setState(entry, "failed", { progress: 1, error: `Upload failed${status}: ${error.message}` });
    }
  }

  function schedulePoll() {
    if (pollTimer === null) pollTimer = setTimeout(poll, POLL_MS);
  }

  async function poll() {
    const pending = entries.filter((e) => e.status === "queued" || e.status === "indexing");
    await Promise.all(pending.map(checkAttempt));
    pollTimer = null;
    if (entries.some((e) => e.status === "queued" || e.status === "indexing")) schedulePoll();
  }

  async function checkAttempt(entry) {
    let attempt;
    try {
      attempt = await api(`index-attempts/${encodeURIComponent(entry.attemptId)}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        setState(entry, "failed", { progress: 1, error: "the index attempt no longer exists" });
      } else {
        entry.error.hidden = false;
        entry.error.textContent = `Cannot check progress (${error.message}); retrying…`;
      }
      return;
    }
    const item = attempt.items[0];
    if (!item) return;
    if (item.status === "succeeded") {
      const chunks = `${item.chunk_count} chunk${item.chunk_count === 1 ? "" : "s"}`;
      setState(entry, "indexed", { progress: 1, detail: chunks });
    } else if (item.status === "failed") {
      setState(entry, "failed", { progress: 1, error: item.error || attempt.error || "indexing failed" });
    } else {
      // A transient note while running, e.g. waiting for the indexing server.
      const status = item.status === "running" ? "indexing" : "queued";
      setState(entry, status, { progress: null, error: item.error ? `Note: ${item.error}` : "" });
    }
  }

  fileInput.addEventListener("change", () => {
    addFiles([...fileInput.files]);
    fileInput.value = ""; // the same file may be picked again later
  });
  for (const type of ["dragenter", "dragover"]) {
    dropzone.addEventListener(type, (event) => {
      event.preventDefault();
      dropzone.classList.add("dragging");
    });
  }
  dropzone.addEventListener("dragleave", (event) => {
    if (!dropzone.contains(event.relatedTarget)) dropzone.classList.remove("dragging");
  });
  dropzone.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("dragging");
    addFiles([...event.dataTransfer.files]);
  });
  // A file dropped beside the zone must not make the browser navigate away to open it.
  const swallowDrop = (event) => {
    if (!root.hidden && event.dataTransfer?.types?.includes("Files")) event.preventDefault();
  };
  window.addEventListener("dragover", swallowDrop);
  window.addEventListener("drop", swallowDrop);
  clearButton.addEventListener("click", () => {
    for (const entry of entries.filter((e) => e.status === "indexed" || e.status === "failed")) {
      entry.row.remove();
      entries.splice(entries.indexOf(entry), 1);
    }
    refreshSummary();
  });
  refreshSummary();

  return { root, title: "Upload", focusTarget: fileInput, show() {} };
}
