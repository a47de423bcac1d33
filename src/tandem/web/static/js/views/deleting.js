// Deleting a document, shared by the list and the document page: confirm, then DELETE.

import { api } from "../api.js";
import { setNotice } from "../dom.js";

/** Resolves true once deleted; false when the user said no or the API refused (noticed). */
export async function confirmDelete(documentOut, notice) {
  const name = documentOut.title || documentOut.id;
  const question = `Delete “${name}”?\n\nIts ${documentOut.chunk_count} chunk(s) leave the search index. This cannot be undone.`;
  if (!window.confirm(question)) return false;
  try {
    await api(`documents/${encodeURIComponent(documentOut.id)}`, { method: "DELETE" });
    return true;
  } catch (error) {
    setNotice(notice, `Cannot delete “${name}”: ${error.message}`, "error");
    return false;
  }
}
