"""Read-only, schema-aware access to an Nsight Systems SQLite export.

An export's tables exist only when the capture produced rows for them, and their columns
change between Nsight Systems releases (schema 3.0.0 in 2022.4, 3.24+ in 2026). Everything
here therefore asks the file what it holds (``sqlite_master`` joined to ``pragma_table_info``)
before reading, and builds each SELECT from the columns that are really there, with NULL
standing in for the missing ones.

Reads go through ``polars.read_database`` in batches of rows: measured on an 881k-row kernel
table (17 integer columns) it takes 2.3 s and 194 MB peak, against 2.4 s / 524 MB for one
``fetchall`` and 3.0 s for having SQLite render CSV for Arrow's CSV reader; the time is the
sqlite3 driver building its row tuples, which no installed library avoids (DuckDB's SQLite
scanner would need an extension download).

The file is opened with ``mode=ro&immutable=1``: SQLite neither writes nor creates a journal
or WAL file beside the input, and never takes a lock. An export in WAL mode whose ``-wal``
file still holds pages would then be read stale, so such a file and its WAL are copied to
a temporary folder (removed on `close`) and read from there, with a warning.

Hostile files: a ``CUPTI_ACTIVITY_*``, ``NVTX_*`` or ``StringIds`` object that is a view
(arbitrary SQL, possibly endless) is refused; every query runs under a progress handler
that stops it after `QUERY_BUDGET_S`; values of the wrong type (TEXT or REAL in an integer
column, integers beyond int64, BLOBs) become NULL and are counted in `NsysDb.notes`.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import polars as pl
from gpu_trace_analyzer.parsers.errors import UnreadableInputError, UnsupportedFormatError

SQLITE_MAGIC: Final = b"SQLite format 3\x00"
_HEADER_BYTES: Final = 100
_BATCH_ROWS: Final = 50_000
#: Seconds one query may run before it is stopped (a crafted file must not hang the tool).
QUERY_BUDGET_S: float = 300.0
#: SQLite VM instructions between two looks at the clock.
PROGRESS_OPS: int = 10_000
#: Objects a view must never stand in for (their rows are read whole).
_DATA_PREFIXES: Final = ("CUPTI_ACTIVITY_", "NVTX_", "StringIds", "TARGET_INFO_", "ENUM_")
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

#: SQL for a 24-bit process id and thread id packed in an Nsight "Serialized GlobalId".
PID_SQL: Final = "(({col} >> 24) & 16777215)"
TID_SQL: Final = "({col} & 16777215)"


@dataclass(frozen=True, slots=True)
class NsysDb:
    """An open export plus its catalog: table name -> the column names it has."""

    path: Path
    conn: sqlite3.Connection
    tables: Mapping[str, frozenset[str]]
    #: What reading had to repair (wrong-typed values nulled, WAL replayed), for warnings.
    notes: list[str] = field(default_factory=list)
    #: A temporary copy (WAL replay) to remove on `close`.
    copy_dir: str | None = None

    def has(self, table: str, *columns: str) -> bool:
        """Whether the table exists and has every named column."""
        cols = self.tables.get(table)
        return cols is not None and all(c in cols for c in columns)

    def col(self, table: str, column: str, alias: str | None = None, expr: str = "{col}") -> str:
        """A SELECT item for ``column`` (formatted into ``expr``), or NULL when it is absent."""
        name = alias or column
        if not self.has(table, column):
            return f"NULL AS {name}"
        return f"{expr.format(col=_quote_ident(column))} AS {name}"

    def scalar_rows(self, sql: str) -> list[tuple[Any, ...]]:
        """A small query's rows as tuples (meta tables with a handful of rows)."""
        with _sqlite_errors(self.path), _budget(self.conn):
            return list(self.conn.execute(sql).fetchall())

    def frame(self, sql: str, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
        """Run ``sql`` and return its rows as a frame with exactly ``schema``; a value of
        the wrong type (a crafted or damaged export) reads as NULL, counted in `notes`."""
        try:
            with _sqlite_errors(self.path), _budget(self.conn):
                batches = list(
                    pl.read_database(
                        sql,
                        self.conn,
                        iter_batches=True,
                        batch_size=_BATCH_ROWS,
                        schema_overrides=dict(schema),
                    )
                )
        except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError):
            return self._tolerant_frame(sql, schema)
        if not batches:
            return pl.DataFrame(schema=dict(schema))
        frame = pl.concat(batches, how="vertical") if len(batches) > 1 else batches[0]
        return frame.select(pl.col(n).cast(t, strict=False) for n, t in schema.items())

    def _tolerant_frame(self, sql: str, schema: Mapping[str, pl.DataType]) -> pl.DataFrame:
        """The slow path of `frame`: rows read one by one, each value checked against its
        column's type (a wrong one becomes NULL and is counted)."""
        bad = 0
        with _sqlite_errors(self.path), _budget(self.conn):
            cursor = self.conn.execute(sql)
            names = [d[0] for d in cursor.description]
            columns: dict[str, list[Any]] = {n: [] for n in names}
            while rows := cursor.fetchmany(_BATCH_ROWS):
                for row in rows:
                    for name, value in zip(names, row, strict=True):
                        fixed = _coerce(value, schema.get(name))
                        bad += fixed is None and value is not None
                        columns[name].append(fixed)
        if bad:
            self.notes.append(f"{bad} values of the wrong type (or out of range) read as empty")
        frame = pl.DataFrame(
            {n: pl.Series(n, columns[n], dtype=schema.get(n), strict=False) for n in names}
        )
        return frame.select(pl.col(n).cast(t, strict=False) for n, t in schema.items())

    def close(self) -> None:
        """Close the connection (and remove a temporary copy)."""
        self.conn.close()
        if self.copy_dir is not None:
            shutil.rmtree(self.copy_dir, ignore_errors=True)


def _coerce(value: Any, dtype: pl.DataType | None) -> Any:
    """``value`` if it fits a column of ``dtype``, else None."""
    if value is None or dtype is None:
        return value
    if dtype == pl.Int64():
        if isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
            return value
        return None
    if dtype.is_float():
        return float(value) if isinstance(value, int | float) else None
    if dtype == pl.String():
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return str(value)
    return None if isinstance(value, bytes | str) and dtype.is_numeric() else value


@contextmanager
def _budget(conn: sqlite3.Connection) -> Iterator[None]:
    """Stop a query that runs longer than `QUERY_BUDGET_S` (one-line error, exit 3)."""
    deadline = time.monotonic() + QUERY_BUDGET_S
    conn.set_progress_handler(lambda: int(time.monotonic() > deadline), PROGRESS_OPS)
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "interrupted" in str(exc):
            raise UnreadableInputError(
                f"a query ran longer than {QUERY_BUDGET_S:g} s (a crafted or damaged export?)"
            ) from exc
        raise
    finally:
        conn.set_progress_handler(None, 0)


def _decode_text(raw: bytes) -> str:
    """UTF-8 with replacement: NVTX text is whatever the application passed in."""
    return raw.decode("utf-8", errors="replace")


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def _sqlite_errors(path: Path) -> Iterator[None]:
    """Turn SQLite's errors on a damaged file into our one-line input error."""
    try:
        yield
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        # A garbled schema also makes SQLite's own error text undecodable.
        reason = exc if isinstance(exc, sqlite3.DatabaseError) else "undecodable schema text"
        raise UnreadableInputError(f"corrupt SQLite database ({reason})", path) from exc


def check_header(path: Path, label: Path | None = None) -> None:
    """Reject, before SQLite sees it, a file that is empty, not SQLite, or cut short.

    SQLite opens a zero-byte file as an empty database and only notices truncation when it
    reads a missing page, so both are checked here from the 100-byte header: the page size
    (offset 16) times the in-header page count (offset 28, valid when the change counter at
    24 equals the version-valid-for number at 92) must fit in the file.
    """
    shown = label or path
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            header = fh.read(_HEADER_BYTES)
    except FileNotFoundError as exc:
        raise UnreadableInputError("no such file", shown) from exc
    except OSError as exc:
        raise UnreadableInputError(f"cannot read file ({exc.strerror})", shown) from exc
    if size == 0:
        raise UnreadableInputError("empty file (0 bytes)", shown)
    if not header.startswith(SQLITE_MAGIC):
        raise UnsupportedFormatError("not an SQLite database (no SQLite header)", shown)
    if len(header) < _HEADER_BYTES:
        raise UnreadableInputError(f"truncated SQLite database ({size} bytes)", shown)
    raw_page = int.from_bytes(header[16:18], "big")
    page_bytes = 65536 if raw_page == 1 else raw_page
    page_count = int.from_bytes(header[28:32], "big")
    counter_valid = header[24:28] == header[92:96]
    if counter_valid and page_count and page_count * page_bytes > size:
        raise UnreadableInputError(
            f"truncated SQLite database: header says {page_count * page_bytes} bytes, "
            f"file has {size}",
            shown,
        )


def open_db(path: Path, shown: Path | None = None) -> NsysDb:
    """Open an export read-only and read its catalog; errors name ``shown`` (or ``path``)."""
    label = shown or path
    check_header(path, label)
    copy_dir, notes = _wal_copy(path, label)
    source = path if copy_dir is None else Path(copy_dir) / path.name
    mode = "mode=ro&immutable=1" if copy_dir is None else "mode=ro"
    uri = f"{source.resolve().as_uri()}?{mode}"
    try:
        with _sqlite_errors(label):
            conn = sqlite3.connect(uri, uri=True)
            conn.text_factory = _decode_text
            try:
                with _budget(conn):
                    rows = conn.execute(
                        "SELECT m.name, m.type, p.name FROM sqlite_master AS m "
                        "JOIN pragma_table_info(m.name) AS p WHERE m.type IN ('table', 'view')"
                    ).fetchall()
            except (sqlite3.DatabaseError, UnicodeDecodeError, UnreadableInputError):
                conn.close()
                raise
    except BaseException:
        if copy_dir is not None:
            shutil.rmtree(copy_dir, ignore_errors=True)
        raise
    tables: dict[str, set[str]] = {}
    views = sorted({str(t) for t, kind, _ in rows if kind == "view" and _is_data(str(t))})
    if views:
        conn.close()
        if copy_dir is not None:
            shutil.rmtree(copy_dir, ignore_errors=True)
        raise UnsupportedFormatError(
            f"{', '.join(views[:3])} is a view, not a table: not an export Nsight Systems wrote",
            label,
        )
    for table, _kind, column in rows:
        tables.setdefault(str(table), set()).add(str(column))
    frozen = {t: frozenset(c) for t, c in tables.items()}
    return NsysDb(label, conn, frozen, notes=notes, copy_dir=copy_dir)


def _is_data(name: str) -> bool:
    return name.startswith(_DATA_PREFIXES)


def _wal_copy(path: Path, label: Path) -> tuple[str | None, list[str]]:
    """A temporary folder holding the export and its ``-wal`` when the WAL holds pages
    (so it is read, not ignored, and the input stays untouched); else None."""
    wal = path.with_name(path.name + "-wal")
    try:
        if not wal.is_file() or wal.stat().st_size == 0:
            return None, []
    except OSError:
        return None, []
    folder = tempfile.mkdtemp(prefix="analyze-wal-")
    try:
        shutil.copyfile(path, Path(folder) / path.name)
        shutil.copyfile(wal, Path(folder) / wal.name)
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise UnreadableInputError(
            f"has an uncheckpointed WAL that could not be copied to read it ({exc.strerror})",
            label,
        ) from exc
    return folder, [f"{label.name}: read together with its write-ahead log ({wal.name})"]


def string_ids(db: NsysDb) -> pl.DataFrame:
    """The ``StringIds`` table (id -> value) every name column points into."""
    if not db.has("StringIds", "id", "value"):
        return pl.DataFrame(schema={"id": pl.Int64, "value": pl.String})
    return db.frame("SELECT id, value FROM StringIds", {"id": pl.Int64(), "value": pl.String()})


def key_values(db: NsysDb, table: str) -> dict[str, str]:
    """A ``name``/``value`` meta table (META_DATA_EXPORT, EXPORT_META_DATA) as a dict."""
    if not db.has(table, "name", "value"):
        return {}
    rows = db.scalar_rows(f"SELECT name, value FROM {_quote_ident(table)}")
    return {str(k): str(v) for k, v in rows if v is not None}


def enum_names(db: NsysDb, table: str) -> dict[int, str]:
    """An ``ENUM_*`` table's id -> symbol name (e.g. 1 -> CUDA_MEMCPY_KIND_HTOD)."""
    if not db.has(table, "id", "name"):
        return {}
    rows = db.scalar_rows(f"SELECT id, name FROM {_quote_ident(table)}")
    return {int(i): str(n) for i, n in rows if i is not None and n is not None}


def first_table(db: NsysDb, candidates: Sequence[str]) -> str | None:
    """The first of several alternative table names the export has."""
    return next((t for t in candidates if t in db.tables), None)
