// Documents: the catalog a page at a time (#/documents?offset=N), with delete.

import { api } from "../api.js";
import { documentHref, formatBytes, formatDate, formatNumber, h, setNotice } from "../dom.js";
import { confirmDelete } from "./deleting.js";

const PAGE_SIZE = 25;

export function createDocumentsView() {
  const notice = h("div", { id: "documents-notice", role: "status", hidden: true });
  const summary = h("p", { id: "documents-summary", class: "summary" });
  const body = h("tbody");
  const table = h(
    "table",
    { id: "documents-table", class: "documents" },
    h("caption", { class: "visually-hidden" }, "Indexed documents"),
    h(
      "thead",
      {},
      h("tr", {}, ["Title", "Path", "Source", "Type", "Chunks", "Size", "Updated", ""].map((label) =>
        h("th", { scope: "col" }, label || h("span", { class: "visually-hidden" }, "Actions")),
      )),
    ),
    body,
  );
  const previous = h("button", { type: "button", class: "secondary", id: "page-previous", disabled: true }, "← Previous");
  const next = h("button", { type: "button", class: "secondary", id: "page-next", disabled: true }, "Next →");
  const pager = h("nav", { class: "pager", "aria-label": "Pages", hidden: true }, previous, next);
  const tableWrap = h("div", { class: "table-wrap", hidden: true }, table); // until a page arrives
  const refresh = h("button", { type: "button", class: "secondary", id: "documents-refresh" }, "Refresh");
  const root = h(
    "section",
    { class: "view view-documents", "aria-labelledby": "documents-title" },
    h("div", { class: "title-row" }, h("h1", { id: "documents-title" }, "Documents"), refresh),
    notice,
    summary,
    tableWrap,
    pager,
  );

  let offset = 0;
  let total = 0;

  const goTo = (newOffset) => {
    location.hash = newOffset > 0 ? `#/documents?offset=${newOffset}` : "#/documents";
  };
  previous.addEventListener("click", () => goTo(Math.max(0, offset - PAGE_SIZE)));
  next.addEventListener("click", () => goTo(offset + PAGE_SIZE));
  refresh.addEventListener("click", () => load());

  function row(documentOut) {
    const title = documentOut.title || documentOut.id;
    const remove = h(
      "button",
      { type: "button", class: "danger small", "aria-label": `Delete ${title}`, dataset: { documentId: documentOut.id } },
      "Delete",
    );
    remove.addEventListener("click", async () => {
      const deleted = await confirmDelete(documentOut, notice);
      if (!deleted) return;
      setNotice(notice, `Deleted “${title}”.`, "success");
      // The last row of a later page went: show the page before it.
      if (body.children.length === 1 && offset > 0) goTo(Math.max(0, offset - PAGE_SIZE));
      else load({ keepNotice: true });
    });
    return h(
      "tr",
      { dataset: { documentId: documentOut.id } },
      h("td", {}, h("a", { href: documentHref(documentOut.id) }, title)),
      h("td", { class: "path" }, documentOut.path),
      h("td", { class: "muted" }, documentOut.source),
      h("td", { class: "muted" }, documentOut.content_type),
      h("td", { class: "number" }, formatNumber(documentOut.chunk_count)),
      h("td", { class: "number" }, formatBytes(documentOut.size_bytes)),
      h("td", { class: "muted" }, formatDate(documentOut.updated_at)),
      h("td", {}, remove),
    );
  }

  async function load({ keepNotice = false } = {}) {
    if (!keepNotice) setNotice(notice, "");
    root.setAttribute("aria-busy", "true");
    try {
      const page = await api(`documents?offset=${offset}&limit=${PAGE_SIZE}`);
      total = page.total;
      body.replaceChildren(...page.items.map(row));
      summary.replaceChildren(
        total === 0
          ? h("span", {}, "No documents yet. ", h("a", { href: "#/upload" }, "Upload some"), ".")
          : total === 1
            ? "1 document"
            : `${offset + 1}–${offset + page.items.length} of ${formatNumber(total)} documents`,
      );
      tableWrap.hidden = total === 0;
    } catch (error) {
      setNotice(notice, `Cannot list documents: ${error.message}`, "error");
    } finally {
      root.removeAttribute("aria-busy");
      previous.disabled = offset === 0;
      next.disabled = offset + PAGE_SIZE >= total;
      pager.hidden = previous.disabled && next.disabled;
    }
  }

  return {
    root,
    title: "Documents",
    show({ params }) {
      offset = Math.max(0, Number.parseInt(params.get("offset") || "0", 10) || 0);
      load();
    },
  };
}
