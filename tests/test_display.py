"""What a person sees of a flow run: names that tell runs apart, the heartbeat of a long stage,
and a parent MLflow run holding only the headline metrics."""

from __future__ import annotations

import subprocess
import threading
import time

from flows.display import ablations_name, heartbeat, pipeline_name, still_running


def _repo(tmp_path, seed: int = 7):
    (tmp_path / "params.yaml").write_text(f"seed: {seed}\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"],
                   cwd=tmp_path, check=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()


def test_pipeline_and_sweep_names_say_what_ran(tmp_path, monkeypatch):
    monkeypatch.delenv("ACT_METHOD", raising=False)
    commit = _repo(tmp_path)
    assert pipeline_name(tmp_path) == f"pipeline all stages · act seed 7 · {commit[:7]}"
    assert pipeline_name(tmp_path, targets=["pairs", "train"], method="sft", seed=2) == \
        f"pipeline pairs, train · sft seed 2 · {commit[:7]}"
    assert ablations_name(tmp_path, ["act", "sft"], [0, 1, 2]) == f"ablations act, sft × seeds 0 1 2 · {commit[:7]}"


def test_heartbeat_beats_while_the_block_runs_and_stops_after(capsys):
    beats: list[float] = []
    two = threading.Event()

    def beat(seconds: float) -> None:
        beats.append(seconds)
        if len(beats) >= 2:
            two.set()

    with heartbeat(beat, every=0.05):
        assert two.wait(60), "no heartbeat within 60 s"
    n = len(beats)
    time.sleep(0.3)
    assert len(beats) == n  # stopped with the block
    assert beats == sorted(beats) and beats[0] > 0


def test_still_running_prints_the_stage_line(capsys):
    import logging

    logged: list[str] = []
    logger = logging.getLogger("test-display")
    logger.addHandler(handler := logging.Handler())
    handler.emit = lambda record: logged.append(record.getMessage())
    logger.setLevel(logging.INFO)
    deadline = time.time() + 60
    with still_running(logger, "train", every=0.05):
        while not logged and time.time() < deadline:
            time.sleep(0.01)
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("train ") and " running " in line and "still going" in line
    assert logged[0] == line


def test_parent_logs_only_headline_metrics():
    from act.metrics.summary import HEADLINE_KEYS
    from flows.pipeline import headline_metrics

    metrics = {
        "annotate/ambigsql": {"agreement": 1.0, "labels": {"clarify": 1.0}},
        "train": {"train_loss": 0.3},
        "evaluate": {"act": {"action": {"macro_f1": 0.5, "informedness": -0.25, "confusion": {"a": 3}},
                             "trajectory": {"score": 0.1, "n": 40}},
                     "sft": {"action": {"macro_f1": 0.4}}, "note": "x"},
    }
    got = headline_metrics(metrics)
    assert got == {"act/action.macro_f1": 0.5, "act/action.informedness": -0.25, "act/trajectory.score": 0.1,
                   "sft/action.macro_f1": 0.4}
    assert all(k.partition("/")[2] in HEADLINE_KEYS for k in got)
