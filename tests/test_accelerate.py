"""The training stages under `accelerate launch`: the shipped configs parse, the launcher builds
the right command from params, and two CPU processes (gloo) run the sft and the off-policy train
stage with outputs, metrics and one MLflow run written once, and the optimizer step count of a
single process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs" / "accelerate").glob("*.yaml"))
DB = ROOT / "data/raw/spider/database"


def test_every_named_config_is_shipped():
    assert {p.stem for p in CONFIGS} >= {"single_gpu", "multi_gpu_ddp", "deepspeed_zero2", "deepspeed_zero3", "fsdp",
                                         "cpu_multi_process"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_as_accelerate_reads_it(path):
    """accelerate's own loader accepts it (unknown top-level keys raise there), and every DeepSpeed
    and FSDP key is an option `accelerate launch` knows. DeepSpeed itself is not installed:
    its configs are checked this way only."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    config = load_config_from_file(str(path))
    options = {o.lstrip("-") for a in launch_command_parser()._actions for o in a.option_strings}
    unknown = [k for k in [*config.deepspeed_config, *config.fsdp_config] if k not in options]
    assert not unknown, f"{path.name}: keys accelerate launch does not know: {unknown}"
    assert config.num_processes >= 1
    expected = {"single_gpu": "NO", "multi_gpu_ddp": "MULTI_GPU", "cpu_multi_process": "MULTI_GPU",
                "deepspeed_zero2": "DEEPSPEED", "deepspeed_zero3": "DEEPSPEED", "fsdp": "FSDP"}
    assert config.distributed_type.value == expected[path.stem]
    if path.stem.startswith("deepspeed"):
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])


def test_launcher_plain_and_through_accelerate(tmp_path):
    from act.errors import InputError
    from stages.launch import command

    assert command("sft", ["--out", "x"], "") == [sys.executable, "-m", "stages.sft", "--out", "x"]
    cfg = ROOT / "configs/accelerate/multi_gpu_ddp.yaml"
    cmd = command("train", ["--out", "x"], str(cfg), 4)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[3:] == ["--config_file", str(cfg), "--num_processes", "4", "-m", "stages.train", "--out", "x"]
    assert "--num_processes" not in command("train", [], str(cfg), 0)
    with pytest.raises(InputError, match="launch.accelerate_config: .*nope.yaml does not exist"):
        command("sft", [], str(tmp_path / "nope.yaml"))
    with pytest.raises(InputError, match="unknown stage 'evaluate'"):
        command("evaluate", [], "")


def test_launcher_reads_params_and_overrides(tmp_path):
    """`python -m stages.launch` with a missing config named by -S fails before starting anything."""
    proc = subprocess.run([sys.executable, "-m", "stages.launch", "sft", "--out", "x", "-S",
                           f"launch.accelerate_config={tmp_path / 'missing.yaml'}"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "ACT_TRACKING": "off"})
    assert proc.returncode == 1 and "launch.accelerate_config" in proc.stderr and "missing.yaml" in proc.stderr


def test_dvc_tracks_the_launch_params_of_the_training_stages():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("sft", "train"):
        assert stages[name]["cmd"].startswith(f"python -m stages.launch {name} ")
        assert "launch" in stages[name]["params"]


def test_non_main_processes_write_nothing(tmp_path, monkeypatch):
    """Rank 1 of a launch: its output folder is scratch, the metrics epilogue writes no file, and
    tracking is off."""
    from act import distributed
    from act.params import Params
    from act.tracking import NullRun, tracking_enabled

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("ACT_TRACKING", "on")
    with distributed.output_dir(tmp_path / "out") as tmp:
        (tmp / "adapter").write_text("x")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
    assert NullRun().finish({"a": 1}, tmp_path / "metrics.json", started=0.0)["a"] == 1
    assert not (tmp_path / "metrics.json").exists() and not tracking_enabled(Params())
    monkeypatch.setenv("RANK", "0")
    with distributed.output_dir(tmp_path / "out") as tmp:
        (tmp / "adapter").write_text("x")
    assert (tmp_path / "out" / "adapter").exists()


# ------------------------------------------------------------------ two CPU processes (slow)

@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from act.io import save_dataset
    from act.pairs import build_pairs
    from act.params import RolesParams, load_params
    from act.roles import build_role
    from stages import base
    from tests.test_train import make_records

    d = tmp_path_factory.mktemp("accel")
    records = make_records(16)
    save_dataset(d / "annotate", {"train": [r.to_row() for r in records]})
    pairs, _ = build_pairs(records, build_role("rejecter", RolesParams()))
    save_dataset(d / "pairs", {"train": pairs, "eval": pairs[:4]})
    params = load_params(ROOT / "params.yaml", {"base.embedded": {
        "vocab_size": 400, "hidden_size": 32, "layers": 2, "heads": 2, "max_positions": 512, "block_size": 64,
        "batch_size": 4, "steps": 5, "learning_rate": 2e-3}})
    base.run(params, data=d / "annotate", out=d / "base", metrics_path=d / "m" / "base.json")
    return d


def _run(stage: str, d: Path, run: Path, extra: list[str], env: dict[str, str] | None = None):
    if stage == "sft":
        args = ["--base", d / "base", "--data", d / "annotate", "--out", run / "out"]
    else:
        args = ["--base", d / "base", "--sft", d / "sft1" / "out", "--pairs", d / "pairs", "--simulated", d / "none",
                "--databases", DB, "--out", run / "out", "--log-dir", run / "log"]
    cmd = [sys.executable, "-m", "stages.launch", stage, *map(str, args), "--metrics", str(run / "metrics.json"),
           "--checkpoints", str(run / "ckpt"), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "ACT_TRACKING": "off", "PYTHONPATH": str(ROOT), **(env or {})})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((run / "metrics.json").read_text()), proc.stderr


TWO = ["-S", f"launch.accelerate_config={ROOT / 'configs/accelerate/cpu_multi_process.yaml'}", "-S", "launch.num_processes=2"]


@pytest.mark.slow
def test_two_cpu_processes_train_like_one_with_the_same_global_batch(inputs, tmp_path):
    from mlflow.tracking import MlflowClient

    sft_args = ["-S", "sft.epochs=2", "-S", "sft.save_steps=2"]
    one, _ = _run("sft", inputs, inputs / "sft1", [*sft_args, "-S", "sft.batch_size=8"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    two, log = _run("sft", inputs, tmp_path / "sft2", [*sft_args, "-S", "sft.batch_size=4", *TWO],
                    env={"ACT_TRACKING": "on", "MLFLOW_TRACKING_URI": uri})
    assert one["steps"] == two["steps"] == 4  # 16 conversations, global batch 8, 2 epochs
    assert two["examples"] == one["examples"] == 16
    assert log.count("act.sft: sft:") == 1  # one process logs the result
    assert sorted(p.name for p in (tmp_path / "sft2").iterdir()) == ["metrics.json", "metrics.timings.json", "out"]  # no scratch, no ckpt
    runs = MlflowClient(uri).search_runs([e.experiment_id for e in MlflowClient(uri).search_experiments()])
    assert [r.data.tags["act.stage"] for r in runs] == ["sft"]  # one MLflow run, from the main process

    train_args = ["-S", "train.on_policy=false", "-S", "train.save_steps=2", "-S", "train.probe_every=0"]
    one, _ = _run("train", inputs, tmp_path / "train1", [*train_args, "-S", "train.batch_size=4"])
    two, log = _run("train", inputs, tmp_path / "train2", [*train_args, "-S", "train.batch_size=2", *TWO])
    assert one["steps"] == two["steps"] == 4 and two["pairs"] == one["pairs"] == 16
    assert log.count("act.train: train:") == 1
    assert {p.name for p in (tmp_path / "train2" / "log").iterdir()} == {".act-output", "log.jsonl", "probe.jsonl", "relabel.jsonl", "rounds"}
    steps = [json.loads(x)["step"] for x in (tmp_path / "train2" / "log" / "log.jsonl").read_text().splitlines()
             if "loss" in json.loads(x)]
    assert steps == [1, 2, 3, 4]  # each step logged once
