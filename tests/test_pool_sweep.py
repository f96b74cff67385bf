"""`act ablate --pool` for real, on one machine standing in for two: a Prefect server and an
MLflow server on 127.0.0.1, a bare git repository as `origin`, a folder as the DVC remote, and two
process workers (`act worker`), each in its own clone. A 4-point sweep runs; one worker is killed
with SIGKILL (its whole process tree: the machine is gone) while it runs a point's stage. The point
is marked CRASHED once its heartbeats stop and finishes on the other worker.

Checked at the end: all four experiments are on the remote; the table equals the one a sequential
sweep (`act ablate` without a pool) writes; MLflow has one finished run tree per point, tagged with
its worker, and the killed attempt's tree is KILLED; every object on the DVC remote is whole, and
every experiment ref there names only objects the remote has.

The project is test_flows' small DVC project (real DVC stages calling the real `stage_run`), with
the `join` stage slowed by ACT_TEST_STAGE_S on the workers so the kill lands mid-stage.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.test_flows import DVC_YAML, STEP

ROOT = Path(__file__).resolve().parents[1]
POOL = "test-pool"
METHODS = ["act", "act_random_actions"]
NAMES = ["abl-random-actions-true-s0", "abl-random-actions-true-s1", "abl-s0", "abl-s1"]
STAGE_S = 40  # the join stage's length on the workers: the window for the kill
STALE_S = 75  # silence after which a point counts as crashed (heartbeats every 30 s)
SLOW_STEP = "import os, sys, time\nif sys.argv[1] == 'join':\n    time.sleep(float(os.environ.get('ACT_TEST_STAGE_S', '0')))\n" + STEP


def _sh(cmd: list[str], cwd: Path, env: dict | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} failed in {cwd}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (by parent pid), found before any is killed."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process we started, its process group and every process below it."""
    for pid in [proc.pid, *_descendants(proc.pid)]:
        for kill in (lambda p: os.killpg(p, signal.SIGKILL), lambda p: os.kill(p, signal.SIGKILL)):
            try:
                kill(pid)
            except (ProcessLookupError, PermissionError):
                pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _project(root: Path, remote_store: Path, origin: Path) -> Path:
    """The project, committed, with `origin` (bare) and the DVC remote configured and pushed."""
    p = root / "proj"
    (p / "raw").mkdir(parents=True)
    (p / "raw" / "a.txt").write_text("alpha\n")
    (p / "raw" / "b.txt").write_text("beta\n")
    (p / "step.py").write_text(SLOW_STEP)
    (p / "params.yaml").write_text("seed: 3\npairs: {samples: 5}\ntracking: {experiment: tiny, retries: 2}\n")
    (p / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    (p / ".gitignore").write_text("mlflow.db\nmlartifacts/\n/reports/\n")
    _sh(["git", "init", "-q", "-b", "main"], p)
    _sh([sys.executable, "-m", "dvc", "init", "-q"], p)
    _sh([sys.executable, "-m", "dvc", "remote", "add", "-d", "store", str(remote_store)], p)
    _sh(["git", "add", "-A"], p)
    _sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], p)
    _sh(["git", "init", "-q", "--bare", "-b", "main", str(origin)], root)
    _sh(["git", "remote", "add", "origin", str(origin)], p)
    _sh(["git", "push", "-q", "origin", "main"], p)
    return p


def _clone(origin: Path, dst: Path) -> Path:
    _sh(["git", "clone", "-q", str(origin), str(dst)], dst.parent)
    return dst


def _start(cmd: list[str], cwd: Path, env: dict, log: Path, started: list) -> subprocess.Popen:
    fh = open(log, "ab")
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    fh.close()
    started.append(proc)
    return proc


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    from flows.servers import healthy

    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"{proc.args} exited with {proc.returncode}"
        if healthy(url):
            return
        time.sleep(1.0)
    raise TimeoutError(f"{url} did not answer in {timeout}s")


def _rows(path: Path) -> list[dict]:
    return sorted(csv.DictReader(path.open()), key=lambda r: tuple(r.values()))


def _remote_objects_whole(store: Path) -> list[Path]:
    """Files of the DVC remote whose md5 is not their name (half-written or foreign)."""
    bad = []
    for f in (store / "files" / "md5").rglob("*"):
        if f.is_file():
            name = f.parent.name + f.name
            digest = hashlib.md5(f.read_bytes()).hexdigest()
            if name.removesuffix(".dir") != digest:
                bad.append(f)
    return bad


@pytest.mark.slow
def test_two_workers_one_killed_the_sweep_finishes_on_the_other(tmp_path):
    from mlflow.tracking import MlflowClient

    from flows.servers import free_port

    store, origin = tmp_path / "dvc-store", tmp_path / "origin.git"
    store.mkdir()
    proj = _project(tmp_path, store, origin)
    logs = tmp_path / "logs"
    logs.mkdir()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "ACT_"))}
    base_env.update(PYTHONPATH=str(ROOT), PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"],
                    PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                    DO_NOT_TRACK="true", MLFLOW_DISABLE_TELEMETRY="true", DVC_NO_ANALYTICS="1")
    started: list[subprocess.Popen] = []
    try:
        # the two servers
        pport, mport = free_port(), free_port()
        prefect_env = {**base_env, "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(pport),
                       "PREFECT_UI_API_URL": f"http://127.0.0.1:{pport}/api"}
        prefect = _start([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                          str(pport)], tmp_path, prefect_env, logs / "prefect.log", started)
        mlflow = _start([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(mport),
                         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                         "--default-artifact-root", (tmp_path / "mlartifacts").as_uri()], tmp_path,
                        {**base_env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}, logs / "mlflow.log", started)
        _wait_http(f"http://127.0.0.1:{pport}/api/health", prefect, 300)
        _wait_http(f"http://127.0.0.1:{mport}/health", mlflow, 300)
        env = {**base_env, "PREFECT_API_URL": f"http://127.0.0.1:{pport}/api",
               "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mport}", "ACT_TRACKING": "on",
               "PREFECT_WORKER_QUERY_SECONDS": "3"}

        # two workers, each in its own clone: two machines
        workers = {}
        for name in ("w1", "w2"):
            clone = _clone(origin, tmp_path / f"clone-{name}")
            workers[name] = _start([sys.executable, "-m", "flows.cli", "-C", str(clone), "worker", "--pool", POOL,
                                    "--name", name], clone, {**env, "ACT_TEST_STAGE_S": str(STAGE_S)},
                                   logs / f"worker-{name}.log", started)

        # the sweep, from the project (the machine a person types on)
        sweep = _start([sys.executable, "-m", "flows.cli", "-C", str(proj), "ablate", "--pool", POOL,
                        "--methods", *METHODS, "--seeds", "0", "1", "--metrics-file", "metrics/join.json",
                        "--stale-s", str(STALE_S)], proj, env, logs / "sweep.log", started)

        # kill w1 (its whole tree) while its point's join stage runs
        deadline, victim = time.time() + 900, None
        while time.time() < deadline and victim is None:
            assert sweep.poll() is None, "the sweep ended before a worker could be killed:\n" + (logs / "sweep.log").read_text()[-3000:]
            tree = _descendants(workers["w1"].pid)
            if any("step.py join" in _cmdline(pid) for pid in tree):
                victim = next((c for pid in tree for c in [_cmdline(pid)] if "exp run" in c), "?")
                _kill_tree(workers["w1"])
                time.sleep(2.0)
                assert not [pid for pid in tree if _cmdline(pid)], "a process of the killed worker survived"
            time.sleep(1.0)
        assert victim is not None, "w1 never ran a join stage:\n" + (logs / "worker-w1.log").read_text()[-3000:]
        killed_point = next(n for n in NAMES if f"--name {n} " in victim + " ")

        rc = sweep.wait(timeout=1800)
        assert rc == 0, (logs / "sweep.log").read_text()[-6000:] + "\n--- w2:\n" + (logs / "worker-w2.log").read_text()[-4000:]

        # every experiment on the remote, each ref naming only whole objects the remote has
        refs = _sh(["git", "ls-remote", str(origin), "refs/exps/*"], tmp_path).split()
        names = sorted(r.rsplit("/", 1)[-1] for r in refs[1::2])
        assert names == NAMES
        assert not _remote_objects_whole(store)
        for sha in refs[0::2]:
            lock = yaml.safe_load(_sh(["git", "show", f"{sha}:dvc.lock"], origin))
            for stage in lock["stages"].values():
                for out in stage.get("outs", []):
                    if out["path"].startswith("metrics/"):  # cache: false, git-tracked
                        continue
                    prefix = out["md5"]
                    assert (store / "files" / "md5" / prefix[:2] / prefix[2:]).is_file(), f"{out} missing on the remote"

        # the table equals a sequential sweep's (a fresh clone, no pool, no remote)
        seq = _clone(origin, tmp_path / "sequential")
        seq_env = {**base_env, "PREFECT_API_URL": env["PREFECT_API_URL"], "ACT_TRACKING": "off"}
        _sh([sys.executable, "-m", "flows.cli", "-C", str(seq), "ablate", "--methods", *METHODS, "--seeds", "0", "1",
             "--metrics-file", "metrics/join.json"], seq, seq_env)
        for report in ("ablations.csv", "ablations_seeds.csv", "ablations_paired.csv"):
            assert _rows(proj / "reports" / report) == _rows(seq / "reports" / report), report
        assert len(_rows(proj / "reports" / "ablations_seeds.csv")) == 4 * 4  # 4 points x 4 figures

        # MLflow: one finished tree per point, tagged with its worker; the killed attempt's tree KILLED
        client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
        exp = client.get_experiment_by_name("tiny")
        points = client.search_runs([exp.experiment_id], filter_string="tags.`act.stage` LIKE 'point %'")
        finished = {}
        for run in points:
            tags = run.data.tags
            if run.info.status == "FINISHED":
                assert tags["act.point"] not in finished, f"two finished trees for {tags['act.point']}"
                finished[tags["act.point"]] = run
            else:
                assert (run.info.status, tags["act.point"], tags["act.worker"]) == ("KILLED", killed_point, "w1")
        assert sorted(finished) == NAMES
        assert finished[killed_point].data.tags["act.worker"] == "w2"
        for name, run in finished.items():
            children = client.search_runs([exp.experiment_id],
                                          filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
            # shout@a/b are the same in every point: DVC's run cache (pulled from the remote) may restore them
            assert "join" in {c.data.tags["act.dvc_stage"] for c in children} <= {"shout@a", "shout@b", "join"}, name
            assert all(c.info.status == "FINISHED" and c.data.tags["act.worker"] == run.data.tags["act.worker"]
                       for c in children), name

        # Prefect: the killed point's first flow run CRASHED, its second COMPLETED
        request = urllib.request.Request(f"{env['PREFECT_API_URL']}/flow_runs/filter", method="POST",
                                         data=json.dumps({"flow_runs": {"name": {"like_": killed_point}}}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as r:
            runs = json.loads(r.read())
        states = sorted((r["name"], r["state"]["type"]) for r in runs)
        assert states == [(f"{killed_point} #1", "CRASHED"), (f"{killed_point} #2", "COMPLETED")], states
    finally:
        for proc in reversed(started):
            _kill_tree(proc)
