"""Dataclasses read from SQL rows whose columns carry the fields' names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Row

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Record = TypeVar("Record", bound="DataclassInstance")


def from_row(record: type[Record], row: Row[Any]) -> Record:
    """A `record` of `row`: its statement names each column as a field of `record`
    (`claims AS claim`), so a column missing or left over is a TypeError naming it."""
    return record(**row._mapping)
