"""How each SQL database spells what the shared catalog core needs.

A dialect knows its parameter marks, how a list binds (`IN (?, ?)` in chunks, or one array
`= ANY(%s)`), how JSON attributes compare (the filter semantics of `catalog/filters.py`),
the words its DDL uses, and how to run a statement or a transaction on its connections.
It holds no connection: the backend classes own those.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from types import MappingProxyType
from typing import Any

from lookalike.catalog.filters import ValueSet

# Any fixed number: every process that migrates the same database takes this lock.
POSTGRES_MIGRATION_LOCK = 0x4C4F4F4B  # "LOOK"


class Dialect(ABC):
    """What differs between SQL databases; subclasses fill in the class attributes."""

    name: str  # the backend's registry name
    param: str  # the parameter mark
    json_param: str  # the parameter mark of a JSON value (given as text)
    byte_order: str  # appended to ORDER BY a text column: sort by bytes, as SQLite does
    # Words the shared DDL of the migrations is written with ({row_id}, {json}, ...).
    ddl: Mapping[str, str]
    # Run first in every migration transaction (replicas starting together wait for it).
    migration_lock: str | None = None

    @abstractmethod
    def column_in(
        self, column: str, values: Sequence[Any], sql_type: str = "text"
    ) -> tuple[str, list[Any]]:
        """(clause, parameters): `column` is one of `values`."""

    def chunks(self, values: Sequence[Any]) -> Iterator[list[Any]]:
        """`values` in lists small enough for one `column_in` each."""
        yield list(values)

    @abstractmethod
    def attribute(self, name: str, values: ValueSet) -> tuple[str, list[Any]]:
        """(clause, parameters): JSON attribute `name` is one of `values`."""

    @abstractmethod
    def utc_day(self, epoch_seconds: str) -> str:
        """SQL for the UTC date ('YYYY-MM-DD') of a column of Unix times."""

    @abstractmethod
    def json_array_values(self, array: str, alias: str) -> str:
        """A FROM item naming the elements of a JSON array of scalars `alias.value` (JSON
        null as SQL NULL)."""

    def execute(self, conn: Any, sql: str, params: Sequence[Any] = (), *, binary: bool = False):
        """Run one statement; returns the cursor. `binary`: blobs come back fastest."""
        return conn.execute(sql, params)

    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        conn.executemany(sql, rows)

    @abstractmethod
    def transaction(self, conn: Any) -> AbstractContextManager[Any]:
        """A transaction on `conn` (a connection in autocommit mode)."""


class SQLiteDialect(Dialect):
    """JSON1: `json_extract` gives strings as TEXT, numbers as INTEGER/REAL, booleans as 1/0,
    arrays and objects as JSON TEXT (hence the `json_type` guard on string matches)."""

    name = "sqlite"
    param = "?"
    json_param = "?"
    byte_order = ""  # the default BINARY collation
    ddl = MappingProxyType(
        {
            "row_id": "INTEGER PRIMARY KEY",
            # AUTOINCREMENT: a sequence number is never reused, even after the newest row goes.
            "sequence": "INTEGER PRIMARY KEY AUTOINCREMENT",
            "int64": "INTEGER",
            "int16": "INTEGER",
            "float": "REAL",
            "json": "TEXT",
            "blob": "BLOB",
            "timestamp": "REAL",
            "now": "julianday('now')",
            "random_id": "lower(hex(randomblob(16)))",
        }
    )
    max_params = 900  # under SQLite's bound-parameter limit

    def column_in(
        self, column: str, values: Sequence[Any], sql_type: str = "text"
    ) -> tuple[str, list[Any]]:
        return f"{column} IN ({','.join('?' * len(values))})", list(values)

    def chunks(self, values: Sequence[Any]) -> Iterator[list[Any]]:
        for start in range(0, len(values), self.max_params):
            yield list(values[start : start + self.max_params])

    def attribute(self, name: str, values: ValueSet) -> tuple[str, list[Any]]:
        path = f"'$.\"{name}\"'"  # the name is checked against ATTRIBUTE_NAME
        value = f"json_extract(attributes, {path})"
        kind = f"json_type(attributes, {path})"
        parts: list[str] = []
        params: list[Any] = []
        if values.strings:
            marks = ",".join("?" * len(values.strings))
            parts.append(f"({kind} = 'text' AND {value} IN ({marks}))")
            params.extend(values.strings)
        if values.numbers:
            marks = ",".join("?" * len(values.numbers))
            parts.append(f"({kind} IN ('integer','real','true','false') AND {value} IN ({marks}))")
            params.extend(values.numbers)
        if values.null:
            parts.append(f"{value} IS NULL")
        return "(" + " OR ".join(parts) + ")", params

    def utc_day(self, epoch_seconds: str) -> str:
        return f"date({epoch_seconds}, 'unixepoch')"

    def json_array_values(self, array: str, alias: str) -> str:
        return f"json_each({array}) AS {alias}"

    @contextmanager
    def transaction(self, conn: Any) -> Iterator[Any]:
        # IMMEDIATE takes the write lock up front, so log sequence numbers follow commit order.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class PostgresDialect(Dialect):
    """jsonb: strings compare as jsonb strings; numbers (and booleans as 1/0) as `numeric`,
    so 5, 5.0 and true/1 compare the way Python does."""

    name = "postgresql"
    param = "%s"
    json_param = "%s::jsonb"
    byte_order = ' COLLATE "C"'  # whatever the database's locale
    ddl = MappingProxyType(
        {
            "row_id": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            "sequence": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            "int64": "BIGINT",
            "int16": "SMALLINT",
            "float": "DOUBLE PRECISION",
            "json": "JSONB",
            "blob": "BYTEA",
            "timestamp": "TIMESTAMPTZ",
            "now": "now()",
            "random_id": "md5(random()::text || clock_timestamp()::text)",
        }
    )
    migration_lock = f"SELECT pg_advisory_xact_lock({POSTGRES_MIGRATION_LOCK})"

    def column_in(
        self, column: str, values: Sequence[Any], sql_type: str = "text"
    ) -> tuple[str, list[Any]]:
        return f"{column} = ANY(%s::{sql_type}[])", [list(values)]

    def attribute(self, name: str, values: ValueSet) -> tuple[str, list[Any]]:
        parts: list[str] = []
        params: list[Any] = []
        if values.strings:
            parts.append("(attributes -> %s) = ANY(%s::jsonb[])")
            params.extend([name, [json.dumps(s) for s in values.strings]])
        if values.numbers:
            parts.append(
                "(CASE jsonb_typeof(attributes -> %s)"
                " WHEN 'number' THEN (attributes ->> %s)::numeric"
                " WHEN 'boolean' THEN CASE WHEN (attributes ->> %s)::boolean THEN 1 ELSE 0 END"
                " END) = ANY(%s::numeric[])"
            )
            # Decimal text, not float8: Python's repr round-trips, so equality stays exact.
            params.extend([name, name, name, [repr(n) for n in values.numbers]])
        if values.null:
            parts.append("(attributes -> %s IS NULL OR jsonb_typeof(attributes -> %s) = 'null')")
            params.extend([name, name])
        return "(" + " OR ".join(parts) + ")", params

    def utc_day(self, epoch_seconds: str) -> str:
        return f"to_char(to_timestamp({epoch_seconds}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def json_array_values(self, array: str, alias: str) -> str:
        return f"jsonb_array_elements_text({array}) AS {alias}(value)"

    def execute(self, conn: Any, sql: str, params: Sequence[Any] = (), *, binary: bool = False):
        # No parameters: psycopg then leaves a `%` in the SQL alone.
        return conn.execute(sql, params or None, binary=binary)

    def executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        # psycopg pipelines an executemany: one round trip for the batch.
        with conn.cursor() as cursor:
            cursor.executemany(sql, rows)

    @contextmanager
    def transaction(self, conn: Any) -> Iterator[Any]:
        with conn.transaction():
            yield conn


SQLITE = SQLiteDialect()
POSTGRES = PostgresDialect()
