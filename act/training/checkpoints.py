"""Checkpoints that survive a crash or kill -9, and resuming from them only when they still fit.

A stage that trains (sft, train) saves the Trainer's checkpoint every `save_steps` optimizer
steps into its own folder, `checkpoints/<stage>/` by default: outside the stage's DVC outs, so
DVC's clean-before-run leaves it alone (and gitignored). Each checkpoint is the Trainer's
`checkpoint-<step>/` (adapter, optimizer, scheduler, RNG states, trainer state; ACT adds its
sampler state) and only the last complete one is kept.

Beside them lies `run_key.json`: a hash of what decides the run (the stage's params, seed and
dataset, the number of processes, and the content of its inputs). A rerun with the same key
resumes from the last complete checkpoint; any other key means the checkpoints belong to another
run: they are removed and training starts fresh, saying so. A checkpoint is complete once the
Trainer wrote its `trainer_state.json` (the last file it writes); one cut short by a kill is
skipped and removed. The folder is removed when the stage succeeds.

Input fingerprints hash every file's content, except files over `FULL_HASH_LIMIT` (a 7B model's
weights), for which size, first and last MiB stand in: re-hashing 14 GB on every run would cost
more than it protects against.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

KEY_FILE = "run_key.json"
STATE_FILE = "trainer_state.json"
FULL_HASH_LIMIT = 64 * 2**20
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _file_digest(path: Path, h) -> None:
    size = path.stat().st_size
    h.update(f"{size}\0".encode())
    with path.open("rb") as fh:
        if size <= FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(2**20), b""):
                h.update(block)
        else:
            h.update(fh.read(2**20))
            fh.seek(size - 2**20)
            h.update(fh.read(2**20))


def fingerprint(paths: Iterable[str | os.PathLike]) -> str:
    """One hash over the content of files and directories (relative names included, order fixed)."""
    h = hashlib.sha256()
    for p in map(Path, paths):
        h.update(f"{p.as_posix()}\0".encode())
        if p.is_file():
            _file_digest(p, h)
        elif p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                h.update(f"{f.relative_to(p).as_posix()}\0".encode())
                _file_digest(f, h)
        else:
            h.update(b"<missing>")
    return h.hexdigest()


def run_key(described: dict[str, Any], inputs: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """{"key": hash, "params": described, "inputs": fingerprint}: what a checkpoint must match."""
    from act.tracking import flatten

    plain = {k: v for k, v in flatten(described).items()}
    inputs_hash = fingerprint(inputs)
    key = hashlib.sha256(json.dumps({"params": plain, "inputs": inputs_hash}, sort_keys=True, default=str)
                         .encode()).hexdigest()[:16]
    return {"key": key, "params": plain, "inputs": inputs_hash}


def checkpoint_dirs(folder: str | os.PathLike) -> list[Path]:
    """`checkpoint-<step>` folders, newest (highest step) first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def is_complete(checkpoint: Path, required: Iterable[str] = ()) -> bool:
    return (checkpoint / STATE_FILE).is_file() and all((checkpoint / r).is_file() for r in required)


def prepare(folder: str | os.PathLike, key: dict[str, Any], *, required: Iterable[str] = ()) -> Path | None:
    """The checkpoint to resume from, or None to start fresh. Removes checkpoints of another run
    (key mismatch, saying why) and incomplete ones, and records `key`. Call on the main process
    first (others then find the folder settled)."""
    folder = Path(folder)
    required = tuple(required)
    key_path = folder / KEY_FILE
    if folder.exists():
        try:
            old = json.loads(key_path.read_text(encoding="utf-8")).get("key")
        except (OSError, ValueError, AttributeError):
            old = None
        if old != key["key"]:
            if checkpoint_dirs(folder):
                log.warning("%s: checkpoints of another run (key %s, this run %s: params or inputs changed); "
                            "starting fresh", folder, old, key["key"])
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not key_path.exists():
        tmp = key_path.with_name(f".{KEY_FILE}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(key, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, key_path)
    for ckpt in checkpoint_dirs(folder):
        if is_complete(ckpt, required):
            step = int(_CHECKPOINT.match(ckpt.name).group(1))
            log.info("resuming from %s (step %d)", ckpt, step)
            return ckpt
        log.warning("%s is incomplete (cut short while saving): removed", ckpt)
        shutil.rmtree(ckpt, ignore_errors=True)
    return None


def resumed_step(checkpoint: Path | None) -> int:
    return int(_CHECKPOINT.match(checkpoint.name).group(1)) if checkpoint is not None else 0


def finish(folder: str | os.PathLike) -> None:
    """The run succeeded and its outputs are written: its checkpoints are no longer needed (nor the
    `checkpoints/` folder above them, once empty)."""
    shutil.rmtree(folder, ignore_errors=True)
    try:
        Path(folder).parent.rmdir()
    except OSError:  # other stages' checkpoints are there, or it is not ours to remove
        pass
