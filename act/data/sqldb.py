"""Spider databases: paths, gold-query checks at ingest, and compact schema rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from act.metrics.sql import execute as run_query
from act.metrics.sql import same_rows


class QueryError(Exception):
    """A query failed to run (SQL error, timeout, missing database)."""


def db_path(databases: str | Path, db_id: str) -> Path:
    return Path(databases) / db_id / f"{db_id}.sqlite"


def execute(path: str | Path, sql: str, *, timeout_s: float = 5.0, max_rows: int = 100_000) -> list[tuple[Any, ...]]:
    """Run `sql` read-only (so a gold query can never change the committed databases); raise
    QueryError on any failure or after `timeout_s`. The same executor scores predictions
    (`act.metrics.sql`), so a gold query that passes here runs identically there."""
    result = run_query(path, sql, timeout_s=timeout_s, row_limit=max_rows)
    if result.status == "timeout":
        raise QueryError(f"timed out after {timeout_s:g} s")
    if result.status != "ok":
        raise QueryError(result.message)
    return list(result.rows)


def same_result(a: list[tuple], b: list[tuple]) -> bool:
    """Execution match as a multiset of rows (row order ignored)."""
    return same_rows(a, b, ordered=False)


def render_schema(table: dict) -> str:
    """A Spider `tables.json` entry as one CREATE-like line per table, with keys.

    `CREATE TABLE singer (Singer_ID number PRIMARY KEY, Name text, ...,
    FOREIGN KEY (Stadium_ID) REFERENCES stadium(Stadium_ID))`"""
    tables = table["table_names_original"]
    cols = table["column_names_original"]
    types = table["column_types"]
    # Newer Spider releases list a composite primary key as a list of column indexes.
    pks = {c for k in table.get("primary_keys") or [] for c in (k if isinstance(k, list) else [k])}
    fks: dict[int, list[str]] = {}
    for a, b in table.get("foreign_keys") or []:
        ta, ca = cols[a]
        tb, cb = cols[b]
        fks.setdefault(ta, []).append(f"FOREIGN KEY ({ca}) REFERENCES {tables[tb]}({cb})")
    lines = []
    for ti, name in enumerate(tables):
        parts = [
            f"{c} {types[ci]}" + (" PRIMARY KEY" if ci in pks else "")
            for ci, (t, c) in enumerate(cols)
            if t == ti
        ]
        lines.append(f"CREATE TABLE {name} ({', '.join(parts + fks.get(ti, []))})")
    return "\n".join(lines)
