"""Deterministic, varied text for the benchmark: short search queries and ~200-word passages.

Templates filled from small vocabularies give natural-ish workplace-search text without
shipping a data set. The same seed always yields the same texts, so runs are comparable.
"""

from __future__ import annotations

import random
from collections.abc import Callable

TEAMS = ["billing", "platform", "mobile", "data", "security", "support", "growth", "infra"]
SYSTEMS = [
    "payments api",
    "search cluster",
    "auth service",
    "analytics warehouse",
    "release pipeline",
    "customer portal",
    "notification queue",
    "ledger database",
    "feature flag service",
    "image resizer",
]
TOOLS = ["kubernetes", "terraform", "grafana", "jira", "slack", "postgres", "airflow", "okta"]
ACTIONS = [
    "reset",
    "rotate",
    "request access to",
    "roll back",
    "configure",
    "migrate",
    "archive",
    "export",
    "debug",
    "monitor",
]
OBJECTS = [
    "my vpn password",
    "the staging credentials",
    "a shared drive",
    "the api keys",
    "old invoices",
    "the on-call schedule",
    "a database replica",
    "expense reports",
    "the ssl certificate",
    "team permissions",
]
SYMPTOMS = [
    "returns 502 errors",
    "times out",
    "is slow",
    "drops connections",
    "runs out of memory",
    "rejects logins",
    "shows stale data",
]
EVENTS = ["the upgrade", "a deploy", "the migration", "failover", "the holiday freeze"]
POLICIES = ["travel policy", "expense limit", "parental leave", "remote work policy", "sla"]
AUDIENCES = ["contractors", "new hires", "managers", "the emea office", "interns"]
DOCS = ["runbook", "design doc", "postmortem", "onboarding guide", "architecture diagram"]
TOPICS = [
    "rate limiting",
    "data retention",
    "incident response",
    "cost allocation",
    "access reviews",
    "backup restores",
    "schema changes",
]
QUARTERS = ["q1", "q2", "q3", "q4", "this quarter", "last year"]

QUERY_TEMPLATES = [
    "how do I {action} {object}",
    "how do I {action} {object} in {tool}",
    "{system} {symptom} after {event}",
    "why does the {system} {symptom} during {event}",
    "what is the {policy} for {audience}",
    "who owns the {system} on {team} team",
    "steps to {action} {object} for {audience}",
    "where can I find the {doc} for the {system}",
    "{doc} for the {system} from {quarter}",
    "is there a {doc} about {topic} in {tool}",
    "best practice for {topic} with {tool}",
    "{team} team guidelines on {topic}",
    "difference between the {system} and the {system2}",
    "latest {doc} on {topic} for the {team} team",
    "can {audience} {action} {object} without approval",
]

SUBJECTS = [
    "The {team} team",
    "Our on-call engineer",
    "The {system}",
    "Each service owner",
    "The incident commander",
    "A reviewer from {team}",
    "The migration script",
    "Finance",
]
PREDICATES = [
    "{past} the {system} before {event}",
    "reported that the {system} {symptom} for {n} minutes",
    "must {action} {object} every {n} days",
    "documented {topic} in the {doc}",
    "agreed to review {topic} with {audience} in {quarter}",
    "uses {tool} to track {topic} across {n} regions",
    "should escalate to the {team} team when the {system} {symptom}",
    "recommends {topic} checks before every change to the {system}",
]
PAST_VERBS = ["upgraded", "patched", "restarted", "audited", "scaled", "replaced", "tested"]
CLOSERS = [
    "",
    " after a long discussion",
    " according to the {doc}",
    " so that {audience} are not blocked",
    " until the {team} team signs off",
    " which reduced costs by {n} percent",
]


def _fill(template: str, rng: random.Random) -> str:
    values = {
        "team": rng.choice(TEAMS),
        "system": rng.choice(SYSTEMS),
        "system2": rng.choice(SYSTEMS),
        "tool": rng.choice(TOOLS),
        "action": rng.choice(ACTIONS),
        "object": rng.choice(OBJECTS),
        "symptom": rng.choice(SYMPTOMS),
        "event": rng.choice(EVENTS),
        "policy": rng.choice(POLICIES),
        "audience": rng.choice(AUDIENCES),
        "doc": rng.choice(DOCS),
        "topic": rng.choice(TOPICS),
        "quarter": rng.choice(QUARTERS),
        "past": rng.choice(PAST_VERBS),
        "n": str(rng.randint(2, 90)),
    }
    return template.format(**values)


def make_queries(
    count: int,
    seed: int = 7,
    token_count: Callable[[str], int] | None = None,
    token_range: tuple[int, int] = (8, 14),
) -> list[str]:
    """Distinct queries; with ``token_count`` only those whose length is in ``token_range``."""
    rng = random.Random(seed)
    low, high = token_range
    queries: list[str] = []
    seen: set[str] = set()
    # Bounded: the templates yield thousands of distinct queries, far more than needed.
    for _ in range(count * 200):
        if len(queries) >= count:
            break
        text = _fill(rng.choice(QUERY_TEMPLATES), rng)
        if rng.random() < 0.3:
            text += "?"
        if text in seen:
            continue
        if token_count is not None and not low <= token_count(text) <= high:
            continue
        seen.add(text)
        queries.append(text)
    if len(queries) < count:
        raise ValueError(f"only {len(queries)} distinct queries fit {token_range} tokens")
    return queries


def _sentence(rng: random.Random) -> str:
    subject = _fill(rng.choice(SUBJECTS), rng)
    predicate = _fill(rng.choice(PREDICATES), rng)
    closer = _fill(rng.choice(CLOSERS), rng)
    return f"{subject} {predicate}{closer}."


def make_passages(count: int, seed: int = 11, words: tuple[int, int] = (150, 250)) -> list[str]:
    """Passages of a random length in ``words``, cut at that word (as a chunker would)."""
    rng = random.Random(seed)
    passages: list[str] = []
    for _ in range(count):
        target = rng.randint(*words)
        tokens: list[str] = []
        while len(tokens) < target:
            tokens.extend(_sentence(rng).split())
        passages.append(" ".join(tokens[:target]))
    return passages
