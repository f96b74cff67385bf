"""Checkpoint and resume of the training stages: a real SIGKILL mid-run, then a rerun that resumes
from the last checkpoint and ends where an uninterrupted run ends (same step count, adapter
shapes, and the same sampling rounds, each once); and the checkpoint key that keeps a changed
run from resuming a stale checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DB = ROOT / "data/raw/spider/database"

TINY = ["-S", "simulate.max_new_tokens=8"]


# ------------------------------------------------------------------ the key (fast)

def _key(tmp_path, **params):
    from act.training.checkpoints import run_key

    (tmp_path / "in").mkdir(exist_ok=True)
    return run_key({"stage": "x", **params}, [tmp_path / "in"])


def _fake_checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_model.safetensors").write_bytes(b"x")
    if complete:
        (ckpt / "trainer_state.json").write_text("{}")
    return ckpt


def test_same_key_resumes_from_the_last_complete_checkpoint(tmp_path):
    from act.training.checkpoints import prepare

    folder, key = tmp_path / "ck", _key(tmp_path, lr=1)
    assert prepare(folder, key) is None and (folder / "run_key.json").exists()
    _fake_checkpoint(folder, 2)
    cut = _fake_checkpoint(folder, 4, complete=False)  # killed while saving
    assert prepare(folder, _key(tmp_path, lr=1)) == folder / "checkpoint-2"
    assert not cut.exists()


def test_changed_params_or_inputs_start_fresh_and_say_so(tmp_path, caplog):
    from act.training.checkpoints import prepare

    folder = tmp_path / "ck"
    prepare(folder, _key(tmp_path, lr=1))
    _fake_checkpoint(folder, 2)
    with caplog.at_level("WARNING"):
        assert prepare(folder, _key(tmp_path, lr=2)) is None
    assert "starting fresh" in caplog.text and not (folder / "checkpoint-2").exists()
    _fake_checkpoint(folder, 2)
    (tmp_path / "in" / "data.txt").write_text("changed input")
    assert prepare(folder, _key(tmp_path, lr=2)) is None


def test_required_files_make_a_checkpoint_complete(tmp_path):
    from act.training.checkpoints import prepare

    folder, key = tmp_path / "ck", _key(tmp_path)
    prepare(folder, key)
    _fake_checkpoint(folder, 2)
    assert prepare(folder, key, required=["act_state.json"]) is None  # no sampler state: not resumable


def test_finish_removes_the_checkpoints_and_an_empty_parent(tmp_path):
    from act.training.checkpoints import finish

    _fake_checkpoint(tmp_path / "checkpoints" / "sft", 2)
    _fake_checkpoint(tmp_path / "checkpoints" / "train", 2)
    finish(tmp_path / "checkpoints" / "sft")
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["train"]  # another stage's stay
    finish(tmp_path / "checkpoints" / "train")
    assert not (tmp_path / "checkpoints").exists()


def test_save_steps_zero_saves_nothing():
    from act.training.progress import runtime_args

    assert runtime_args(seed=0, report_to="none")["save_strategy"] == "no"
    on = runtime_args(seed=0, report_to="none", save_steps=3)
    assert (on["save_strategy"], on["save_steps"], on["save_total_limit"]) == ("steps", 3, 1)


# ------------------------------------------------------------------ a real kill -9 (slow)

@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Annotated records, an embedded base model, an SFT adapter and Phase-1 pairs, all tiny."""
    from act.io import save_dataset
    from act.pairs import build_pairs
    from act.params import RolesParams, load_params
    from act.roles import build_role
    from stages import base, sft
    from tests.test_train import make_records

    d = tmp_path_factory.mktemp("resume")
    records = make_records()
    save_dataset(d / "annotate", {"train": [r.to_row() for r in records]})
    pairs, _ = build_pairs(records, build_role("rejecter", RolesParams()))
    save_dataset(d / "pairs", {"train": pairs, "eval": pairs[:4]})
    overrides = {"base.embedded": {"vocab_size": 400, "hidden_size": 32, "layers": 2, "heads": 2, "max_positions": 512,
                                   "block_size": 64, "batch_size": 4, "steps": 5, "learning_rate": 2e-3},
                 "sft.epochs": 1}
    params = load_params(ROOT / "params.yaml", overrides)
    base.run(params, data=d / "annotate", out=d / "base", metrics_path=d / "m" / "base.json")
    sft.run(params, base=d / "base", data=d / "annotate", out=d / "sft", metrics_path=d / "m" / "sft.json",
            checkpoint_dir=d / "unused")
    return d


def _stage(stage: str, d: Path, run: Path, extra: list[str]) -> list[str]:
    if stage == "train":
        args = ["--base", d / "base", "--sft", d / "sft", "--pairs", d / "pairs", "--simulated", d / "none",
                "--databases", DB, "--out", run / "act", "--log-dir", run / "log"]
    else:
        args = ["--base", d / "base", "--data", d / "annotate", "--out", run / "act"]
    return [sys.executable, "-m", "stages.launch", stage, *map(str, args), "--metrics", str(run / "metrics.json"),
            "--checkpoints", str(run / "ckpt"), *TINY, *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "ACT_TRACKING": "off", "PYTHONPATH": str(ROOT)}


def _adapter(path: Path) -> dict[str, tuple]:
    from safetensors import safe_open

    with safe_open(str(path / "adapter_model.safetensors"), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def _same_weights(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    x, y = load_file(str(a / "adapter_model.safetensors")), load_file(str(b / "adapter_model.safetensors"))
    return x.keys() == y.keys() and all(float((x[k] - y[k]).abs().max()) < 1e-5 for k in x)


def _kill_after_first_checkpoint(cmd: list[str], ckpt: Path, timeout: float = 600) -> int:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = sorted(ckpt.glob("checkpoint-*/trainer_state.json"))
            if done:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == -signal.SIGKILL, f"the run ended (exit {rc}) before it could be killed after its first checkpoint"
    return int(done[0].parent.name.split("-")[1])


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.slow
def test_train_killed_after_a_checkpoint_resumes_and_matches_an_uninterrupted_run(inputs, tmp_path):
    extra = ["-S", "train.max_steps=8", "-S", "train.batch_size=4", "-S", "train.save_steps=2"]
    clean = tmp_path / "clean"
    subprocess.run(_stage("train", inputs, clean, extra), cwd=ROOT, env=_env(), check=True, capture_output=True)
    assert not (clean / "ckpt").exists()  # removed once the outputs are written

    run = tmp_path / "killed"
    killed_at = _kill_after_first_checkpoint(_stage("train", inputs, run, extra), run / "ckpt")
    assert killed_at >= 2 and not (run / "act").exists()
    again = subprocess.run(_stage("train", inputs, run, extra), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stderr and f"resumed from step {killed_at}" in again.stderr

    a, b = json.loads((clean / "metrics.json").read_text()), json.loads((run / "metrics.json").read_text())
    assert b["steps"] == a["steps"] == 8 and b["sampling_rounds"] == a["sampling_rounds"] == 8
    assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-4)  # averaged over all 8 steps, not the last 6
    assert {k: v for k, v in b.items() if k.startswith("relabel/")} == {k: v for k, v in a.items() if k.startswith("relabel/")}
    assert _adapter(run / "act") == _adapter(clean / "act")
    assert _same_weights(run / "act", clean / "act")  # same data order, RNG and rounds: the same training
    # every round once, with the same rows as the uninterrupted run
    names = sorted(p.name for p in (run / "log" / "rounds").iterdir())
    assert names == sorted(p.name for p in (clean / "log" / "rounds").iterdir()) and len(names) == 8
    for name in names:
        rows = [(r["step"], r["row_index"]) for r in _lines(run / "log" / "rounds" / name)]
        assert rows == [(r["step"], r["row_index"]) for r in _lines(clean / "log" / "rounds" / name)]
    assert [e["step"] for e in _lines(run / "log" / "relabel.jsonl")] == list(range(8))
    steps = [h["step"] for h in _lines(run / "log" / "log.jsonl") if "loss" in h]
    assert steps == list(range(1, 9))
    assert not (run / "ckpt").exists()


@pytest.mark.slow
def test_sft_killed_after_a_checkpoint_resumes_with_the_same_steps(inputs, tmp_path):
    extra = ["-S", "sft.epochs=24", "-S", "sft.batch_size=4", "-S", "sft.save_steps=6"]
    clean = tmp_path / "clean"
    subprocess.run(_stage("sft", inputs, clean, extra), cwd=ROOT, env=_env(), check=True, capture_output=True)
    run = tmp_path / "killed"
    killed_at = _kill_after_first_checkpoint(_stage("sft", inputs, run, extra), run / "ckpt")
    again = subprocess.run(_stage("sft", inputs, run, extra), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resumed from step {killed_at}" in again.stderr
    a, b = json.loads((clean / "metrics.json").read_text()), json.loads((run / "metrics.json").read_text())
    assert b["steps"] == a["steps"] == 48
    assert _adapter(run / "act") == _adapter(clean / "act")
    assert _same_weights(run / "act", clean / "act")
    assert not (run / "ckpt").exists()


@pytest.mark.slow
def test_dvc_repro_after_kill_resumes_the_train_stage(inputs, tmp_path):
    """The acceptance path: `dvc repro` killed (SIGKILL to its whole process group) after the train
    stage's first checkpoint; a second `dvc repro` resumes from it instead of step 0, because the
    checkpoint folder lies outside the outs DVC cleans."""
    import shutil

    p = tmp_path / "proj"
    p.mkdir()
    for name in ("base", "sft", "pairs"):
        shutil.copytree(inputs / name, p / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["train"].update(max_steps=8, batch_size=4, save_steps=2)
    params["simulate"]["max_new_tokens"] = 8
    (p / "params.yaml").write_text(yaml.safe_dump(params))
    cmd = (f"python -m stages.launch train --base base --sft sft --pairs pairs --simulated none --databases {DB} "
           "--out models/act --log-dir data/train --metrics metrics/train.json")
    (p / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": {
        "cmd": cmd, "deps": ["base", "sft", "pairs"], "params": ["seed", "train", "simulate", "launch"],
        "outs": ["models/act", "data/train"], "metrics": [{"metrics/train.json": {"cache": False}}]}}}))
    (p / ".gitignore").write_text("checkpoints/\nmetrics/timings/\n")
    env = {**_env(), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for c in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(c, cwd=p, check=True, env=env)
    repro = [sys.executable, "-m", "dvc", "repro", "train"]
    proc = subprocess.Popen(repro, cwd=p, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline, killed_at = time.monotonic() + 600, None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = sorted(p.glob("checkpoints/train/checkpoint-*/trainer_state.json"))
            if done:
                os.killpg(proc.pid, signal.SIGKILL)
                killed_at = int(done[0].parent.name.split("-")[1])
                break
            time.sleep(0.02)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert killed_at is not None, f"dvc repro ended (exit {proc.returncode}) before its first checkpoint"
    again = subprocess.run(repro, cwd=p, env=env, capture_output=True, text=True)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    out = again.stdout + again.stderr
    assert f"resuming from checkpoints/train/checkpoint-{killed_at}" in out and f"resumed from step {killed_at}" in out
    m = json.loads((p / "metrics" / "train.json").read_text())
    assert m["steps"] == 8 and m["sampling_rounds"] == 8
    assert len(list((p / "data" / "train" / "rounds").iterdir())) == 8
    assert not (p / "checkpoints" / "train").exists()
