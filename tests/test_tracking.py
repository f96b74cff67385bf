"""act.tracking: the stage epilogue (DVC metric without wall-clock figures, timings file, MLflow),
secret redaction, and runs that end KILLED when their process is terminated or gone."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from act.params import Params
from act.tracking import NullRun, is_timing, redact, split_timings, stage_run, timings_path

ROOT = Path(__file__).resolve().parents[1]


def test_timings_are_split_out_with_their_nesting():
    metrics = {"steps": 4, "seconds": 1.5, "pretrain_tokens_per_s": 900.0, "train_seconds": 1.0,
               "usage": {"calls": 3, "seconds": 0.2}, "relabel/answer_success": 2, "on_policy_sampling": True}
    tracked, timings = split_timings(metrics)
    assert tracked == {"steps": 4, "usage": {"calls": 3}, "relabel/answer_success": 2, "on_policy_sampling": True}
    assert timings == {"seconds": 1.5, "pretrain_tokens_per_s": 900.0, "train_seconds": 1.0, "usage": {"seconds": 0.2}}
    assert not is_timing("post_clarify_score") and not is_timing("timeouts") and is_timing("a.rollout_seconds")


def test_timings_path_mirrors_the_metrics_tree():
    assert timings_path("metrics/base.json") == Path("metrics/timings/base.json")
    assert timings_path("metrics/pairs/ambigsql.json") == Path("metrics/timings/pairs/ambigsql.json")
    assert timings_path("out/x/m.json") == Path("out/x/m.timings.json")


def test_timings_are_ignored_by_git():
    out = subprocess.run(["git", "check-ignore", "-q", "metrics/timings/base.json"], cwd=ROOT)
    assert out.returncode == 0, "metrics/timings/ must be gitignored"


def test_finish_writes_the_metric_and_the_timings(tmp_path):
    path = tmp_path / "metrics" / "sft.json"
    started = time.monotonic()
    out = NullRun().finish({"loss": 0.5, "train_seconds": 2.0}, path, started=started)
    assert json.loads(path.read_text()) == {"loss": 0.5}
    timings = json.loads((tmp_path / "metrics" / "timings" / "sft.json").read_text())
    assert timings["train_seconds"] == 2.0 and timings["seconds"] >= 0
    assert out["loss"] == 0.5 and "seconds" in out


def test_redact_masks_secrets_anywhere(monkeypatch):
    monkeypatch.setenv("MY_API_KEY", "sk-0123456789abcdef")
    assert redact({"u": ["http://x/?k=sk-0123456789abcdef"], "n": 3}) == {"u": ["http://x/?k=***"], "n": 3}


def _tracked_params(tmp_path: Path) -> Params:
    from act.params import load_params

    (tmp_path / "params.yaml").write_text("tracking: {experiment: t}\n")
    return load_params(tmp_path / "params.yaml")


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("ACT_TRACKING", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("ACT_PARENT_RUN_ID", raising=False)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(client):
    exp = client.get_experiment_by_name("t")
    return client.search_runs([exp.experiment_id]) if exp else []


def test_sigterm_marks_the_stage_run_killed(tmp_path, store):
    _tracked_params(tmp_path)
    params_file = tmp_path / "params.yaml"
    script = (
        "import sys, time\n"
        "from act.params import load_params\n"
        "from act.tracking import stage_run\n"
        f"p = load_params({str(params_file)!r})\n"
        "with stage_run('base', p, p.base) as t:\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    (run,) = _runs(store)
    assert run.info.status == "KILLED"
    assert run.data.tags["act.pid"] == str(proc.pid) and run.data.tags["act.host"] == socket.gethostname()


def test_a_failing_stage_run_is_failed_and_a_good_one_finished(tmp_path, store):
    params = _tracked_params(tmp_path)
    with pytest.raises(RuntimeError):
        with stage_run("base", params, params.base):
            raise RuntimeError("boom")
    with stage_run("sft", params, params.sft) as t:
        t.finish({"loss": 1.0}, tmp_path / "m.json")
    status = {r.data.tags["act.stage"]: r.info.status for r in _runs(store)}
    assert status == {"base": "FAILED", "sft": "FINISHED"}


def test_runs_of_vanished_processes_are_marked_killed(tmp_path, store):
    params = _tracked_params(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    from act.tracking import experiment_id

    exp = experiment_id(store, "t", os.environ["MLFLOW_TRACKING_URI"])
    orphan = store.create_run(exp, tags={"act.host": socket.gethostname(), "act.pid": str(dead.pid)}).info.run_id
    alive = store.create_run(exp, tags={"act.host": socket.gethostname(), "act.pid": str(os.getppid())}).info.run_id
    elsewhere = store.create_run(exp, tags={"act.host": "another-host", "act.pid": str(dead.pid)}).info.run_id
    with stage_run("base", params, params.base):
        pass
    assert store.get_run(orphan).info.status == "KILLED"
    assert store.get_run(alive).info.status == "RUNNING"
    assert store.get_run(elsewhere).info.status == "RUNNING"


def test_stage_seconds_reads_the_wall_time_of_each_stage_an_experiment_ran(tmp_path, store, monkeypatch):
    """The sweep's wall time per stage: stage runs found by their `dvc.exp` tag, the latest per
    stage; another experiment's runs and a stage without `seconds` stay out."""
    import time as _time

    from act.tables import timings_markdown
    from act.tracking import stage_seconds
    from flows.experiments import save_timings

    params = _tracked_params(tmp_path)
    for exp_name, stage in (("act-s0", "sft"), ("act-s0", "train"), ("act-s0", "train"), ("dpo-s0", "train")):
        monkeypatch.setenv("DVC_EXP_NAME", exp_name)
        with stage_run(stage, params, params.sft) as t:
            t.finish({"loss": 1.0}, tmp_path / "m.json", started=_time.monotonic() - (5 if exp_name == "dpo-s0" else 60))
        _time.sleep(0.01)
    monkeypatch.setenv("DVC_EXP_NAME", "act-s0")
    with stage_run("evaluate", params, params.sft):
        _time.sleep(0.3)  # logs no `seconds`: timed by its run's start and end
    with pytest.raises(RuntimeError), stage_run("judge", params, params.sft):
        raise RuntimeError("a failed stage has no wall time to report")
    uri = os.environ["MLFLOW_TRACKING_URI"]
    act = stage_seconds(uri, "t", "act-s0")
    assert set(act) == {"sft", "train", "evaluate"} and 0.3 <= act.pop("evaluate") < 30
    assert all(59 <= s < 62 for s in act.values())
    act = stage_seconds(uri, "t", "act-s0")
    assert set(stage_seconds(uri, "t", "dpo-s0")) == {"train"} and stage_seconds(uri, "t", "dpo-s0")["train"] < 30
    assert stage_seconds(uri, "t", "none-s9") == {} and stage_seconds(uri, "missing-experiment", "act-s0") == {}

    plan = {"act-s0": {"methods": ["sft", "act"], "seed": 0}, "dpo-s0": {"methods": ["dpo_offpolicy"], "seed": 0}}
    rows = save_timings(tmp_path / "out", plan, uri, "t")
    assert json.loads((tmp_path / "out/runs/act-s0/timings.json").read_text()) == act
    assert {(r["method"], r["stage"]) for r in rows} == {("act", "sft"), ("act", "train"), ("act", "evaluate"),
                                                          ("dpo_offpolicy", "train")}
    md = timings_markdown(rows)
    assert "| dpo_offpolicy | 0 | – | – |" in md and "| act | 0 | 0.0 | 1.0 | 1.0 | 2.0 |" in md
