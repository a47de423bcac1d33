"""Vectors sent to PostgreSQL in pgvector's binary form.

A search sends its query vector in two or three statements; as text (`[0.0123,...]`)
each is 384 floats formatted by Python and parsed again by the server: about half a
millisecond of the API's CPU per search. In binary it is one byte-order conversion.
Engines from tandem.db.session.make_engine register the dumper on every connection.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg.adapt import Dumper
from psycopg.pq import Format

# pgvector's binary form (vector_recv): the dimensions and an unused word, both int16,
# then the floats as big-endian float4.
_HEADER = struct.Struct(">HH")


class VectorParam:
    """A statement parameter to be sent as a vector (`CAST(:v AS vector)` in the SQL:
    the server reads the type from that cast)."""

    __slots__ = ("values",)

    def __init__(self, values: npt.ArrayLike) -> None:
        self.values = np.asarray(values, dtype=">f4").ravel()


class VectorDumper(Dumper):
    format = Format.BINARY
    # 0: no type of its own here (pgvector's type id differs per database); the cast in
    # the statement gives the parameter its type.
    oid = 0

    def dump(self, obj: Any) -> bytes:
        values: np.ndarray[Any, np.dtype[np.float32]] = obj.values
        return _HEADER.pack(len(values), 0) + values.tobytes()


def register_vector_dumper(dbapi_connection: Any, _record: object = None) -> None:
    """For SQLAlchemy's `connect` event: this connection sends VectorParam in binary."""
    dbapi_connection.adapters.register_dumper(VectorParam, VectorDumper)
