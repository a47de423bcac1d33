// One document (#/documents/<id>?chunk=N): its details and every chunk as indexed.

import { api } from "../api.js";
import { formatBytes, formatDate, formatNumber, h, setNotice } from "../dom.js";
import { confirmDelete } from "./deleting.js";

export function createDocumentView() {
  const heading = h("h1", { id: "document-title" }, "Document");
  const notice = h("div", { id: "document-notice", role: "status", hidden: true });
  const details = h("dl", { id: "document-details", class: "details" });
  const chunksHeading = h("h2", { id: "chunks-title" }, "Chunks");
  const chunks = h("ol", { id: "document-chunks", class: "chunks", "aria-labelledby": "chunks-title" });
  const remove = h("button", { type: "button", class: "danger", id: "document-delete", hidden: true }, "Delete document");
  const root = h(
    "section",
    { class: "view view-document", "aria-labelledby": "document-title" },
    h("p", { class: "breadcrumb" }, h("a", { href: "#/documents" }, "← All documents")),
    h("div", { class: "title-row" }, heading, remove),
    notice,
    details,
    chunksHeading,
    chunks,
  );

  let shown = null;
  remove.addEventListener("click", async () => {
    if (shown && (await confirmDelete(shown, notice))) location.hash = "#/documents";
  });

  function detailRows(documentOut) {
    const rows = [
      ["ID", documentOut.id],
      ["Source", documentOut.source],
      ["Path", documentOut.path],
      ["Type", documentOut.content_type],
      ["Size", formatBytes(documentOut.size_bytes)],
      ["Chunks", formatNumber(documentOut.chunk_count)],
      ["Added", formatDate(documentOut.created_at)],
      ["Updated", formatDate(documentOut.updated_at)],
      ...Object.entries(documentOut.metadata || {}).map(([key, value]) => [key, String(value)]),
    ];
    return rows.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value)));
  }

  async function load(documentId, target) {
    shown = null;
    remove.hidden = true;
    heading.textContent = documentId;
    setNotice(notice, "");
    details.replaceChildren();
    chunks.replaceChildren();
    root.setAttribute("aria-busy", "true");
    try {
      const documentOut = await api(`documents/${encodeURIComponent(documentId)}`);
      shown = documentOut;
      heading.textContent = documentOut.title || documentOut.id;
      document.title = `${heading.textContent} · Tandem`;
      details.replaceChildren(...detailRows(documentOut));
      chunksHeading.textContent = `Chunks (${documentOut.chunks.length})`;
      chunks.replaceChildren(
        ...documentOut.chunks.map((chunk) =>
          h(
            "li",
            { id: `chunk-${chunk.ordinal}`, class: chunk.ordinal === target ? "chunk target" : "chunk", tabindex: "-1" },
            h("span", { class: "chunk-number" }, `#${chunk.ordinal + 1}`),
            h("p", {}, chunk.text),
          ),
        ),
      );
      remove.hidden = false;
      const targeted = chunks.querySelector(".chunk.target");
      if (targeted) {
        targeted.scrollIntoView({ block: "center" });
        targeted.focus({ preventScroll: true });
      }
    } catch (error) {
      const message = error.status === 404 ? "This document does not exist (any more)." : error.message;
      setNotice(notice, message, "error");
    } finally {
      root.removeAttribute("aria-busy");
    }
  }

  return {
    root,
    title: "Document",
    show({ id, params }) {
      const chunk = params.get("chunk");
      load(id, chunk === null ? null : Number.parseInt(chunk, 10));
    },
  };
}
