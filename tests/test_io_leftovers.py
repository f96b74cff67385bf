"""Leftovers of a killed writer (`.<name>.tmp-<pid>-*`) are removed by the next writer; a live
writer's temporary is never touched. Kills are real SIGKILLs of a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from act.io import atomic_dir, atomic_file, clean_leftovers

_WRITER = textwrap.dedent("""
    import sys, time
    from act.io import atomic_dir
    with atomic_dir(sys.argv[1]) as tmp:
        (tmp / "adapter_model.safetensors").write_bytes(b"x" * 1000)
        print("inside", flush=True)
        time.sleep(60)
""")


def _writer(dest: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(dest)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "inside"
    return proc


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}."))


def test_killed_writers_leftover_is_cleaned_by_the_next_run(tmp_path):
    dest = tmp_path / "models" / "sft"
    proc = _writer(dest)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (left,) = _leftovers(dest)
    assert left.startswith(f".sft.tmp-{proc.pid}-") and not dest.exists()
    with atomic_dir(dest) as tmp:
        (tmp / "ok").write_text("done")
    assert _leftovers(dest) == [] and (dest / "ok").read_text() == "done"


def test_a_running_writers_temporary_is_left_alone(tmp_path):
    dest = tmp_path / "models" / "act"
    proc = _writer(dest)
    try:
        (left,) = _leftovers(dest)
        assert clean_leftovers(dest) == []
        with atomic_dir(dest) as tmp:
            (tmp / "ok").write_text("done")
        assert _leftovers(dest) == [left]  # still there: its writer is alive
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert [p.name for p in clean_leftovers(dest)] == [left]


def test_legacy_names_without_pid_go_only_when_old(tmp_path):
    dest = tmp_path / "metrics.json"
    fresh, old = tmp_path / ".metrics.json.tmp-abc123", tmp_path / ".metrics.json.tmp-zzz999"
    fresh.write_text("x")
    old.write_text("x")
    day_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (day_ago, day_ago))
    other = tmp_path / ".other.json.tmp-1-abc"
    other.write_text("x")
    with atomic_file(dest) as fh:
        fh.write("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".metrics.json.tmp-abc123", ".other.json.tmp-1-abc",
                                                         "metrics.json"]
