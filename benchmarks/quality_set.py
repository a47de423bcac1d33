"""The labelled retrieval set: documents from the standard library's own docstrings.

A document is one stdlib module: its title is the module name and the first line of its
docstring ("heapq — Heap queue algorithm (a.k.a. priority queue)."), its text the
docstrings of the module and of its public classes and functions, in breadth-first order
(module, then top-level definitions, then methods), read with `ast` (nothing imported)
and cut at a paragraph boundary after MAX_CHARS. benchmarks/data/retrieval_set.json holds
the module paths, a SHA-256 of each text as extracted when the queries were written
(Python 3.11), and the queries with their relevant modules.
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

SET_PATH = Path(__file__).parent / "data" / "retrieval_set.json"
MAX_CHARS = 6000
_DEFINITIONS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


class LabelledSetError(RuntimeError):
    """A document's source file is missing or unreadable on this machine."""


@dataclass(frozen=True)
class LabelledDocument:
    id: str
    source: str  # path under the stdlib directory
    title: str
    text: str
    matches_labelled_text: bool  # same SHA-256 as when the queries were written


@dataclass(frozen=True)
class LabelledQuery:
    id: str
    text: str
    kind: str  # "keyword": shares distinctive words with the answer; "semantic": paraphrase
    relevant: tuple[str, ...]


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _docstrings(tree: ast.Module) -> list[str]:
    """Module docstring, then public definitions' docstrings, breadth first."""
    found: list[str] = []
    queue: list[ast.AST] = [tree]
    while queue:
        node = queue.pop(0)
        public = not isinstance(node, _DEFINITIONS) or not node.name.startswith("_")
        if not public:
            continue
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node)
            if docstring:
                found.append(docstring)
        queue.extend(ast.iter_child_nodes(node))
    return found


def extract(source: str) -> tuple[str, str]:
    """(title, text) of the stdlib module at `source` (e.g. "json/__init__.py")."""
    path = stdlib_dir() / source
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise LabelledSetError(f"cannot read the labelled document {path}: {exc}") from exc
    docstrings = _docstrings(tree)
    module_doc = ast.get_docstring(tree) or ""
    name = source.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
    first_line = module_doc.strip().split("\n", 1)[0].strip()
    title = f"{name} — {first_line}" if first_line else name
    paragraphs: list[str] = []
    size = 0
    for paragraph in "\n\n".join(docstrings).split("\n\n"):
        if size >= MAX_CHARS:
            break
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return title, "\n\n".join(paragraphs).strip()


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def load(path: Path = SET_PATH) -> tuple[list[LabelledDocument], list[LabelledQuery]]:
    raw: dict[str, Any] = orjson.loads(path.read_bytes())
    documents = []
    for entry in raw["documents"]:
        title, text = extract(entry["source"])
        if not text:
            raise LabelledSetError(f"{entry['source']} has no docstrings on this Python")
        same = text_digest(text) == entry["sha256"]
        documents.append(LabelledDocument(entry["id"], entry["source"], title, text, same))
    known = {d.id for d in documents}
    queries = [
        LabelledQuery(q["id"], q["text"], q["kind"], tuple(q["relevant"])) for q in raw["queries"]
    ]
    for query in queries:
        missing = set(query.relevant) - known
        if missing:
            raise LabelledSetError(f"query {query.id} names unknown documents {missing}")
    return documents, queries
