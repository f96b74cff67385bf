"""The pipeline flow over the project's own DAG on the tiny config, in a scratch copy of the
repository: every stage of dvc.yaml runs as a Prefect task, `dvc status` is clean afterwards,
MLflow holds one parent run with one nested run per stage, a second `dvc repro` does nothing, and
a changed budget invalidates only the stages that depend on it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _sh(cmd: list[str], cwd: Path) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory) -> tuple[Path, list[str]]:
    dst = tmp_path_factory.mktemp("act") / "repo"
    tracked = _sh(["git", "ls-files", "-co", "--exclude-standard"], ROOT).split("\n")
    for rel in filter(None, tracked):
        src = ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    # DVC needs every declared param key in the file: the tiny knobs go over the full params.yaml
    params = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
                    yaml.safe_load((ROOT / "tests" / "fixtures" / "params.tiny.yaml").read_text()))
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stale in ("dvc.lock", "mlflow.db"):
        (dst / stale).unlink(missing_ok=True)
    _sh(["git", "init", "-q"], dst)
    _sh(["git", "add", "-A"], dst)
    _sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"], dst)
    return dst, list(stages)


@pytest.mark.slow
def test_pipeline_flow_on_the_project_dag(repo_copy, monkeypatch, prefect_harness):
    from mlflow.tracking import MlflowClient

    from flows.pipeline import dag, pipeline

    root, present = repo_copy
    monkeypatch.setenv("ACT_TRACKING", "on")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ACT_PARENT_RUN_ID", raising=False)
    expected = [s.name for s in dag(root)]
    assert {n.partition("@")[0] for n in expected} == set(present)

    result = pipeline(root=str(root))
    assert [r["stage"] for r in result["stages"]] == expected
    assert all(r["state"] == "ran" for r in result["stages"])
    assert "up to date" in _sh([sys.executable, "-m", "dvc", "status"], root).lower()

    # DVC metrics hold no wall-clock figure (a rerun elsewhere changes only model figures); the
    # timings sit in the untracked metrics/timings/ and in MLflow
    from act.tracking import flatten, is_timing

    for path in (root / "metrics").rglob("*.json"):
        if "timings" not in path.relative_to(root / "metrics").parts:
            timing = [k for k in flatten(json.loads(path.read_text())) if is_timing(k)]
            assert not timing, f"{path.relative_to(root)} holds wall-clock figures {timing}"
    assert (root / "metrics" / "timings" / "base.json").exists()
    assert "metrics/timings" not in _sh(["git", "status", "--porcelain", "--untracked-files=all"], root)

    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    exp = client.get_experiment_by_name("act-tiny")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("act.stage") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    # the parent holds the headline metrics only (<policy>/<level>.<metric>), not every stage's figures again
    from act.metrics.summary import HEADLINE_KEYS

    parent_metrics = parents[0].data.metrics
    assert all(k.partition("/")[2] in HEADLINE_KEYS for k in parent_metrics), sorted(parent_metrics)
    assert parent_metrics or "evaluate" not in present
    children = {r.data.tags["act.dvc_stage"]: r for r in runs
                if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert sorted(children) == sorted(expected)
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    for name, run in children.items():
        base = name.partition("@")[0]
        assert run.info.status == "FINISHED"
        assert run.data.params["seed"] == "0"
        assert any(k.startswith(f"{base}.") for k in run.data.params), f"{name}: no {base}.* params"
        assert run.data.metrics, f"{name}: no metrics"
        for dep in lock[name]["deps"]:
            assert run.data.tags.get(f"dvc.dep.{dep['path']}") == dep["md5"]

    # DVC stays the record: nothing left to run, and one dataset's budget touches only its stages
    assert "didn't change" in _sh([sys.executable, "-m", "dvc", "repro"], root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["ingest"]["pacific"]["budget"] = 3
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    ran = re.findall(r"Running stage '([^']+)'", _sh([sys.executable, "-m", "dvc", "repro"], root))
    assert sorted(ran) == ["annotate@pacific", "ingest@pacific", "pairs@pacific"]
