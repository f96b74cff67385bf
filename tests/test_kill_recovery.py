"""A stage killed mid-run (real SIGKILL) and run again writes exactly what an uninterrupted run
writes, and leaves no temporary behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ingest(out: Path, metrics: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stages.ingest", "--dataset", "ambigsql", "--raw",
                             "data/raw/spider", "--out", str(out), "--metrics", str(metrics)], cwd=ROOT,
                            env={**os.environ, "ACT_TRACKING": "off"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _snapshot(out: Path, metrics: Path):
    from datasets import load_from_disk

    dd = load_from_disk(str(out))
    m = json.loads(metrics.read_text())
    m.pop("seconds", None)  # wall-clock figures live in the timings file, not the DVC metric
    return {name: dd[name].to_list() for name in dd}, m


def _kill_inside_the_write(out: Path, metrics: Path, tries: int = 5) -> None:
    """Start the stage and SIGKILL it once its temporary output (`.<out>.tmp-*`) exists: inside
    the write, whatever the machine's load (a fixed sleep missed it on a busy machine). A run that
    finishes between two polls is undone and started again."""
    for _ in range(tries):
        proc = _ingest(out, metrics)
        while proc.poll() is None:
            if any(p.name.startswith(f".{out.name}.tmp-") for p in out.parent.iterdir()):
                proc.send_signal(signal.SIGKILL)
                assert proc.wait() == -signal.SIGKILL
                return
            time.sleep(0.002)
        assert proc.returncode == 0
        shutil.rmtree(out, ignore_errors=True)
        metrics.unlink(missing_ok=True)
    raise AssertionError(f"the stage finished {tries} times before its temporary output was seen")


def test_ingest_killed_mid_run_then_rerun_matches_an_uninterrupted_run(tmp_path):
    assert _ingest(tmp_path / "clean", tmp_path / "clean.json").wait(timeout=300) == 0
    out, metrics = tmp_path / "out", tmp_path / "out.json"
    _kill_inside_the_write(out, metrics)
    assert not out.exists() or (out / "dataset_dict.json").exists()  # nothing half-written
    assert any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir())  # the killed writer's temporary
    assert _ingest(out, metrics).wait(timeout=300) == 0
    assert _snapshot(out, metrics) == _snapshot(tmp_path / "clean", tmp_path / "clean.json")
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".timings.json"))  # timings: untracked
    assert left == ["clean", "clean.json", "out", "out.json"]
