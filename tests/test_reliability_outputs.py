"""Issue 23, items 1, 5 and 12: a stage replaces only its own output (never a user's folder, a
file, the current directory), and an empty split is refused naming the split and its cause."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from act.errors import InputError
from act.io import OUTPUT_MARKER, atomic_dir

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "ACT_TRACKING": "off", "HF_DATASETS_OFFLINE": "1"}


def _ingest(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.ingest", "--params", str(ROOT / "params.yaml"), *args],
                          cwd=cwd, env=ENV, capture_output=True, text=True, timeout=600)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_out_naming_the_folder_of_the_input_corpus_deletes_nothing(tmp_path):
    """The issue's command: `--out d` where d holds the corpus. It used to replace d (exit 0)."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "corpus.jsonl").write_bytes((FIX / "custom.jsonl").read_bytes())
    (d / "notes.txt").write_text("my notes")
    before = _tree(d)
    out = _ingest(tmp_path, "--dataset", "custom", "--raw", "d/corpus.jsonl", "--out", "d", "--metrics", "m.json")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: output d:") and "refusing to replace" in lines[0]
    assert _tree(d) == before and _leftovers(tmp_path) == []


def test_a_stage_replaces_its_own_previous_output(tmp_path):
    args = ("--dataset", "custom", "--raw", str(FIX / "custom.jsonl"), "--out", "work/ingest", "--metrics", "m.json")
    first = _ingest(tmp_path, *args)
    assert first.returncode == 0, first.stderr[-2000:]
    out = tmp_path / "work" / "ingest"
    assert (out / OUTPUT_MARKER).is_file() and (out / "dataset_dict.json").is_file()
    before = _tree(out)
    second = _ingest(tmp_path, *args)
    assert second.returncode == 0, second.stderr[-2000:]
    assert _tree(out) == before and _leftovers(out.parent) == []


def test_a_typo_naming_a_parent_folder_is_refused(tmp_path):
    """`--out work` for `--out work/ingest`: work holds other stages' outputs and the user's files."""
    with atomic_dir(tmp_path / "work" / "ingest") as tmp:
        (tmp / "x").write_text("1")
    (tmp_path / "work" / "mine.txt").write_text("keep")
    before = _tree(tmp_path / "work")
    with pytest.raises(InputError, match=r"output .*work: a directory that no act stage wrote"):
        with atomic_dir(tmp_path / "work") as tmp:
            (tmp / "y").write_text("2")
    assert _tree(tmp_path / "work") == before and _leftovers(tmp_path) == []


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_a_file_or_a_link_at_out_is_refused(tmp_path, kind):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "data.bin").write_bytes(b"\x00" * 10)
    dest = tmp_path / "out"
    if kind == "file":
        dest.write_text("user file")
    else:
        dest.symlink_to(target)
    with pytest.raises(InputError, match=rf"output {dest}: a (file|symbolic link)"):
        with atomic_dir(dest) as tmp:
            (tmp / "y").write_text("2")
    assert (dest.read_text() == "user file") if kind == "file" else dest.is_symlink()
    assert (target / "data.bin").read_bytes() == b"\x00" * 10 and _leftovers(tmp_path) == []


def test_out_dot_is_refused_and_leaves_no_temporary(tmp_path, monkeypatch):
    """`--out .` used to leave a `..tmp-*` folder behind that cleanup never matched."""
    (tmp_path / "corpus.jsonl").write_text("{}")
    monkeypatch.chdir(tmp_path)
    for out in (".", "./", str(tmp_path), ".."):
        with pytest.raises(InputError, match="current directory"):
            with atomic_dir(out) as tmp:
                (tmp / "y").write_text("2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl"]
    assert _leftovers(tmp_path.parent) == []


def test_an_empty_directory_is_nothing_and_may_be_written(tmp_path):
    (tmp_path / "out").mkdir()
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "y").write_text("2")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [OUTPUT_MARKER, "y"]


def test_an_output_from_before_the_marker_is_replaced_when_dvc_lock_records_it(tmp_path):
    """Outputs committed before markers existed (dvc checkout restores them unmarked) stay
    replaceable: dvc.lock names them as a stage's outs. An unlisted sibling is not."""
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  ingest@x:\n    cmd: python -m stages.ingest\n    outs:\n"
        "    - path: data/ingest/x\n      md5: 0.dir\n")
    old = tmp_path / "data" / "ingest" / "x"
    old.mkdir(parents=True)
    (old / "dataset_dict.json").write_text("{}")
    other = tmp_path / "data" / "ingest" / "y"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with atomic_dir(old) as tmp:
        (tmp / "new").write_text("1")
    assert sorted(p.name for p in old.iterdir()) == [OUTPUT_MARKER, "new"]
    with pytest.raises(InputError, match="no act stage wrote"):
        with atomic_dir(other) as tmp:
            (tmp / "new").write_text("1")
    assert (other / "mine.txt").read_text() == "keep"


def test_committed_dag_outputs_count_as_owned():
    """Every out in the committed dvc.lock is replaceable by its stage (a fresh clone's
    `dvc repro` and a manual rerun over a `dvc checkout` both work)."""
    import yaml

    from act.io import _lock_outs

    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    outs = {ROOT / o["path"] for s in lock["stages"].values() for o in s.get("outs", [])}
    assert {ROOT / "models" / "sft", ROOT / "data" / "ingest" / "ambigsql"} <= outs
    assert _lock_outs(ROOT / "models") == outs


# ------------------------------------------------------------------------------ empty splits
def _corpus(tmp_path: Path, groups: list[str]) -> Path:
    lines = []
    for i, g in enumerate(groups):
        lines.append(json.dumps({"id": f"c{i}", "context": "Sales: 914.", "group": g, "messages": [
            {"role": "user", "content": f"What were sales, item {i}?"}, {"role": "assistant", "content": "914"}]}))
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("groups, sets, expected", [
    (["only"], [], r"the eval split would be empty: every labeled conversation shares one `group` value"),
    (["a", "a", "a"], [], r"the eval split would be empty: every labeled conversation shares one `group` value"),
    (["a", "b", "c"], ["-S", "ingest.custom.eval_conversations=0"],
     r"the eval split would be empty: ingest.custom.eval_conversations is 0"),
])
def test_an_empty_split_is_refused_naming_the_split_and_its_cause(tmp_path, groups, sets, expected):
    """It used to be saved as a dataset without columns; annotate then failed with IndexError."""
    raw = _corpus(tmp_path, groups)
    out = _ingest(tmp_path, "--dataset", "custom", "--raw", str(raw), "--out", "ingest", "--metrics", "m.json", *sets)
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("error: ingest custom: ") and re.search(expected, line), line
    assert not (tmp_path / "ingest").exists() and not (tmp_path / "m.json").exists()
