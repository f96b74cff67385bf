"""Progress output, one policy for the whole project: a tqdm bar on a terminal, a plain log line
now and then off it (CI, `dvc repro` under `act run`, redirected logs), nothing with
ACT_PROGRESS=off.

    ACT_PROGRESS=auto (default) | bar | lines | off

    with progress(steps, "pretrain") as bar:
        for step in range(steps):
            ...
            bar.update(1, loss=f"{loss:.3f}")

`auto` means a bar when stderr is a terminal and CI is unset, lines otherwise. A line says where
the loop is, its rate and the time left: `pretrain 120/600 (20%) loss=3.210 | 2.10 step/s, 3m48s left`,
one per `every` of the total (10 %; never two within a second) or per 30 s, and one when the loop ends.
`quiet_libraries()` switches off the bars of `datasets` ("Saving the dataset") and the hub /
transformers ("Loading weights") wherever this module would not draw a bar itself.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

log = logging.getLogger("act.progress")

MODES = ("auto", "bar", "lines", "off")


def mode() -> str:
    """"bar", "lines" or "off", from ACT_PROGRESS (an unknown value is an error naming it)."""
    value = os.environ.get("ACT_PROGRESS", "auto").strip().lower() or "auto"
    if value in ("0", "false", "no", "none"):
        value = "off"
    if value not in MODES:
        raise ValueError(f"ACT_PROGRESS={value!r}: expected one of {', '.join(MODES)}")
    if value != "auto":
        return value
    if os.environ.get("CI") or not sys.stderr.isatty():
        return "lines"
    return "bar"


def bars() -> bool:
    """True when progress is drawn as bars (a terminal, or ACT_PROGRESS=bar)."""
    return mode() == "bar"


QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
"""The environment that keeps the hub, transformers ("Loading weights", "Writing model shards")
and `datasets` ("Saving the dataset") from drawing bars in a process started with it: what a
flow gives the stages it runs, whose output goes to a log, never a terminal."""

LIBRARY_WARNINGS = r"(transformers|trl|peft|accelerate|datasets|torch)(\..*)?$"
"""Modules whose FutureWarnings (deprecations inside the libraries, e.g. transformers'
`is_gradient_checkpointing`, that a user of this project cannot act on) are not shown off a terminal."""


def quiet_libraries() -> None:
    """Without bars, no `datasets` / hub / transformers bars either, and no FutureWarnings the
    libraries raise about themselves. Works before and after those libraries are imported: the
    hub's own switch (which transformers reads when it is imported, and `HF_HUB_DISABLE_PROGRESS_BARS`
    cannot change once the hub is imported), the environment for `datasets`, and the switches of
    whatever is imported already."""
    if bars():
        return
    import warnings

    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    warnings.filterwarnings("ignore", category=FutureWarning, module=LIBRARY_WARNINGS)
    try:
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:  # pragma: no cover - every model stage has the hub
        pass
    else:
        disable_progress_bars()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
    if "transformers" in sys.modules:
        import transformers

        transformers.utils.logging.disable_progress_bar()


def duration(seconds: float) -> str:
    """`45s`, `2m30s`, `1h05m`: progress lines and `act run`'s heartbeat (flows.display)."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """A counter towards `total` shown as the mode says. Use through `progress()`."""

    def __init__(self, total: int, desc: str, *, unit: str = "it", every: float = 0.1,
                 min_interval_s: float = 30.0, min_gap_s: float = 1.0, logger: logging.Logger | None = None):
        self.total, self.desc, self.unit = max(0, int(total)), desc, unit
        self.mode = mode()
        self.n = 0
        self.postfix: dict[str, Any] = {}
        self.logger = logger or log
        self._step = max(1, int(self.total * every)) if self.total else 1
        self._min_interval, self._min_gap = min_interval_s, min_gap_s
        self._start = time.monotonic()
        self._last_time = self._start
        self._last_n = 0
        self._bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total or None, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int = 1, **postfix: Any) -> None:
        self.n += n
        self.postfix.update(postfix)
        if self._bar is not None:
            if postfix:
                self._bar.set_postfix(self.postfix, refresh=False)
            self._bar.update(n)
        elif self.mode == "lines":
            now = time.monotonic()
            due = (self.n - self._last_n >= self._step and now - self._last_time >= self._min_gap
                   or now - self._last_time >= self._min_interval)
            if due:
                if self.n < self.total or not self.total:
                    self._line(now)

    def line(self, now: float | None = None) -> str:
        """The line `lines` mode prints: position, postfix, rate and time left."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        rate = self.n / elapsed
        where = f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        extra = " ".join(f"{k}={v}" for k, v in self.postfix.items())
        if self.total and self.n >= self.total:
            tail = f"done in {duration(elapsed)}"
        elif self.total and rate > 0:
            tail = f"{rate:.2f} {self.unit}/s, {duration((self.total - self.n) / rate)} left"
        else:
            tail = f"{rate:.2f} {self.unit}/s"
        return f"{self.desc} {where}{' ' + extra if extra else ''} | {tail}"

    def _line(self, now: float) -> None:
        self.logger.info(self.line(now))
        self._last_time, self._last_n = now, self.n

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "lines" and self.n != self._last_n:
            self._line(time.monotonic())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(total: int, desc: str, **kwargs: Any) -> Progress:
    """`with progress(n, "evaluate sft") as bar: ... bar.update(1)`; see `Progress`."""
    return Progress(total, desc, **kwargs)
