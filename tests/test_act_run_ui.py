"""`act run` as a user meets it, in a scratch copy of the project on the tiny config: with `act ui`
running (a real Prefect server and MLflow UI on free loopback ports) and PREFECT_API_URL not
exported, the run lands on that server, each task run holds its `dvc repro` output as logs, the
terminal gets a line per finished stage, and a SIGTERM'd `act run` leaves its MLflow runs KILLED
and no stage process behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from flows.servers import STATE_FILE, free_port

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = float(os.environ.get("ACT_TEST_PREFECT_STARTUP_S", "300"))


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _git(args: list[str], cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "MLFLOW_", "ACT_PARENT"))}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT)
    env.pop("PREFECT_HOME", None)
    env.update(extra)
    return env


def _api(base: str, path: str, body: dict) -> list[dict]:
    req = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The repository's files, the tiny params over params.yaml, a git repo of its own."""
    dst = tmp_path_factory.mktemp("act-ui") / "repo"
    for rel in filter(None, _git(["ls-files", "-co", "--exclude-standard"], ROOT).split("\n")):
        if (ROOT / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dst / rel)
    params = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()),
                    yaml.safe_load((ROOT / "tests" / "fixtures" / "params.tiny.yaml").read_text()))
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for stale in ("dvc.lock", "mlflow.db"):
        (dst / stale).unlink(missing_ok=True)
    _git(["init", "-q"], dst)
    _git(["add", "-A"], dst)
    _git(["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"], dst)
    return dst


@pytest.fixture(scope="module")
def act_ui(project):
    """`act ui` on free ports, as a user starts it; yields (Prefect URL, process)."""
    pp, mp = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "-C", str(project), "ui",
                             "--prefect-port", str(pp), "--mlflow-port", str(mp)],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = project / STATE_FILE
    deadline = time.time() + STARTUP_S
    while not state.exists():
        assert proc.poll() is None, f"act ui exited: {proc.stdout.read()}"
        assert time.time() < deadline, "act ui did not start"
        time.sleep(0.5)
    yield f"http://127.0.0.1:{pp}", proc
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, out
    assert not state.exists()  # act run no longer finds a server that is gone
    assert f"Prefect UI : http://127.0.0.1:{pp}" in out and f"MLflow UI  : http://127.0.0.1:{mp}" in out


@pytest.mark.slow
def test_act_run_lands_on_the_act_ui_server_with_task_logs(project, act_ui):
    url, _ = act_ui
    with urllib.request.urlopen(f"{url}/ui-settings", timeout=30) as r:  # the browser UI asks its own server
        assert json.loads(r.read())["api_url"] == f"{url}/api"
    t0 = time.time()
    done = subprocess.run([sys.executable, "-m", "flows.cli", "-C", str(project), "run", "--targets", "ingest@ambigsql"],
                          env=_env(ACT_TRACKING="off"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Prefect UI: {url}" in done.stdout
    stage_lines = [ln.split() for ln in done.stdout.splitlines() if ln.startswith("ingest@ambigsql")]
    assert stage_lines and stage_lines[0][1] == "ran", done.stdout
    assert "Traceback" not in done.stderr and "dvc repro" not in done.stderr  # the stage output goes to Prefect
    print(f"act run --targets ingest@ambigsql against act ui: {time.time() - t0:.1f}s")

    flows = _api(url, "/api/flows/filter", {"flows": {"name": {"any_": ["act-pipeline"]}}})
    runs = _api(url, "/api/flow_runs/filter", {"flows": {"id": {"any_": [flows[0]["id"]]}}})
    assert len(runs) == 1 and runs[0]["state_type"] == "COMPLETED"
    tasks = _api(url, "/api/task_runs/filter", {"flow_runs": {"id": {"any_": [runs[0]["id"]]}}})
    assert [t["name"] for t in tasks] == ["ingest@ambigsql"]
    logs = _api(url, "/api/logs/filter", {"logs": {"task_run_id": {"any_": [tasks[0]["id"]]}}})
    text = "\n".join(entry["message"] for entry in logs)
    assert "Running stage 'ingest@ambigsql'" in text, text  # dvc repro's own output
    flow_logs = _api(url, "/api/logs/filter", {"logs": {"flow_run_id": {"any_": [runs[0]["id"]]}}})
    assert any(entry["message"].startswith("ingest@ambigsql") and "ran" in entry["message"] for entry in flow_logs)


@pytest.mark.slow
def test_sigterm_to_act_run_ends_its_mlflow_runs_killed(project, act_ui):
    """A stage that would run for minutes (pre-training with 10^6 steps), `act run` SIGTERM'd
    while it runs: the pipeline parent run and the stage's run both end KILLED, `act run` exits
    with 143, and the stage's process is gone."""
    from mlflow.tracking import MlflowClient

    from act.io import pid_alive

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["base"]["embedded"]["steps"] = 1_000_000
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "-C", str(project), "run", "--targets", "base"],
                            env=_env(ACT_TRACKING="on"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, base = time.time() + 600, None
    while base is None:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "the base stage never started"
        time.sleep(2)
        exp = client.get_experiment_by_name("act-tiny")
        if exp:
            running = client.search_runs([exp.experiment_id], "tags.`act.stage` = 'base' and attributes.status = 'RUNNING'")
            base = running[0] if running else None
    time.sleep(3)  # inside pre-training
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=180)[0]
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "Traceback" not in out, out
    assert client.get_run(base.info.run_id).info.status == "KILLED"
    parent = client.get_run(base.data.tags["mlflow.parentRunId"])
    assert parent.data.tags["act.stage"] == "pipeline" and parent.info.status == "KILLED"
    assert not pid_alive(int(base.data.tags["act.pid"]))
    assert client.get_experiment_by_name("act-tiny").tags["mlflow.experimentKind"] == "custom_model_development"
