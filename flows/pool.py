"""Sweeps across machines: each (method, seed) point a flow run on a Prefect work pool.

    act worker --pool gpus                     on each GPU machine, in its own clone (one per GPU)
    act ablate --pool gpus --seeds 0 1 2       anywhere that reaches the Prefect server

One deployment, `act-point/act-point`, runs one point (`run_point`). The workers of a pool of
type `process` pick its flow runs; each run starts in the worker's clone (the deployment's pull
step changes into `$ACT_WORKER_CLONE`, which `act worker` sets) and there:

1. checks out the sweep's commit (`git fetch`, `git checkout --detach <commit>`);
2. `dvc pull --run-cache --allow-missing` from the DVC remote (stages another point already ran
   come back from the run cache instead of running again);
3. `dvc exp run --temp -n <name> -S ...` under an MLflow run of the point (tags: the point, the
   worker, the host), which every stage run of the experiment nests under;
4. pushes the experiment: the DVC cache and run cache first, the git ref last, so an experiment
   whose ref is on the remote is complete there (`remote_finished` trusts that).

The parent (`run_pool`, called by the ablations flow) submits every point not yet on the remote
(`to_submit`; all of them with `--rerun`), then watches the flow runs. A worker that dies with its
machine leaves its flow run RUNNING with no one to report; the flow engine's heartbeat events stop
(`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`, set by `act worker`). `decide` is the rule: a run silent for
`stale_s` is marked CRASHED, and a crashed point is submitted again, up to `tracking.retries`
times; a FAILED point (its own error, which a rerun repeats) is not. This module imports `act/`,
`flows.experiments` and `flows.pipeline`, never the CLI (tests/test_layers.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from prefect import flow, get_run_logger

from flows.experiments import _dvc_env, exp_run_cmd

DEPLOYMENT = "act-point"
"""The flow's and the deployment's name: runs are `act-point/act-point` on the pool."""

ENTRYPOINT = "flows.pool:run_point"
"""A module path: the flow loads from the worker's PYTHONPATH (its clone), whatever its working directory."""

WORKER_CLONE_ENV = "ACT_WORKER_CLONE"
HEARTBEAT_S = 30
"""Seconds between a point's heartbeat events (Prefect's minimum)."""


# ----------------------------------------------------------------------------- the two rules


def to_submit(plan: Iterable[str], finished: set[str], rerun: bool) -> list[str]:
    """The points to run: all with `rerun`, else those whose experiment is not on the remote."""
    return [name for name in plan if rerun or name not in finished]


def decide(state: str, attempts: int, retries: int, silent_s: float | None, stale_s: float) -> str:
    """What the parent does with a point's flow run, given its Prefect state type, how many flow
    runs the point had (`attempts`, this one included), how long the run has given no sign of life
    (seconds since its last heartbeat or state change; None when unknown) and the silence after
    which a running point counts as crashed. One of:

    - "done": COMPLETED;
    - "failed": FAILED or CANCELLED: the point's own error, which running it again repeats;
    - "resubmit": CRASHED (or RUNNING/PENDING and silent for `stale_s`: its worker is gone) with
      resubmissions left (`attempts <= retries`);
    - "exhausted": the same, with none left;
    - "wait": anything else (scheduled, pending, running and alive)."""
    state = state.upper()
    if state == "COMPLETED":
        return "done"
    if state in ("FAILED", "CANCELLED", "CANCELLING"):
        return "failed"
    crashed = state == "CRASHED" or (state in ("RUNNING", "PENDING") and silent_s is not None and silent_s > stale_s)
    if crashed:
        return "resubmit" if attempts <= retries else "exhausted"
    return "wait"


# ----------------------------------------------------------------------------- git helpers


def _git(cwd: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def remote_finished(root: Path, remote: str, baseline: str) -> set[str]:
    """Names of the experiments of commit `baseline` on the git remote `remote` (a ref there is
    pushed last, after its DVC cache: the experiment is complete)."""
    prefix = f"refs/exps/{baseline[:2]}/{baseline[2:]}/"
    out = _git(root, "ls-remote", remote, f"{prefix}*")
    return {line.split()[1][len(prefix):] for line in out.splitlines() if line.strip()}


def require_pushed(root: Path, remote: str, commit: str) -> None:
    """Fail before submitting anything when the sweep's commit is on no branch of `remote`: the
    workers check it out from there."""
    _git(root, "fetch", "--quiet", remote)
    if not _git(root, "branch", "-r", "--contains", commit, check=False).strip():
        raise SystemExit(f"commit {commit[:7]} is on no branch of {remote}: the workers check it out from there; "
                         f"`git push {remote} HEAD` first")


def pull_experiments(root: Path, names: Iterable[str], remote: str) -> None:
    """Fetch the experiments' git refs (their metrics are git-tracked); their DVC outputs stay on
    the remote (`dvc exp pull origin <name>` or `dvc exp apply` fetch one when wanted)."""
    names = list(names)
    if names:
        cmd = [sys.executable, "-m", "dvc", "exp", "pull", "--no-cache", "--force", remote, *names]
        proc = subprocess.run(cmd, cwd=root, env=_dvc_env({}), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[2:])} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")


# ----------------------------------------------------------------------------- the worker's side


def _run_logged(cmd: list[str], cwd: Path, env: dict[str, str], logger) -> None:
    """Run `cmd` in a process group of its own, its lines to the flow run's logs; a failure raises
    with the end of its output. Stopped (cancel, SIGTERM): the group gets SIGTERM, then SIGKILL."""
    from flows.pipeline import _terminate_group

    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1, start_new_session=True)
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line.rstrip())
            if lines[-1]:
                logger.info(lines[-1])
        rc = proc.wait()
    except BaseException:
        _terminate_group(proc)
        raise
    if rc != 0:
        tail = "\n".join(lines[-40:])
        raise RuntimeError(f"{' '.join(cmd[2:] if cmd[0] == sys.executable else cmd)} failed (exit {rc}):\n{tail}")


def checkout(clone: Path, remote: str, commit: str) -> None:
    """The clone at the sweep's commit. A clone with uncommitted changes is refused: a point must
    run the sweep's code and params, nothing else."""
    dirty = _git(clone, "status", "--porcelain", "--untracked-files=no").strip()
    if dirty:
        raise RuntimeError(f"worker clone {clone} has uncommitted changes, refusing to run a point there:\n{dirty}")
    _git(clone, "fetch", "--quiet", remote)
    if _git(clone, "cat-file", "-t", commit, check=False).strip() != "commit":
        raise RuntimeError(f"commit {commit[:7]} of the sweep is not on {remote}: push it before `act ablate --pool`")
    _git(clone, "checkout", "--quiet", "--detach", commit)


def push_experiment(clone: Path, name: str, remote: str, logger, *, force: bool = False) -> None:
    """The experiment's DVC outputs and run cache to the DVC remote, then its git ref to `remote`:
    a ref on the remote means everything it names is there too. `force` (a rerun) replaces the
    ref an earlier run of the point left there."""
    from dvc.repo import Repo

    ref = next((r for r in _git(clone, "for-each-ref", "--format=%(refname)", "refs/exps").split()
                if r.rsplit("/", 1)[-1] == name), None)
    if ref is None:
        raise RuntimeError(f"experiment {name} finished but left no ref in {clone}")
    sha = _git(clone, "rev-parse", ref).strip()
    with Repo(str(clone)) as repo:
        uploaded = repo.push(revs=[sha], workspace=False, run_cache=True)
    logger.info("pushed %s files of %s to the DVC remote", uploaded, name)
    cmd = [sys.executable, "-m", "dvc", "exp", "push", "--no-cache", *(["--force"] if force else []), remote, name]
    _run_logged(cmd, clone, _dvc_env({}), logger)


def worker_name() -> str:
    return os.environ.get("ACT_WORKER_NAME") or socket.gethostname()


@flow(name=DEPLOYMENT, log_prints=True)
def run_point(name: str, commit: str, overrides: dict[str, Any], methods: list[str], seed: int,
              remote: str = "origin", parent_run_id: str | None = None, rerun: bool = False) -> dict[str, Any]:
    """One point of a sweep, in this worker's clone (see the module doc). Returns the worker, its
    host and whether the experiment ran or was on the remote already."""
    from act.params import load_params
    from act.tracking import parent_run, scoped_env, tag_tree, tracking_uri

    logger = get_run_logger()
    clone = Path(os.environ.get(WORKER_CLONE_ENV) or os.getcwd()).resolve()
    worker, host = worker_name(), socket.gethostname()
    t0 = time.time()
    logger.info("point %s on worker %s (%s), clone %s", name, worker, host, clone)
    checkout(clone, remote, commit)
    if not rerun and name in remote_finished(clone, remote, commit):
        logger.info("%s is on %s already: not rerun", name, remote)
        return {"name": name, "state": "reused", "worker": worker, "host": host, "seconds": 0.0}
    _run_logged([sys.executable, "-m", "dvc", "pull", "--run-cache", "--allow-missing"], clone, _dvc_env({}), logger)

    params = load_params(clone / "params.yaml", {k: v for k, v in overrides.items()})
    method = "+".join(methods)
    tags = {"act.point": name, "act.worker": worker, "act.method": method, "act.seed": str(seed), "dvc.exp": name}
    try:
        from prefect.runtime import flow_run

        tags["prefect.flow_run_id"] = str(flow_run.id)
    except Exception:  # not inside a flow run (called as .fn)
        pass
    with scoped_env(**({"ACT_PARENT_RUN_ID": parent_run_id} if parent_run_id else {})):
        with parent_run(params, f"point {name}", root=clone, tags=tags) as point:
            env = {"ACT_METHOD": method, "ACT_SEED": str(seed)}
            if point.run_id:
                env["ACT_PARENT_RUN_ID"] = point.run_id
            else:
                env["ACT_TRACKING"] = "off"
            cmd = exp_run_cmd(clone, name, overrides, rerun=rerun)
            logger.info(" ".join(cmd[2:]))
            _run_logged(cmd, clone, _dvc_env(env), logger)
            if point.run_id:
                tag_tree(tracking_uri(clone), point.run_id, {"act.worker": worker, "act.point": name})
    push_experiment(clone, name, remote, logger, force=rerun)
    return {"name": name, "state": "ran", "worker": worker, "host": host, "seconds": round(time.time() - t0, 1)}


# ----------------------------------------------------------------------------- the parent's side


def ensure_deployment(pool: str) -> str:
    """The work pool (type `process`, created if missing) and the point deployment on it; returns
    the deployment's id. Idempotent: a second sweep updates the same deployment."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.utilities.callables import parameter_schema
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            found = client.read_work_pool(pool)
            if found.type != "process":
                raise SystemExit(f"work pool {pool!r} is of type {found.type!r}; `act ablate --pool` needs a "
                                 f"process pool (prefect work-pool create {pool} --type process)")
        except ObjectNotFound:
            try:
                client.create_work_pool(WorkPoolCreate(
                    name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template()))
            except ObjectAlreadyExists:  # a worker created it meanwhile
                pass
        flow_id = client.create_flow_from_name(DEPLOYMENT)
        deployment_id = client.create_deployment(
            flow_id, DEPLOYMENT, work_pool_name=pool, entrypoint=ENTRYPOINT,
            pull_steps=[{"prefect.deployments.steps.set_working_directory":
                         {"directory": "{{ $" + WORKER_CLONE_ENV + " }}"}}],
            parameter_openapi_schema=parameter_schema(run_point).model_dump_for_openapi(),
            description="One (method, seed) point of an `act ablate --pool` sweep, in the worker's clone")
    return str(deployment_id)


def last_heartbeats(flow_run_ids: Iterable[str], since: float) -> dict[str, float]:
    """Flow run id -> time (epoch seconds) of its latest heartbeat event since `since`."""
    from datetime import datetime, timezone

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    ids = [f"prefect.flow-run.{i}" for i in flow_run_ids]
    if not ids:
        return {}
    out: dict[str, float] = {}
    event_filter = EventFilter(occurred=EventOccurredFilter(since=datetime.fromtimestamp(since, timezone.utc)),
                               event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                               resource=EventResourceFilter(id=ids))
    with get_client(sync_client=True) as client:
        page = client.read_events(filter=event_filter, limit=50)
        while True:
            for event in page.events:
                run_id = event.resource.id.removeprefix("prefect.flow-run.")
                out[run_id] = max(out.get(run_id, 0.0), event.occurred.timestamp())
            if not page.next_page:
                break
            page = client.read_events_page(page.next_page)
    return out


def _submit(name: str, entry: dict[str, Any], commit: str, remote: str, parent_run_id: str | None,
            rerun: bool, attempt: int) -> str:
    from prefect.deployments import run_deployment

    run = run_deployment(f"{DEPLOYMENT}/{DEPLOYMENT}", timeout=0, flow_run_name=f"{name} #{attempt}",
                         tags=["act-sweep", f"seed-{entry['seed']}"],
                         parameters={"name": name, "commit": commit, "overrides": entry["overrides"],
                                     "methods": list(entry["methods"]), "seed": entry["seed"], "remote": remote,
                                     "parent_run_id": parent_run_id, "rerun": rerun})
    return str(run.id)


def _mark_crashed(flow_run_id: str, why: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Crashed(message=why), force=True)


def run_pool(root: Path, plan: dict[str, dict[str, Any]], pool: str, baseline: str, *, remote: str = "origin",
             retries: int = 2, stale_s: float = 120.0, rerun: bool = False, parent_run_id: str | None = None,
             uri: str | None = None, poll_s: float = 5.0) -> dict[str, dict[str, Any]]:
    """Run the points of `plan` on the work pool and wait for all of them (see the module doc).
    Returns name -> {"state": "ran" | "reused", "attempts", "flow_runs"}; raises naming every point
    that failed or crashed more than `retries` times."""
    from prefect.client.orchestration import get_client

    from act.tracking import kill_runs

    logger = get_run_logger()
    require_pushed(root, remote, baseline)
    ensure_deployment(pool)
    todo = to_submit(plan, remote_finished(root, remote, baseline), rerun)
    result = {name: {"state": "reused", "attempts": 0, "flow_runs": []} for name in plan if name not in todo}
    logger.info("%d points on pool %s (%d on %s already)", len(todo), pool, len(plan) - len(todo), remote)
    for name in todo:
        result[name] = {"state": "pending", "attempts": 1, "flow_runs": [
            _submit(name, plan[name], baseline, remote, parent_run_id, rerun, 1)]}
    started = time.time()
    bad: list[str] = []
    pending = list(todo)
    while pending:
        time.sleep(poll_s)
        current = {result[n]["flow_runs"][-1]: n for n in pending}
        try:
            beats: dict[str, float] | None = last_heartbeats(current, started - 60)
        except Exception as e:  # the events API unreachable for a moment: no point counts as silent
            logger.warning("could not read heartbeats: %s", e)
            beats = None
        with get_client(sync_client=True) as client:
            runs = {str(r.id): r for r in (client.read_flow_run(i) for i in current)}
        for run_id, name in current.items():
            run = runs[run_id]
            state = run.state.type.value if run.state else "SCHEDULED"
            seen = max((beats or {}).get(run_id, 0.0), run.state.timestamp.timestamp() if run.state else started)
            silent = None if beats is None else time.time() - seen
            action = decide(state, result[name]["attempts"], retries, silent, stale_s)
            if action == "wait":
                continue
            pending.remove(name)
            if action == "done":
                result[name]["state"] = "ran"
                logger.info("%s done (flow run %s)", name, run.name)
                continue
            if state != "CRASHED" and action in ("resubmit", "exhausted"):
                why = f"no heartbeat for {time.time() - seen:.0f}s: its worker is gone"
                _mark_crashed(run_id, why)
                logger.warning("%s: flow run %s %s; marked CRASHED", name, run.name, why)
            if uri and action in ("resubmit", "exhausted"):
                kill_runs(uri, {"prefect.flow_run_id": run_id})  # its MLflow runs will never end by themselves
            if action == "resubmit":
                attempt = result[name]["attempts"] + 1
                result[name]["attempts"] = attempt
                result[name]["flow_runs"].append(_submit(name, plan[name], baseline, remote, parent_run_id, rerun, attempt))
                pending.append(name)
                logger.warning("%s resubmitted (attempt %d of %d)", name, attempt, retries + 1)
            else:
                result[name]["state"] = "failed" if action == "failed" else "crashed"
                bad.append(f"{name} ({state}, flow run {run.name}, {result[name]['attempts']} attempt(s))")
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(todo)} points did not finish on pool {pool}: {'; '.join(bad)} "
                           f"(their logs: the flow runs in the Prefect UI)")
    return result


# ----------------------------------------------------------------------------- `act worker`


def worker_env(clone: Path, name: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a worker's flow runs need: the clone (where the pull step changes to, and
    first on PYTHONPATH so `flows.pool` and `act` load from it), the worker's name, heartbeats, and
    this interpreter's scripts first on PATH. Everything else (PREFECT_API_URL,
    MLFLOW_TRACKING_URI, credentials of the DVC remote and the tracking server) comes from the
    caller's environment, unchanged and never logged."""
    env = dict(os.environ if base is None else base)
    env[WORKER_CLONE_ENV] = str(clone)
    env["ACT_WORKER_NAME"] = name
    env["PYTHONPATH"] = os.pathsep.join([str(clone), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_S))
    return env


def worker_command(pool: str, name: str, limit: int = 1) -> list[str]:
    return [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process",
            "--limit", str(limit), "--name", name]


def start_worker(clone: str | Path, pool: str, name: str | None = None, limit: int = 1) -> None:
    """`act worker`: replace this process with `prefect worker start` for `pool`, in `clone`."""
    clone = Path(clone).resolve()
    if not (clone / ".git").exists() or not (clone / "dvc.yaml").is_file():
        raise SystemExit(f"{clone} is not a clone of the project (no .git or dvc.yaml): run `act worker` in one")
    if not os.environ.get("PREFECT_API_URL"):
        raise SystemExit("PREFECT_API_URL is not set: workers must reach the sweep's Prefect server")
    name = name or f"{socket.gethostname()}-{os.environ.get('CUDA_VISIBLE_DEVICES', 'cpu').replace(',', '_')}"
    env = worker_env(clone, name)
    if not env.get("MLFLOW_TRACKING_URI"):
        print("warning: MLFLOW_TRACKING_URI is not set: the points' MLflow runs stay in the clone's mlflow.db",
              file=sys.stderr)
    os.chdir(clone)
    os.execve(sys.executable, worker_command(pool, name, limit), env)
