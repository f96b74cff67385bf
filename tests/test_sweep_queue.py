"""`act ablate --jobs N`: the experiments go through DVC's queue and N workers run them at once;
the results are collected as in the sequential sweep, and every experiment shows up in
`dvc exp show` and in MLflow with its method and seed. Uses test_flows' small DVC project."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_flows import project  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[1]


def test_jobs_parses_and_defaults_to_one():
    from flows.cli import _parser

    assert _parser().parse_args(["ablate"]).jobs == 1
    assert _parser().parse_args(["ablate", "-j", "3"]).jobs == 3


def test_exp_run_cmd_queues_or_runs_at_once(tmp_path):
    from flows.experiments import exp_run_cmd

    (tmp_path / "params.yaml").write_text("seed: 0\ntrain: {beta: 0.1}\n")
    now = exp_run_cmd(tmp_path, "abl-s1", {"seed": 1, "train.init": "base"}, rerun=False)
    assert now[2:] == ["dvc", "exp", "run", "--temp", "--name", "abl-s1", "-S", "seed=1", "-S", "+train.init=base"]
    queued = exp_run_cmd(tmp_path, "abl-s1", {"seed": 1}, rerun=True, queue=True)
    assert queued[2:] == ["dvc", "exp", "run", "--queue", "--name", "abl-s1", "--force", "-S", "seed=1"]


def test_jobs_below_one_is_refused(tmp_path):
    from flows.ablations import ablations

    with pytest.raises(ValueError, match="jobs must be >= 1"):
        ablations.fn(root=str(tmp_path), methods=["act"], seeds=[0], jobs=0)


def _intervals(runs) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for r in runs:
        name = r.data.tags["dvc.exp"]
        lo, hi = out.get(name, (r.info.start_time, r.info.end_time))
        out[name] = (min(lo, r.info.start_time), max(hi, r.info.end_time))
    return out


@pytest.mark.slow
def test_two_queue_workers_finish_a_four_experiment_sweep(project, prefect_harness):  # noqa: F811
    from mlflow.tracking import MlflowClient

    from flows.ablations import ablations

    out = ablations(root=str(project), methods=["act", "act_random_actions"], seeds=[0, 1],
                    metrics_file="metrics/join.json", jobs=2)
    names = ["abl-random-actions-true-s0", "abl-random-actions-true-s1", "abl-s0", "abl-s1"]
    assert sorted(e["name"] for e in out["experiments"]) == names
    assert all(e["state"] == "ran" for e in out["experiments"])
    cell = {(r["method"], r["metric"]): r for r in out["table"]}
    assert cell[("act", "seed")]["mean"] == 0.5 and cell[("act", "seed")]["n"] == 2
    assert cell[("act", "random")]["mean"] == 0.0 and cell[("act_random_actions", "random")]["mean"] == 1.0

    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=project, capture_output=True,
                           text=True, check=True).stdout
    assert all(f'"{n}"' in shown for n in names)
    # the workspace is as committed, the queue is empty
    assert "params.yaml" not in subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True,
                                               text=True).stdout

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{out['summary_run_id']}'")
    assert {r.data.tags["dvc.exp"] for r in runs} == set(names)
    tagged = {(r.data.tags["dvc.exp"], r.data.tags["act.method"], r.data.tags["act.seed"]) for r in runs}
    assert {t[1:] for t in tagged} == {("act", "0"), ("act", "1"), ("act_random_actions", "0"), ("act_random_actions", "1")}
    assert all(r.info.status == "FINISHED" for r in runs)
    # two workers: some experiments ran at the same time
    spans = sorted(_intervals(runs).values())
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans

    again = ablations(root=str(project), methods=["act", "act_random_actions"], seeds=[0, 1],
                      metrics_file="metrics/join.json", jobs=2)
    assert [e["state"] for e in again["experiments"]] == ["reused"] * 4
