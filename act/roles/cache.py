"""A persistent cache of model calls, so a re-run or a crash never pays for the same call twice.

One SQLite file (`<roles.cache_dir>/calls.sqlite`) maps a key, the SHA-256 of (role, model,
messages, decoding params), to the reply and its token counts. Each reply is committed as soon
as it arrives, so calls finished before a crash stay paid for. Credentials are never part of a
key or a row: the API key lives only in the request header. A cache file SQLite cannot read (a
truncated copy, another file at that path) stops the stage with an `InputError` naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from act.errors import InputError
from act.roles.base import UsageCounter


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


def call_key(role: str, model: str, messages: Sequence[dict], decoding: dict[str, Any]) -> str:
    blob = json.dumps(
        {"role": role, "model": model, "messages": list(messages), "decoding": decoding},
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CallCache:
    """Thread-safe; several processes may share the file (SQLite locking, generous timeout)."""

    FILE = "calls.sqlite"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise self._error("cannot open", e) from None
        with self._guard("cannot read"), self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, role TEXT, model TEXT, "
                "reply TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER, created REAL)"
            )
            self._db.execute("SELECT reply, prompt_tokens, completion_tokens FROM calls LIMIT 1").fetchall()

    def _error(self, what: str, e: BaseException) -> InputError:
        hint = ("; move it aside to start an empty cache (its replies would be paid for again)"
                if isinstance(e, sqlite3.DatabaseError) and not isinstance(e, sqlite3.OperationalError) else "")
        return InputError(f"{self.path}: {what} the call cache (roles.cache_dir): {type(e).__name__}: {e}{hint}")

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Runs a statement under the lock; an SQLite error becomes an `InputError` naming the file."""
        with self._lock:
            try:
                yield
            except sqlite3.Error as e:
                raise self._error(what, e) from None

    @classmethod
    def open(cls, cache_dir: str | Path) -> "CallCache":
        return cls(Path(cache_dir).expanduser() / cls.FILE)  # "~/x" is the home folder, not ./~

    def get(self, key: str) -> Completion | None:
        with self._guard("cannot read"):
            row = self._db.execute(
                "SELECT reply, prompt_tokens, completion_tokens FROM calls WHERE key = ?", (key,)
            ).fetchone()
        return Completion(row[0], row[1] or 0, row[2] or 0) if row else None

    def put(self, key: str, role: str, model: str, completion: Completion) -> None:
        with self._guard("cannot store a reply in"), self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, role, model, completion.text, completion.prompt_tokens,
                 completion.completion_tokens, time.time()),
            )

    def __len__(self) -> int:
        with self._guard("cannot read"):
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def complete_through_cache(
    cache: CallCache | None,
    keys: Sequence[str],
    compute: Callable[[list[int], Callable[[int, Completion], None]], None],
    *,
    role: str,
    model: str,
    usage: UsageCounter,
) -> list[str]:
    """Replies for all `keys`: cached ones from `cache`; for the others `compute(missing,
    store)` runs and calls `store(index, completion)` as each reply arrives (from any thread),
    which saves it at once and counts its call and tokens in `usage` (hits count as cache_hits)."""
    out: list[str | None] = [None] * len(keys)
    missing: list[int] = []
    first_of: dict[str, int] = {}
    for i, key in enumerate(keys):
        hit = cache.get(key) if cache is not None else None
        if hit is not None:
            out[i] = hit.text
            usage.cache_hits += 1
        elif key not in first_of:  # the same call twice in one batch is paid once
            first_of[key] = i
            missing.append(i)
    lock = threading.Lock()

    def store(i: int, completion: Completion) -> None:
        if cache is not None:
            cache.put(keys[i], role, model, completion)
        with lock:
            out[i] = completion.text
            usage.calls += 1
            usage.prompt_tokens += completion.prompt_tokens
            usage.completion_tokens += completion.completion_tokens

    if missing:
        compute(missing, store)
    for i, key in enumerate(keys):
        if out[i] is None:
            if first_of.get(key) == i:
                raise RuntimeError(f"{role}: no reply was produced for call {i}")
            out[i] = out[first_of[key]]
            usage.cache_hits += 1
    return [o or "" for o in out]
