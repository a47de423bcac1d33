"""Realistic generated prose, offline: a word-level Markov chain over real English.

The training text is real prose found on this machine: the long descriptions (METADATA)
of the packages installed next to this interpreter and the docstrings of the standard
library's top-level modules (read with `ast`, nothing is imported). Code blocks, tables,
links, badges and markup are dropped; paragraphs of plain sentences are kept. Each
generated sentence starts from a real sentence opening of one "topic" (a package or a
module) and then follows the chain trained on all of them, so a document drawn from one
topic stays roughly on that topic, as real chunks do.
Deterministic for a given seed and set of installed packages.
"""

from __future__ import annotations

import ast
import random
import re
import sys
import sysconfig
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_string
from pathlib import Path

ORDER = 2
END = "\x00"
MIN_SENTENCE_WORDS = 6
MAX_SENTENCE_WORDS = 45
MIN_TOPIC_SENTENCES = 8

_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_MARKUP = re.compile(r"`+|\*+|_{2,}|\[|\]|<[^>]*>|\([^)]*https?://[^)]*\)|:\w+:")
_NOT_PROSE = re.compile(r"https?://|[|{}=#>$]|\.\.|::|\w\(|\\")


def site_packages() -> Path:
    return Path(next(p for p in sys.path if p.endswith("site-packages")))


def _prose_sentences(body: str) -> list[str]:
    """Plain sentences from a README-like text: code, tables and markup left out."""
    sentences: list[str] = []
    in_fence = False
    for paragraph in re.split(r"\n\s*\n", body):
        if paragraph.lstrip().startswith("```") or paragraph.count("```") % 2:
            in_fence = not in_fence if paragraph.count("```") % 2 else in_fence
            continue
        if in_fence or paragraph.startswith((" ", "\t")):
            continue
        text = " ".join(_MARKUP.sub("", paragraph).split())
        for sentence in _SENTENCE_SPLIT.split(text):
            words = sentence.split()
            if not MIN_SENTENCE_WORDS <= len(words) <= MAX_SENTENCE_WORDS:
                continue
            letters = sum(c.isalpha() or c.isspace() for c in sentence)
            if _NOT_PROSE.search(sentence) or letters < 0.9 * len(sentence):
                continue
            if sentence[0].isupper() and sentence[-1] in ".!?":
                sentences.append(sentence)
    return sentences


def package_descriptions(root: Path) -> Iterator[tuple[str, str]]:
    """(package name, long description) of every *.dist-info under `root`."""
    for path in sorted(root.glob("*.dist-info/METADATA")):
        message = message_from_string(path.read_text(errors="replace"))
        payload = message.get_payload()
        if isinstance(payload, str):
            yield str(message.get("Name", path.parent.name)), payload


def module_docstrings(path: Path) -> str:
    """The module's, its classes' and its functions' docstrings, blank-line separated."""
    try:
        tree = ast.parse(path.read_text(errors="replace"))
    except SyntaxError:
        return ""
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docs = [ast.get_docstring(n) for n in ast.walk(tree) if isinstance(n, nodes)]
    return "\n\n".join(d for d in docs if d)


def stdlib_docstrings() -> Iterator[tuple[str, str]]:
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        yield path.stem, module_docstrings(path)


@dataclass
class ProseModel:
    topics: list[str]
    openings: list[list[tuple[str, ...]]]  # per topic: real sentence openings
    chain: dict[tuple[str, ...], list[str]] = field(default_factory=dict)

    @classmethod
    def from_installed(cls) -> ProseModel:
        """Trained on this venv's package descriptions and the stdlib's docstrings."""
        chain: defaultdict[tuple[str, ...], list[str]] = defaultdict(list)
        topics: list[str] = []
        openings: list[list[tuple[str, ...]]] = []
        sources = [*package_descriptions(site_packages()), *stdlib_docstrings()]
        for name, body in sources:
            sentences = _prose_sentences(body)
            if len(sentences) < MIN_TOPIC_SENTENCES:
                continue
            topics.append(name)
            openings.append([tuple(s.split()[:ORDER]) for s in sentences])
            for sentence in sentences:
                words = [*sentence.split(), END]
                for i in range(len(words) - ORDER):
                    chain[tuple(words[i : i + ORDER])].append(words[i + ORDER])
        if not topics:
            raise RuntimeError("no package descriptions or docstrings with prose were found")
        return cls(topics, openings, dict(chain))

    def sentence(self, rng: random.Random, topic: int) -> str:
        state = rng.choice(self.openings[topic])
        words = list(state)
        while len(words) < MAX_SENTENCE_WORDS:
            following = self.chain.get(state)
            if not following:
                break
            word = rng.choice(following)
            if word == END:
                break
            words.append(word)
            state = (*state[1:], word)
        text = " ".join(words)
        return text if text[-1] in ".!?" else text + "."

    def sentences(self, rng: random.Random, topic: int, count: int) -> list[str]:
        return [self.sentence(rng, topic) for _ in range(count)]

    def title(self, rng: random.Random, topic: int) -> str:
        words = self.sentence(rng, topic).rstrip(".!?").split()[: rng.randint(3, 7)]
        return f"{self.topics[topic]}: {' '.join(words)}"

    def document(self, rng: random.Random, words: int) -> tuple[str, str]:
        """(title, text): paragraphs of 3-7 sentences, about `words` words, one topic."""
        topic = rng.randrange(len(self.topics))
        paragraphs: list[str] = []
        total = 0
        while total < words:
            paragraph = " ".join(self.sentences(rng, topic, rng.randint(3, 7)))
            paragraphs.append(paragraph)
            total += len(paragraph.split())
        return self.title(rng, topic), "\n\n".join(paragraphs)
