"""The pipeline flow over a small real DVC project: DAG order from dvc.yaml, one Prefect task per
DVC stage, DVC left clean, one MLflow parent run with a nested run per stage.

The project here is built in tmp with two stages whose command is a short script calling the real
`act.tracking.stage_run`, so the orchestration is checked without waiting for model stages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

STEP = '''
import sys
from pathlib import Path
from act.params import load_params
from act.tracking import stage_run

stage, src, dst, metrics = sys.argv[1:5]
params = load_params("params.yaml")
with stage_run(stage, params, params.pairs, tags={"dataset": "ambigsql"}) as run:
    text = "".join(p.read_text() for p in sorted(Path(src).rglob("*.txt"))) if Path(src).is_dir() else Path(src).read_text()
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    Path(dst).write_text(text.upper())
    m = {"chars": len(text), "samples": params.pairs.samples, "seed": params.seed,
         "random": int(params.pairs.random_actions)}
    run.finish(m, metrics, artifacts=((dst, "out"),))
'''

DVC_YAML = {
    "stages": {
        "shout": {
            "foreach": ["a", "b"],
            "do": {
                "cmd": "python step.py shout raw/${item}.txt data/shout/${item}.txt metrics/shout/${item}.json",
                "deps": ["raw/${item}.txt", "step.py"],
                "params": ["pairs.samples"],
                "outs": ["data/shout/${item}.txt"],
                "metrics": [{"metrics/shout/${item}.json": {"cache": False}}],
            },
        },
        "join": {
            "cmd": "python step.py join data/shout data/join.txt metrics/join.json",
            "deps": ["data/shout", "step.py"],
            "params": ["seed", "pairs"],
            "outs": ["data/join.txt"],
            "metrics": [{"metrics/join.json": {"cache": False}}],
        },
    }
}


def _sh(cmd: list[str], cwd: Path) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A git + DVC project in tmp, stages in dvc.yaml declared out of DAG order on purpose."""
    p = tmp_path / "proj"
    (p / "raw").mkdir(parents=True)
    (p / "raw" / "a.txt").write_text("alpha\n")
    (p / "raw" / "b.txt").write_text("beta\n")
    (p / "step.py").write_text(STEP)
    (p / "params.yaml").write_text("seed: 3\npairs: {samples: 5}\ntracking: {experiment: tiny}\n")
    stages = DVC_YAML["stages"]
    (p / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"join": stages["join"], "shout": stages["shout"]}},
                                               sort_keys=False))
    (p / ".gitignore").write_text("mlflow.db\nmlartifacts/\n")
    _sh(["git", "init", "-q"], p)
    _sh([sys.executable, "-m", "dvc", "init", "-q"], p)
    _sh(["git", "add", "-A"], p)
    _sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], p)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("ACT_TRACKING", "on")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ACT_PARENT_RUN_ID", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-a-real-key-123")
    return p


def test_dag_order_and_targets(project):
    from flows.pipeline import dag

    names = [s.name for s in dag(project)]
    assert names == ["shout@a", "shout@b", "join"]
    assert [s.name for s in dag(project, ["shout@b"])] == ["shout@b"]
    assert [s.name for s in dag(project, ["join"])] == ["shout@a", "shout@b", "join"]
    with pytest.raises(ValueError, match="unknown stage"):
        dag(project, ["nope"])


def test_http_roles_get_retries(project):
    from act.params import load_params
    from flows.pipeline import DagStage, calls_external_api

    offline = load_params(project / "params.yaml")
    http = load_params(project / "params.yaml", {"roles.annotator.backend": "http"})
    annotate = DagStage(name="annotate@x", cmd="", params=("annotate", "roles.annotator"))
    pairs = DagStage(name="pairs@x", cmd="", params=("pairs", "roles.rejecter"))
    assert not calls_external_api(annotate, offline)
    assert calls_external_api(annotate, http)
    assert not calls_external_api(pairs, http)


@pytest.mark.slow
def test_pipeline_flow_runs_every_stage_and_tracks_it(project, prefect_harness):
    from mlflow.tracking import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.pipeline import pipeline

    state = pipeline(root=str(project), return_state=True)
    result = state.result()
    assert [r["stage"] for r in result["stages"]] == ["shout@a", "shout@b", "join"]
    assert all(r["state"] == "ran" for r in result["stages"])

    # every stage ran as its own Prefect task, named after the DVC stage
    import asyncio

    async def task_names():
        async with get_client() as client:
            runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
            return sorted(r.name for r in runs if r.state.is_completed())

    assert asyncio.run(task_names()) == ["join", "shout@a", "shout@b"]

    # DVC is the record: nothing left to reproduce, outputs there
    assert "up to date" in _sh([sys.executable, "-m", "dvc", "status"], project).lower()
    assert (project / "data" / "join.txt").read_text() == "ALPHA\nBETA\n"
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("act.stage") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.run_id == result["parent_run_id"]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    # a name a person can tell apart, and the commit where MLflow's UI shows it
    assert parent.info.run_name.startswith("pipeline all stages · act seed 3 · ")
    assert len(parent.data.tags["mlflow.source.git.commit"]) == 40
    assert parent.info.run_name.endswith(parent.data.tags["mlflow.source.git.commit"][:7])
    # only the headline metrics (this toy DAG has no evaluate stage): each stage's own are on its child run
    assert parent.data.metrics == {}
    children = {r.data.tags["act.dvc_stage"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == ["join", "shout@a", "shout@b"]
    for name, run in children.items():
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags["act.method"] == "act" and tags["act.seed"] == "3" and tags["act.dataset"] == "ambigsql"
        assert len(tags["git.commit"]) == 40
        # the dep hashes logged during the run are the ones DVC then wrote to dvc.lock
        for dep in lock[name]["deps"]:
            assert tags[f"dvc.dep.{dep['path']}"] == dep["md5"]
        for out in lock[name]["outs"]:
            assert tags[f"dvc.out.{out['path']}"] == out["md5"]
        assert run.data.params["seed"] == "3"
        assert run.data.params[f"{name.partition('@')[0]}.samples"] == "5"
        assert "chars" in run.data.metrics
        assert [a.path for a in client.list_artifacts(run.info.run_id, "out")]
        assert "sk-not-a-real-key-123" not in str(tags) + str(run.data.params)
    assert children["shout@a"].data.metrics["chars"] == 6.0
    assert children["join"].data.metrics["chars"] == 11.0

    async def flow_run_name():
        async with get_client() as client:
            return (await client.read_flow_run(state.state_details.flow_run_id)).name

    assert asyncio.run(flow_run_name()) == parent.info.run_name

    # a second run: DVC finds everything unchanged, no new stage runs are logged
    again = pipeline(root=str(project))
    assert [r["state"] for r in again["stages"]] == ["skipped"] * 3
    later = client.search_runs([exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{again['parent_run_id']}'")
    assert later == []


@pytest.mark.slow
def test_failing_stage_fails_the_flow_and_marks_the_parent(project, prefect_harness):
    from mlflow.tracking import MlflowClient

    from flows.pipeline import pipeline

    (project / "raw" / "b.txt").unlink()  # shout@b's dep is gone
    state = pipeline(root=str(project), return_state=True)
    assert state.is_failed()
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    exp = client.get_experiment_by_name("tiny")
    parent = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("act.stage") == "pipeline"][0]
    assert parent.info.status == "FAILED"
    shout_a = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("act.dvc_stage") == "shout@a"]
    assert shout_a[0].data.metrics["chars"] == 6.0  # what did run is still recorded


@pytest.mark.slow
def test_ablation_flow_compares_methods_over_seeds_and_resumes(project, prefect_harness):
    from mlflow.tracking import MlflowClient

    from flows.ablations import ablations

    out = ablations(root=str(project), methods=["act", "sft", "act_random_actions"], seeds=[0, 1],
                    metrics_file="metrics/join.json")
    # "sft" reads the ACT experiment, so 2 switch sets x 2 seeds = 4 experiments
    assert sorted(e["name"] for e in out["experiments"]) == [
        "abl-random-actions-true-s0", "abl-random-actions-true-s1", "abl-s0", "abl-s1"]
    assert all(e["state"] == "ran" for e in out["experiments"])
    cell = {(r["method"], r["metric"]): r for r in out["table"]}
    assert cell[("act", "seed")]["mean"] == 0.5 and cell[("act", "seed")]["std"] == pytest.approx(0.7071, abs=1e-3)
    assert cell[("act", "random")]["mean"] == 0.0 and cell[("act_random_actions", "random")]["mean"] == 1.0
    assert cell[("act", "chars")]["n"] == 2
    for name in ("ablations.md", "ablations.csv", "ablations.png", "ablations_seeds.csv", "ablations_paired.csv"):
        assert (project / "reports" / name).stat().st_size > 0
    assert "| act_random_actions |" in (project / "reports" / "ablations.md").read_text()
    # each experiment's metrics file, as it committed it, under runs/<method>-s<seed>/
    assert json.loads((project / "reports" / "runs" / "act_random_actions-s1" / "join.json").read_text())["random"] == 1
    assert sorted(p.name for p in (project / "reports" / "runs").iterdir()) == [
        "act-s0", "act-s1", "act_random_actions-s0", "act_random_actions-s1"]
    # experiments ran in scratch copies: the workspace is as committed
    assert "params.yaml" not in _sh(["git", "status", "--porcelain"], project)

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    summary = client.get_run(out["summary_run_id"])
    assert summary.data.metrics["act_random_actions.random.mean"] == 1.0
    assert summary.data.metrics["paired.act-act_random_actions.random.mean"] == -1.0  # ACT - method, per seed
    assert "paired.act-act_random_actions.random.t" not in summary.data.metrics  # no spread: no t test
    assert {a.path for a in client.list_artifacts(summary.info.run_id)} >= {"ablations.md", "ablations.csv", "ablations.png"}
    exp = client.get_experiment_by_name("tiny")
    stage_runs = client.search_runs([exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{summary.info.run_id}'")
    tagged = {(r.data.tags["act.method"], r.data.tags["act.seed"]) for r in stage_runs}
    assert tagged == {("act+sft", "0"), ("act+sft", "1"), ("act_random_actions", "0"), ("act_random_actions", "1")}

    again = ablations(root=str(project), methods=["act", "act_random_actions"], seeds=[0, 1],
                      metrics_file="metrics/join.json")
    assert [e["state"] for e in again["experiments"]] == ["reused"] * 4
    assert {(r["method"], r["metric"], r["mean"]) for r in again["table"]} <= {
        (r["method"], r["metric"], r["mean"]) for r in out["table"]}


def test_ablation_bad_switch_fails_before_running(project):
    from flows.ablations import METHODS, check_switches

    check_switches(project, list(METHODS), {})  # every method's switch is a real params key
    with pytest.raises(ValueError, match=r"act_from_base.*train\.beta"):
        check_switches(project, ["act_from_base"], {"train.beta": "fast"})
    with pytest.raises(ValueError, match="unknown method"):
        check_switches(project, ["ppo"], {})


def test_each_experiment_evaluates_only_the_policies_its_methods_read():
    """The SFT policy is scored once per seed (in the experiment `sft` shares with ACT), not again
    beside off-policy DPO or an ablation; the base only where a method reads it."""
    from flows.ablations import evaluated_policies

    assert evaluated_policies(["base", "sft", "act"], ["sft", "act"]) == ["sft", "act"]
    assert evaluated_policies(["base", "sft", "act"], ["dpo_offpolicy"]) == ["act"]
    assert evaluated_policies(["sft", "act"], ["sft"]) == ["sft"]
    assert evaluated_policies(["base"], ["act"]) == ["act"]  # a method's own policy is never dropped
