"""Execution match for AmbigSQL: run predicted and gold SQL on the database and compare results.

Sandbox. A policy reply is untrusted SQL, so each query runs on a connection that
- is opened read-only (`file:...?mode=ro` URI);
- has an authorizer (`set_authorizer`) that allows reading and nothing else: SELECT, reading
  columns, recursive CTEs and functions other than those that touch files or load code. ATTACH,
  VACUUM (INTO), PRAGMA, writes, transactions, `load_extension()` are all denied;
- has size caps (`setlimit`, `LIMITS`): a string or blob of at most 1 MB, no attached database,
  a short SQL text, bounded expression depth, compound selects, LIKE patterns and columns, so one
  expensive call (`randomblob(900000000)`, `hex(zeroblob(1e8))`) fails at once;
- has a wall-clock limit enforced three times: SQLite's progress handler checks the deadline
  every `_PROGRESS_EVERY` VM instructions; a timer calls `Connection.interrupt()` at the
  deadline; and since neither can stop work inside one SQL function call (`instr()` of two long
  strings is quadratic), every query runs in a worker process (`_Sandbox`, one per client
  process, started once, address space capped at `WORKER_MEMORY_BYTES`) that is killed when it
  overruns the limit by `HARD_GRACE_S`, and restarted for the next query.
At most `row_limit` rows, and at most `FETCH_BYTES` of them (Python object bytes, counted row
by row inside the worker as they are fetched), come back; a reply larger than `REPLY_BYTES`
(pickled) is never read by the client. So neither the worker nor the stage's own process grows
with what a query returns. Bad SQL never raises: the result carries a status, ok / mismatch /
error / timeout / vacuous, that callers count; whatever happens to the worker (killed, out of
memory, a crash, a garbled reply) is a scored `error` or `timeout`. A database that cannot be
opened (missing, not a database, empty: no tables) is not the policy's fault and raises
`DatabaseUnavailable`, naming it. Only successful gold results are cached (`GOLD_CACHE_BYTES` in
all), so one transient gold timeout is not a 0 for every later prediction against it.

Comparison (as Spider's test-suite evaluation): rows are tuples of values; floats are rounded to
`FLOAT_DIGITS` decimals. Results are compared as multisets of rows, or as ordered lists when the
gold query has an ORDER BY. Column order is ignored by default: a query returning (name, age)
matches one returning (age, name); `column_order_matters=True` keeps the strict variant.
DISTINCT is not stripped (a query without it can return duplicates, a different multiset).

A gold result that is empty, or a lone 0/NULL, proves nothing (any query that finds nothing
matches it): such a match gets status "vacuous" and score 0, never a success.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import select
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from act.errors import InputError

STATUSES = ("ok", "mismatch", "error", "timeout", "vacuous")
FLOAT_DIGITS = 6
_PROGRESS_EVERY = 1000  # SQLite VM instructions between deadline checks
HARD_GRACE_S = 0.5  # a query still running this long past its limit has its worker killed
WORKER_MEMORY_BYTES = 2 * 1024**3  # address-space cap of the query worker
FETCH_BYTES = 32 * 1024**2  # Python-object bytes of the rows one query may return
REPLY_BYTES = 2 * FETCH_BYTES  # a pickled reply larger than this is refused unread
GOLD_CACHE_BYTES = 64 * 1024**2  # successful gold results kept for reuse, in all
_TRANSFER_GRACE_S = 5.0  # time to read a reply the worker has started sending
_MAX_COLUMN_PERMUTATIONS = 5000  # column mappings tried before a result is called a mismatch

LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: 1_000_000,  # bytes in one string, blob or row
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 100_000,
    sqlite3.SQLITE_LIMIT_COLUMN: 500,
    sqlite3.SQLITE_LIMIT_EXPR_DEPTH: 200,
    sqlite3.SQLITE_LIMIT_COMPOUND_SELECT: 50,
    sqlite3.SQLITE_LIMIT_VDBE_OP: 250_000,
    sqlite3.SQLITE_LIMIT_FUNCTION_ARG: 32,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 1000,
    sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER: 100,
    sqlite3.SQLITE_LIMIT_TRIGGER_DEPTH: 1,
    sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
}
_ALLOWED_ACTIONS = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})
DENIED_FUNCTIONS = frozenset({
    "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "zipfile", "sqlar_compress",
    "sqlar_uncompress", "lsmode", "shell_add_schema", "sqlite_dbpage",
})

_FENCE = re.compile(r"```(?:sql|sqlite)?\s*(.*?)```", re.IGNORECASE | re.DOTALL)
_START = re.compile(r"\b(select|with)\b", re.IGNORECASE)
_SQL_BEFORE = re.compile(r"\b(from|where|join|intersect|union|except|group\s+by|order\s+by|having|limit)\b",
                         re.IGNORECASE)
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


class DatabaseUnavailable(InputError):
    """The database file is missing or cannot be opened: a stage error, not a score."""


@dataclass(frozen=True)
class QueryResult:
    status: str
    """"ok" | "error" | "timeout"."""
    rows: tuple | None = None
    message: str = ""


@dataclass(frozen=True)
class MatchResult:
    status: str
    """"ok" (results match) | "mismatch" | "error" (predicted SQL failed) | "timeout" |
    "vacuous" (the gold result is empty or a lone 0/NULL, so a match proves nothing)."""
    score: float
    message: str = ""


# ------------------------------------------------------------------------------ extraction
_CLOSERS = {"'": "'", '"': '"', "`": "`", "[": "]"}


def _first_statement(sql: str) -> str:
    """`sql` up to its first `;` outside quotes, `[identifiers]` and comments (`/* ... */`,
    `-- ...`): only one statement ever runs, and a `;` inside a comment does not cut it."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in _CLOSERS:
            end = sql.find(_CLOSERS[ch], i + 1)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif sql.startswith("--", i):
            end = sql.find("\n", i + 2)
            i = n if end < 0 else end + 1
        elif ch == ";":
            return sql[:i]
        else:
            i += 1
    return sql


def extract_sql(text: str) -> str:
    """The SQL statement in a policy response: a fenced block if present, else the statement that
    starts at the first SELECT/WITH. If SQL clauses come before that keyword on its line (a
    misspelt first SELECT, "SELEC a FROM t INTERSECT SELECT ..."), the statement is the whole
    line, so it runs whole (and fails) rather than as its second half."""
    text = str(text or "")
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    start = _START.search(text)
    if start:
        line_start = text.rfind("\n", 0, start.start()) + 1
        begin = line_start if _SQL_BEFORE.search(text[line_start:start.start()]) else start.start()
        text = text[begin:]
    return _first_statement(text).strip()


# ------------------------------------------------------------------------------ execution
def _value(v):
    return round(v, FLOAT_DIGITS) if isinstance(v, float) else v


def _authorize(action: int, arg1, arg2, db_name, trigger) -> int:
    """Reading only: see the module docstring."""
    if action in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and str(arg2 or "").lower() not in DENIED_FUNCTIONS:
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _open(path: Path, timeout_s: float) -> sqlite3.Connection:
    """A sandboxed read-only connection; DatabaseUnavailable when it is no readable database."""
    if not path.is_file():
        raise DatabaseUnavailable(f"database {path}: no such file")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=timeout_s,
                               isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise DatabaseUnavailable(f"database {path}: cannot be opened ({e})") from None
    try:
        for limit, value in LIMITS.items():
            conn.setlimit(limit, value)
        (tables,) = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()
    except sqlite3.Error as e:
        conn.close()
        raise DatabaseUnavailable(f"database {path}: cannot be read ({e})") from None
    if not tables:
        conn.close()
        size = path.stat().st_size
        raise DatabaseUnavailable(f"database {path}: has no tables ({size} bytes; an empty or unfinished copy?)")
    conn.set_authorizer(_authorize)
    # A stray non-UTF-8 byte in a text cell must not make a correct query look broken.
    conn.text_factory = lambda b: b.decode("utf-8", errors="replace")
    return conn


def _row_bytes(row: tuple) -> int:
    """What a fetched row costs in memory: the tuple and each value (`sys.getsizeof`)."""
    return sys.getsizeof(row) + sum(sys.getsizeof(v) for v in row)


def _execute_here(path: Path, sql: str, timeout_s: float, row_limit: int,
                  byte_limit: int = FETCH_BYTES) -> QueryResult:
    """The query in this process (the sandbox worker calls this)."""
    conn = _open(path, timeout_s)
    if not sql.strip():
        conn.close()
        return QueryResult("error", message="empty query")
    deadline = time.monotonic() + timeout_s

    def past_deadline() -> int:
        return 1 if time.monotonic() > deadline else 0

    conn.set_progress_handler(past_deadline, _PROGRESS_EVERY)
    timer = threading.Timer(timeout_s, conn.interrupt)
    timer.daemon = True
    timer.start()
    try:
        rows, size = [], 0
        for row in conn.execute(sql):
            if len(rows) == row_limit:
                return QueryResult("error", message=f"more than {row_limit} rows")
            size += _row_bytes(row)
            if size > byte_limit:
                return QueryResult("error", message=f"result over {byte_limit} bytes (at row {len(rows) + 1})")
            rows.append(tuple(_value(v) for v in row))
        return QueryResult("ok", rows=tuple(rows))
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError, MemoryError) as e:
        if time.monotonic() > deadline:
            return QueryResult("timeout", message=f"over {timeout_s:g} s")
        return QueryResult("error", message=f"{type(e).__name__}: {e}")
    finally:
        timer.cancel()
        conn.close()


def execute(db_path: str | Path, sql: str, *, timeout_s: float = 5.0, row_limit: int = 100_000) -> QueryResult:
    """Run one query in the sandbox with a time and row limit. Bad SQL never raises (see the
    status); a database that cannot be opened raises DatabaseUnavailable. The query runs in a
    worker process that is killed if it overruns `timeout_s` by `HARD_GRACE_S`."""
    return _SANDBOX.run(Path(db_path), str(sql), float(timeout_s), int(row_limit))


_READY = b"ACT-SQL-WORKER-READY"
"""What a worker writes once it has started, so a worker that cannot start fails loudly and any
later death is one query's scored error."""


# ------------------------------------------------------------------------------ worker process
def _serve() -> None:
    """The worker: length-prefixed pickled requests on stdin, replies on stdout, until EOF."""
    import pickle
    import resource
    import sys

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(len(_READY).to_bytes(4, "big") + _READY)
    stdout.flush()
    while True:
        header = stdin.read(4)
        if len(header) < 4:
            return
        path, sql, timeout_s, row_limit = pickle.loads(stdin.read(int.from_bytes(header, "big")))
        stdout.write(_reply(path, sql, timeout_s, row_limit))
        stdout.flush()


def _reply(path: Path, sql: str, timeout_s: float, row_limit: int) -> bytes:
    """One query's length-prefixed pickled reply. Every failure, running the query or pickling
    its result (out of memory included), is a reply: the worker never dies of a query."""
    import pickle

    try:
        try:
            reply = ("result", _execute_here(path, sql, timeout_s, row_limit))
        except DatabaseUnavailable as e:
            reply = ("unavailable", str(e))
        data = pickle.dumps(reply)
    except MemoryError:
        data = pickle.dumps(("result", QueryResult("error", message="MemoryError: over the worker's memory limit")))
    except Exception as e:  # noqa: BLE001 - a scored error, never a dead worker
        data = pickle.dumps(("result", QueryResult("error", message=f"{type(e).__name__}: {str(e)[:200]}")))
    return len(data).to_bytes(4, "big") + data


class _Sandbox:
    """One long-lived worker process per client process, restarted after a kill or a crash."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._owner = 0
        self.kills = 0
        """Workers killed at the hard deadline (for tests and the reliability figures)."""

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None or self._owner != os.getpid():
            # the worker imports this very package, wherever it was imported from here
            package_root = str(Path(__file__).resolve().parents[2])
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}
            self._proc = subprocess.Popen(
                [sys.executable, "-c", "from act.metrics.sql import _serve; _serve()"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True, env=env, bufsize=0,
            )
            self._owner = os.getpid()
            ready = self._read_reply(time.monotonic() + 120.0)
            if ready != _READY:
                code = self._proc.poll()
                self._stop()
                # a worker that cannot even start (e.g. it cannot import act) is a setup error: loud
                raise RuntimeError(f"the SQL query worker failed to start ({sys.executable}, exit {code})")
        return self._proc

    def _read_exact(self, n: int, deadline: float) -> bytes | None:
        """`n` bytes of the worker's stdout, or None if it ends or `deadline` passes first."""
        fd = self._proc.stdout.fileno()
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _read_reply(self, deadline: float) -> bytes | None:
        """One length-prefixed reply, None if the worker died, stalled or sent over REPLY_BYTES."""
        header = self._read_exact(4, deadline)
        if header is None:
            return None
        size = int.from_bytes(header, "big")
        if size > REPLY_BYTES:
            return None
        return self._read_exact(size, deadline)

    def _stop(self) -> None:
        if self._proc is not None and self._owner == os.getpid():
            with contextlib.suppress(OSError):
                self._proc.kill()
            self._proc.wait()
        self._proc = None

    def run(self, path: Path, sql: str, timeout_s: float, row_limit: int) -> QueryResult:
        import pickle

        with self._lock:
            proc = self._start()
            data = pickle.dumps((path, sql, timeout_s, row_limit))
            try:
                proc.stdin.write(len(data).to_bytes(4, "big") + data)
                proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._stop()
                return QueryResult("error", message="the query worker was not running; retry")
            if not select.select([proc.stdout], [], [], timeout_s + HARD_GRACE_S)[0]:
                self._stop()
                self.kills += 1
                return QueryResult("timeout", message=f"over {timeout_s:g} s (worker stopped)")
            payload = self._read_reply(time.monotonic() + _TRANSFER_GRACE_S)  # the reply has begun
            if payload is None:
                code = proc.poll()
                self._stop()
                self.kills += code is None
                return QueryResult("error", message=f"the query worker died or sent no usable reply "
                                                    f"(exit {code}; result over {REPLY_BYTES} bytes or its memory limit?)")
            try:
                kind, value = pickle.loads(payload)
            except Exception as e:  # noqa: BLE001 - a garbled reply is one scored error
                self._stop()
                return QueryResult("error", message=f"unreadable reply from the query worker ({type(e).__name__})")
        if kind == "unavailable":
            raise DatabaseUnavailable(value)
        return value

    def close(self) -> None:
        with self._lock:
            self._stop()


_SANDBOX = _Sandbox()
atexit.register(_SANDBOX.close)


class _GoldCache:
    """Successful gold results, least recently used first out, `GOLD_CACHE_BYTES` in all.
    Training scores many samples against the same gold query: run it once. A failed gold run
    (a timeout under CPU starvation, say) is not kept: the next prediction runs it again."""

    def __init__(self, max_bytes: int = GOLD_CACHE_BYTES) -> None:
        self.max_bytes, self.bytes = max_bytes, 0
        self._entries: OrderedDict[tuple, tuple[QueryResult, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, db_path: str, sql: str, timeout_s: float, row_limit: int) -> QueryResult:
        key = (db_path, sql, timeout_s, row_limit)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][0]
        result = execute(db_path, sql, timeout_s=timeout_s, row_limit=row_limit)
        if result.status == "ok":
            size = sys.getsizeof(result.rows) + sum(_row_bytes(r) for r in result.rows)
            with self._lock:
                if size <= self.max_bytes and key not in self._entries:
                    self._entries[key] = (result, size)
                    self.bytes += size
                    while self.bytes > self.max_bytes:
                        _, (_, dropped) = self._entries.popitem(last=False)
                        self.bytes -= dropped
        return result

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0


_GOLD = _GoldCache()


def _gold(db_path: str, sql: str, timeout_s: float, row_limit: int) -> QueryResult:
    return _GOLD.get(db_path, sql, timeout_s, row_limit)


def is_vacuous(rows: Sequence[tuple]) -> bool:
    """An empty result or a lone 0/NULL: what a query that finds nothing returns."""
    return len(rows) == 0 or (len(rows) == 1 and len(rows[0]) == 1 and rows[0][0] in (0, None))


def execution_match(prediction: str, gold_sql: str, db_path: str | Path, *, timeout_s: float = 5.0,
                    row_limit: int = 100_000, column_order_matters: bool = False) -> MatchResult:
    """Execute predicted and gold SQL on `db_path` and compare their results (score 1 or 0)."""
    gold = _gold(str(Path(db_path).resolve()), gold_sql, float(timeout_s), int(row_limit))
    if gold.status != "ok":
        # A broken gold query is a data problem, not the policy's: still a 0, with the reason.
        return MatchResult("error", 0.0, f"gold query failed: {gold.message}")
    if is_vacuous(gold.rows):
        return MatchResult("vacuous", 0.0, "gold result is empty or a lone 0/NULL: a match proves nothing")
    pred_sql = extract_sql(prediction)
    pred = execute(db_path, pred_sql, timeout_s=timeout_s, row_limit=row_limit)
    if pred.status != "ok":
        return MatchResult(pred.status, 0.0, pred.message)
    same = same_rows(pred.rows, gold.rows, ordered=bool(_ORDER_BY.search(gold_sql)),
                     column_order_matters=column_order_matters)
    return MatchResult("ok", 1.0, "") if same else MatchResult("mismatch", 0.0, "")


# ------------------------------------------------------------------------------ comparison
def _rows_equal(a: Sequence[tuple], b: Sequence[tuple], ordered: bool) -> bool:
    return list(a) == list(b) if ordered else Counter(a) == Counter(b)


def same_rows(a: Sequence[tuple], b: Sequence[tuple], *, ordered: bool, column_order_matters: bool = True) -> bool:
    """Two results are the same answer: equal lists of rows when order matters, else equal
    multisets. Without `column_order_matters`, some reordering of `a`'s columns must make it equal
    to `b` (only columns holding the same multiset of values are tried against each other)."""
    a, b = [tuple(r) for r in a], [tuple(r) for r in b]
    if column_order_matters or not a or not b:
        return _rows_equal(a, b, ordered)
    width = len(b[0])
    if len(a) != len(b) or len(a[0]) != width or any(len(r) != width for r in a + b):
        return False
    a_cols = [Counter(r[i] for r in a) for i in range(width)]
    b_cols = [Counter(r[j] for r in b) for j in range(width)]
    candidates = [[i for i in range(width) if a_cols[i] == b_cols[j]] for j in range(width)]
    if any(not c for c in candidates):
        return False
    for tried, perm in enumerate(itertools.product(*candidates)):
        if tried >= _MAX_COLUMN_PERMUTATIONS:
            return False
        if len(set(perm)) != width:
            continue
        if _rows_equal([tuple(r[i] for i in perm) for r in a], b, ordered):
            return True
    return False
