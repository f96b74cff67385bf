"""Which process of a multi-process launch this is (`accelerate launch`, torchrun), read from the
environment those launchers set, so asking costs no torch import.

Under a multi-process launch every process trains (DDP, DeepSpeed, FSDP), but only the main
process (rank 0) writes the stage's outputs, metrics, logs and MLflow run; the others write
into a scratch folder that is thrown away, then wait for the main process (`wait_for_everyone`).
A plain `python -m stages.<stage>` is a world of one: its only process is the main one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def process_index() -> int:
    """Global rank: 0 on the main process and in a plain run."""
    return int(os.environ.get("RANK", "0") or 0)


def is_main_process() -> bool:
    return process_index() == 0


def wait_for_everyone() -> None:
    """A barrier across the launch's processes (nothing to wait for in a world of one)."""
    if world_size() > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


@contextlib.contextmanager
def output_dir(path: str | os.PathLike) -> Iterator[Path]:
    """`act.io.atomic_dir(path)` on the main process; on the others a scratch folder beside it,
    removed afterwards (named like atomic_dir's temporaries, so one a kill left is cleaned up
    too), so they run the same code without touching the output."""
    from act.io import atomic_dir

    if is_main_process():
        with atomic_dir(path) as tmp:
            yield tmp
        return
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-rank{process_index()}-", dir=dest.parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
