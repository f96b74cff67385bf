"""What a person sees of a flow run: its name (in the Prefect UI and on its MLflow parent run), its
lines on the terminal of `act run` / `act ablate`, and a heartbeat while a long stage runs.

Names tell runs apart at a glance: what ran (the targets, or the methods and seeds of a sweep),
with which method and seed, at which commit, e.g. `pipeline all stages · act seed 0 · 1a2b3c4`
or `ablations act, sft × seeds 0 1 2 · 1a2b3c4`. Prefect would otherwise call every run
something like "cheerful-otter", and MLflow every parent "pipeline".
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from act.progress import duration

HEARTBEAT_S = float(os.environ.get("ACT_HEARTBEAT_S", "60"))
"""Seconds between two "still running" lines of a stage that prints nothing on the terminal."""


def short_commit(root: str | Path) -> str:
    """The checkout's commit, 7 characters ("" outside git)."""
    from act.tracking import git_commit

    return git_commit(root)[:7]


def _seed_from(root: str | Path, params_file: str) -> Any:
    import yaml

    with contextlib.suppress(OSError, yaml.YAMLError, AttributeError):
        return (yaml.safe_load((Path(root) / params_file).read_text(encoding="utf-8")) or {}).get("seed")
    return None


def pipeline_name(root: str | Path = ".", params_file: str = "params.yaml", targets: Sequence[str] | None = None,
                  method: str | None = None, seed: Any = None) -> str:
    """`pipeline <targets> · <method> seed <seed> · <commit>` (the seed read from the params file
    when not given)."""
    what = ", ".join(targets) if targets else "all stages"
    method = method or os.environ.get("ACT_METHOD") or "act"
    seed = _seed_from(root, params_file) if seed is None else seed
    parts = [f"pipeline {what}", f"{method} seed {seed}", short_commit(root)]
    return " · ".join(p for p in parts if p)


def ablations_name(root: str | Path = ".", methods: Sequence[str] = (), seeds: Sequence[int] = ()) -> str:
    """`ablations <methods> × seeds <seeds> · <commit>`."""
    parts = [f"ablations {', '.join(methods)} × seeds {' '.join(map(str, seeds))}", short_commit(root)]
    return " · ".join(p for p in parts if p)


def _parameters() -> dict[str, Any]:
    from prefect.runtime import flow_run

    return dict(flow_run.parameters or {})


def pipeline_run_name() -> str:
    """`flow_run_name` of the pipeline flow: `pipeline_name` of the run's parameters."""
    p = _parameters()
    return pipeline_name(p.get("root", "."), p.get("params_file", "params.yaml"), p.get("targets"),
                         p.get("method"), p.get("seed"))


def ablations_run_name() -> str:
    """`flow_run_name` of the ablations flow: `ablations_name` of the run's parameters."""
    p = _parameters()
    return ablations_name(p.get("root", "."), list(p.get("methods") or ()), list(p.get("seeds") or ()))


DVC_HINTS = ("To track the changes with git, run:", "git add dvc.lock", "To enable auto staging, run:",
             "dvc config core.autostage true", "Use `dvc push` to send your updates to remote storage.")
"""What `dvc repro` tells a person at a terminal after every stage: noise in 15 task logs."""

_BAR = re.compile(r"\d+%\|.*\|\s*\d+/\d+ \[")  # a tqdm bar a library drew anyway


def log_noise(line: str) -> bool:
    """True for a line of a stage's output that a task log is better without: DVC's git hints,
    a progress bar."""
    text = line.strip()
    return text in DVC_HINTS or bool(_BAR.search(text))


def say(logger, line: str) -> None:
    """A progress line on the terminal (stdout, not through `print`, which a flow with
    log_prints sends to its logs) and in the flow run's logs."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
    logger.info(line)


def announce_flow_run(logger) -> None:
    """`flow run: <address in the Prefect UI>` on the terminal, when the server tells one."""
    try:
        from prefect.runtime import flow_run

        if flow_run.ui_url:
            say(logger, f"flow run: {flow_run.ui_url}")
    except Exception:  # noqa: BLE001 - no UI address known (an unusual server setup): nothing to show
        pass


@contextlib.contextmanager
def heartbeat(beat: Callable[[float], None], every: float = HEARTBEAT_S) -> Iterator[None]:
    """Call `beat(seconds since the start)` every `every` seconds until the block ends (from a
    daemon thread), so a long stage is not minutes of silence. `every` <= 0: never."""
    done = threading.Event()
    start = time.monotonic()

    def loop() -> None:
        while not done.wait(every):
            with contextlib.suppress(Exception):  # a heartbeat must never break the run
                beat(time.monotonic() - start)

    thread = threading.Thread(target=loop, name="act-heartbeat", daemon=True) if every > 0 else None
    if thread:
        thread.start()
    try:
        yield
    finally:
        done.set()
        if thread:
            thread.join(timeout=5)


def still_running(logger, name: str, every: float = HEARTBEAT_S):
    """The heartbeat of one stage (or experiment) `name` on the terminal, in the columns of the
    line that ends it: `train                    running       2m30s  (still going; its output: the task run's logs)`."""
    def beat(seconds: float) -> None:
        say(logger, f"{name:<24} {'running':<9} {duration(seconds):>9}  (still going; its output: the task run's logs)")

    return heartbeat(beat, every)
