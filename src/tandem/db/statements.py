"""Text SQL made once per distinct statement.

`sqlalchemy.text()` scans its string for bind parameters on every call, and search runs
the same few statements (their text depends only on the filter's shape and the number of
probed terms) thousands of times: each is built once and reused, as SQLAlchemy's
statements are meant to be (immutable, safe across threads).
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import TextClause, text

# More distinct statements than search ever makes (filters x probed-term counts x modes);
# past it the least recently used is made again when next asked for.
MAX_STATEMENTS = 1024


@lru_cache(maxsize=MAX_STATEMENTS)
def statement(sql: str) -> TextClause:
    return text(sql)
