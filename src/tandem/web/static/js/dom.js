// Small DOM helpers. Text always goes in as text nodes, never through innerHTML.

/** Build an element: h("a", {href: "#/x", class: "link"}, "text", childNode, ...). */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

const NAMED_ENTITIES = new Map([
  ["amp", "&"],
  ["lt", "<"],
  ["gt", ">"],
  ["quot", '"'],
  ["apos", "'"],
  ["nbsp", "\u00a0"],
]);

/** Text of escaped HTML: entities decoded, by a lookup rather than by an HTML parser. */
function unescapeText(escaped) {
  return escaped.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (entity, code) => {
    if (code[0] !== "#") return NAMED_ENTITIES.get(code.toLowerCase()) ?? entity;
    const point = code[1].toLowerCase() === "x" ? parseInt(code.slice(2), 16) : parseInt(code.slice(1), 10);
    return point > 0 && point <= 0x10ffff ? String.fromCodePoint(point) : entity;
  });
}

/** Escaped HTML as one text node: any tag in it is dropped, only its text is kept. */
function textOf(escaped) {
  return document.createTextNode(unescapeText(escaped.replace(/<[^>]*>?/g, "")));
}

/**
 * A search snippet as DOM nodes. The API sends HTML-escaped text with <mark> around the
 * matched words; to be safe even if that ever changes, only <mark> becomes an element and
 * every other tag is dropped. No HTML parser is involved, so nothing can load or run.
 */
export function markedSnippet(snippetHtml) {
  const fragment = document.createDocumentFragment();
  const source = String(snippetHtml);
  const marked = /<mark>([\s\S]*?)<\/mark>/gi;
  let cursor = 0;
  for (const match of source.matchAll(marked)) {
    fragment.append(textOf(source.slice(cursor, match.index)));
    fragment.append(h("mark", {}, textOf(match[1])));
    cursor = match.index + match[0].length;
  }
  fragment.append(textOf(source.slice(cursor)));
  return fragment;
}

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatNumber(value, digits = 0) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return value.toLocaleString(undefined, { maximumFractionDigits: digits });
}

export function formatDate(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function secondsAgo(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  return Number.isFinite(seconds) ? `${seconds} s ago` : "–";
}

/** The hash link of a document (and optionally one of its chunks). */
export function documentHref(documentId, chunk) {
  const base = `#/documents/${encodeURIComponent(documentId)}`;
  return chunk === undefined ? base : `${base}?chunk=${chunk}`;
}

/** A notice box's text and look; hidden when there is nothing to say. */
export function setNotice(element, message, kind = "info") {
  element.hidden = !message;
  element.textContent = message || "";
  element.className = `notice ${kind}`;
}
