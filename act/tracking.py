"""Experiment tracking: one MLflow run per stage execution, nested under a flow's parent run.

    with stage_run("pairs", params, params.pairs, tags={"act.dataset": "ambigsql"}) as tracker:
        ...
        tracker.finish(metrics, "metrics/pairs/ambigsql.json", started=t0)

`finish` is every stage's epilogue: it writes the metrics JSON that DVC tracks *without* the
wall-clock figures (`seconds`, `*_seconds`, `*_per_s`: they differ on every run and machine),
writes those to an untracked timings file (`metrics/timings/...`, see `timings_path`), and logs
everything to MLflow. Flows open their parent run with `parent_run()`.

Runs are written through `MlflowClient` (no global "active run"). Values of secret-looking
environment variables never reach MLflow (`redact`). Each run carries its host and pid as tags: a
run left RUNNING by a process that is gone is marked KILLED when the next run starts, and a
SIGTERM'd stage marks its own run KILLED before exiting. Tracking is off with
`tracking.enabled: false` or ACT_TRACKING=off; then a `NullRun` keeps the same interface and
`finish` still writes the files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol

if TYPE_CHECKING:
    from act.params import Params

log = logging.getLogger("act.tracking")

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.I)


# ---------------------------------------------------------------- plain values


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; dataclasses and tuples become plain values."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, (list, tuple)):
        return {prefix[:-1]: json.dumps(list(obj))}
    return {prefix[:-1]: obj}


def mlflow_key(name: str) -> str:
    """MLflow names allow letters, digits and `_-. :/`; a DVC foreach stage `pairs@ambigsql`
    becomes `pairs/ambigsql`."""
    return re.sub(r"[^\w\-. :/]", "_", name.replace("@", "/"))


def _secrets() -> list[str]:
    """Values of secret-looking environment variables (API keys...), longest first."""
    vals = {v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= 8}
    return sorted(vals, key=len, reverse=True)


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """Mask any environment secret inside a value bound for MLflow (params, tags, dicts).

    Params only ever name the variable holding a key; this guards against a key pasted into a
    URL or prompt by mistake reaching a shared tracking server."""
    secrets = _secrets() if secrets is None else secrets
    if isinstance(value, str):
        for s in secrets:
            value = value.replace(s, "***")
        return value
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, secrets) for v in value]
    return value


def is_timing(key: str) -> bool:
    """Wall-clock figures: `seconds`, `train_seconds`, `pretrain_tokens_per_s`, ..."""
    last = key.rsplit(".", 1)[-1].rsplit("/", 1)[-1]
    return last == "seconds" or last.endswith(("_seconds", "_per_s", "_per_second", "_runtime"))


def split_timings(metrics: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics without wall-clock figures, the wall-clock figures), nesting kept in both."""
    rest: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            r, t = split_timings(v)
            rest[k] = r
            if t:
                timings[k] = t
        elif is_timing(k) and isinstance(v, (int, float)) and not isinstance(v, bool):
            timings[k] = v
        else:
            rest[k] = v
    return rest, timings


def timings_path(metrics_path: str | Path) -> Path:
    """Where a stage's wall-clock figures go: `metrics/base.json` -> `metrics/timings/base.json`,
    `metrics/pairs/x.json` -> `metrics/timings/pairs/x.json`; outside a `metrics` folder,
    `<name>.timings.json` beside it. Untracked by git and DVC (gitignored)."""
    p = Path(metrics_path)
    parts = p.parts
    if "metrics" in parts[:-1]:
        i = len(parts) - 1 - parts[:-1][::-1].index("metrics") - 1
        return Path(*parts[: i + 1], "timings", *parts[i + 1:])
    return p.with_name(p.stem + ".timings.json")


# ---------------------------------------------------------------- trackers


class Tracker(Protocol):
    """What stages and flows log through; `MlflowRun` or `NullRun`."""

    run_id: str | None
    tracking_uri: str | None

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_dict(self, obj: dict, name: str) -> None: ...
    def log_text(self, text: str, name: str) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...
    def finish(self, metrics: dict[str, Any], path: str | Path, *, started: float | None = None,
               artifacts: tuple[tuple[str | Path, str | None], ...] = ()) -> dict[str, Any]: ...


class _Finish:
    """The stage epilogue shared by both trackers."""

    def finish(self, metrics: dict[str, Any], path: str | Path, *, started: float | None = None,
               artifacts: tuple[tuple[str | Path, str | None], ...] = ()) -> dict[str, Any]:
        """Write `path` (the DVC metric, no wall-clock figures) and its timings file, log every
        figure and `path` (plus `artifacts`: (path, artifact folder) pairs) to MLflow.

        `started` (time.monotonic() at the stage's start) adds `seconds`. Returns the metrics,
        timings included."""
        from act.distributed import is_main_process
        from act.io import write_json

        if started is not None:
            metrics["seconds"] = round(time.monotonic() - started, 2)
        if not is_main_process():  # a multi-process launch: the main process alone writes
            return metrics
        tracked, timings = split_timings(metrics)
        write_json(path, tracked)
        if timings:
            write_json(timings_path(path), timings)
        self.log_metrics(metrics)  # type: ignore[attr-defined]
        self.log_artifact(path)  # type: ignore[attr-defined]
        for art, folder in artifacts:
            self.log_artifact(art, folder)  # type: ignore[attr-defined]
        return metrics


class NullRun(_Finish):
    """Tracking switched off: same interface, records nothing in MLflow."""

    run_id = None
    tracking_uri = None

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None: ...
    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...
    def log_dict(self, obj: dict, name: str) -> None: ...
    def log_text(self, text: str, name: str) -> None: ...
    def set_tags(self, tags: dict[str, str]) -> None: ...


class MlflowRun(_Finish):
    """One MLflow run, written through `MlflowClient` (no global "active run" state, so stages,
    flows and the trainer's own MLflow callback cannot step on each other)."""

    def __init__(self, client, run_id: str, tracking_uri: str | None = None):
        self.client, self.run_id, self.tracking_uri = client, run_id, tracking_uri

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Nested dicts are flattened to dotted names; non-numbers are skipped."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        batch = [Metric(mlflow_key(k), float(v), ts, step or 0) for k, v in flatten(metrics).items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for i in range(0, len(batch), 900):
            self.client.log_batch(self.run_id, metrics=batch[i:i + 900])

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        secrets = _secrets()
        items = [Param(mlflow_key(k), str(redact(v, secrets))[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 90):
            self.client.log_batch(self.run_id, params=items[i:i + 90])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file or a whole directory (e.g. a LoRA adapter); a missing path is skipped."""
        p = Path(path)
        if p.is_dir():
            self.client.log_artifacts(self.run_id, str(p), artifact_path)
        elif p.exists():
            self.client.log_artifact(self.run_id, str(p), artifact_path)
        else:
            log.warning("artifact %s does not exist; not logged", p)

    def log_dict(self, obj: dict, name: str) -> None:
        self.client.log_dict(self.run_id, redact(obj), name)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, redact(text), name)

    def set_tags(self, tags: dict[str, str]) -> None:
        secrets = _secrets()
        for k, v in tags.items():
            self.client.set_tag(self.run_id, mlflow_key(k), redact(str(v), secrets))

    def tag_from_lock(self, lock_path: str | Path, dvc_stage: str) -> None:
        """Tag this parent run's child for `dvc_stage` with the dep and out hashes DVC wrote to
        dvc.lock for it (`dvc.dep.<path>`, `dvc.out.<path>`): lineage read once, after the stage."""
        import yaml

        lock = Path(lock_path)
        if not lock.exists():
            return
        entry = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {}).get(dvc_stage)
        if not entry:
            return
        exp_id = self.client.get_run(self.run_id).info.experiment_id
        runs = self.client.search_runs([exp_id], filter_string=(
            f"tags.mlflow.parentRunId = '{self.run_id}' and tags.`act.dvc_stage` = '{dvc_stage}'"))
        for run in runs[:1]:
            for kind in ("deps", "outs"):
                for item in entry.get(kind, []):
                    if "md5" in item:
                        self.client.set_tag(run.info.run_id, mlflow_key(f"dvc.{kind[:-1]}.{item['path']}"),
                                            item["md5"])


# ---------------------------------------------------------------- where runs go


def tracking_enabled(params: Params) -> bool:
    """On unless switched off; never on a non-main process of a multi-process launch."""
    from act.distributed import is_main_process

    return (params.tracking.enabled and os.environ.get("ACT_TRACKING", "on").lower() not in ("0", "off", "false")
            and is_main_process())


def project_root() -> Path:
    """The DVC project the stage belongs to. Under `dvc exp run --temp` the stage runs in a
    scratch copy, but DVC_ROOT still names the user's project, so runs land in its store."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri(root: str | Path | None = None) -> str:
    """MLFLOW_TRACKING_URI (a relative sqlite path made absolute against `root`), else the
    project's mlflow.db: stages may run in scratch copies (dvc exp --temp) and share one store."""
    base = Path(root).resolve() if root is not None else project_root()
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri:
        return f"sqlite:///{base / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(base / uri[len('sqlite:///'):]).resolve()}"
    return uri


EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
"""The MLflow 3 UI opens an experiment by its kind: without this tag it may guess "GenAI apps &
agents" and open on an empty traces Overview; with it, the experiment opens on its training runs."""


def experiment_id(client, name: str, uri: str) -> str:
    """Get or create the experiment (tagged as model training, `EXPERIMENT_KIND`). A local store
    gets artifacts beside the project's mlflow.db, so the first stage to create it (possibly in a
    scratch copy) decides nothing."""
    exp = client.get_experiment_by_name(name)
    if exp:
        for key, value in EXPERIMENT_KIND.items():
            if key not in exp.tags:  # an experiment made before the tag, or by another tool
                client.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
    except Exception:  # two stages racing to create it: the other one won
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def git_commit(cwd: str | Path | None = None) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=cwd).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def lineage_tags(stage: str, params: Params, tags: dict[str, str]) -> dict[str, str]:
    """Tags tying a run to what produced it: commit, DVC stage (with foreach item), dataset,
    method and seed. The dep and out hashes come from dvc.lock once DVC wrote it
    (`MlflowRun.tag_from_lock`, called by the pipeline flow)."""
    from act.datasets import BENCHMARKS

    dvc_stage = os.environ.get("DVC_STAGE", "")
    item = dvc_stage.partition("@")[2]
    dataset = tags.get("dataset") or (item if item in BENCHMARKS else params.dataset)
    commit = git_commit()
    out = {
        "act.stage": stage,
        "act.dvc_stage": dvc_stage or stage,
        "act.dataset": dataset,
        "act.method": os.environ.get("ACT_METHOD", "act"),
        "act.seed": os.environ.get("ACT_SEED", str(params.seed)),
        "git.commit": commit,
        "mlflow.source.git.commit": commit,
    }
    if os.environ.get("DVC_EXP_NAME"):
        out["dvc.exp"] = os.environ["DVC_EXP_NAME"]
    return out


# ---------------------------------------------------------------- run lifetime


def _process_tags() -> dict[str, str]:
    return {"act.host": socket.gethostname(), "act.pid": str(os.getpid())}


def reap_orphans(client, exp_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of this host whose process is gone (a stage killed with
    SIGKILL, a machine that lost power...). Returns their ids."""
    host = socket.gethostname()
    reaped = []
    try:
        runs = client.search_runs([exp_id], filter_string=f"attributes.status = 'RUNNING' and tags.`act.host` = '{host}'",
                                  max_results=1000)
    except Exception as e:  # tracking must never break a stage
        log.warning("could not look for orphaned runs: %s", e)
        return []
    from act.io import pid_alive

    for run in runs:
        pid = run.data.tags.get("act.pid", "")
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            client.set_terminated(run.info.run_id, "KILLED")
            reaped.append(run.info.run_id)
    if reaped:
        log.info("marked %d orphaned RUNNING run(s) KILLED", len(reaped))
    return reaped


class _Terminated(BaseException):
    """Raised by the SIGTERM handler so the run's `finally` marks it KILLED."""

    def __init__(self, signum: int):
        super().__init__(f"terminated by signal {signum}")
        self.signum = signum


@contextlib.contextmanager
def _terminate_as_exception() -> Iterator[None]:
    """While inside, SIGTERM raises `_Terminated` (main thread only; elsewhere nothing changes)."""
    def handler(signum, frame):
        raise _Terminated(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _run_lifetime(client, run_id: str) -> Iterator[None]:
    """End the run FINISHED, FAILED when the block raises, KILLED on SIGTERM or Ctrl-C (then
    exit with 128 + signal number, as a process killed by it would)."""
    status = "FAILED"
    try:
        with _terminate_as_exception():
            yield
        status = "FINISHED"
    except _Terminated as e:
        status = "KILLED"
        raise SystemExit(128 + e.signum) from None
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        client.set_terminated(run_id, status)


@contextlib.contextmanager
def scoped_env(**values: str) -> Iterator[None]:
    """Set environment variables for the block, then restore (or remove) each one."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _open(params: Params, uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_id = experiment_id(client, params.tracking.experiment, uri)
    reap_orphans(client, exp_id)
    return client, exp_id


@contextlib.contextmanager
def stage_run(stage: str, params: Params, section: Any, tags: dict[str, str] | None = None) -> Iterator[Tracker]:
    """An MLflow run for one stage execution, nested under $ACT_PARENT_RUN_ID when a flow set it.

    Logs the seed, dataset and the stage's own params section (flattened as `<stage>.<key>`), and
    the lineage tags above. Inside the block MLFLOW_TRACKING_URI and MLFLOW_RUN_ID point at this
    run, so a trainer's MLflow callback logs its curves into it. The run ends FINISHED, FAILED
    when the block raises, KILLED on SIGTERM."""
    if not tracking_enabled(params):
        yield NullRun()
        return
    uri = tracking_uri()
    client, exp_id = _open(params, uri)
    tags = dict(tags or {})
    all_tags = {**lineage_tags(stage, params, tags), **_process_tags()}
    parent = os.environ.get("ACT_PARENT_RUN_ID")
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    all_tags.update(tags)
    run = client.create_run(exp_id, run_name=all_tags["act.dvc_stage"],
                            tags={mlflow_key(k): redact(str(v)) for k, v in all_tags.items()})
    tracked = MlflowRun(client, run.info.run_id, uri)
    tracked.log_params({"seed": params.seed, "dataset": params.dataset,
                        **{f"{stage}.{k}": v for k, v in flatten(section).items()}})
    with _run_lifetime(client, run.info.run_id):
        with scoped_env(MLFLOW_TRACKING_URI=uri, MLFLOW_RUN_ID=run.info.run_id):
            yield tracked


@contextlib.contextmanager
def parent_run(params: Params, name: str, *, root: str | Path, tags: dict[str, str] | None = None,
               run_name: str | None = None) -> Iterator[Tracker]:
    """A flow's MLflow run (`act.stage` tag `name`: `pipeline`, `ablations`), nested under
    $ACT_PARENT_RUN_ID when a sweep set it. Stage runs nest under it through the ACT_PARENT_RUN_ID
    the flow passes on (`tracker.run_id`). `run_name` (default `name`) is what the runs table
    shows: flows pass one a person can tell apart (targets, method and seed, commit). The commit
    is tagged both as `git.commit` and as MLflow's own `mlflow.source.git.commit` (the UI shows
    that one). NullRun when tracking is off. Ends like `stage_run`."""
    if not tracking_enabled(params):
        yield NullRun()
        return
    uri = tracking_uri(root)
    client, exp_id = _open(params, uri)
    commit = git_commit(root)
    all_tags = {"act.stage": name, "git.commit": commit, "mlflow.source.git.commit": commit, **_process_tags(),
                **(tags or {})}
    if os.environ.get("ACT_PARENT_RUN_ID"):
        all_tags["mlflow.parentRunId"] = os.environ["ACT_PARENT_RUN_ID"]
    run = client.create_run(exp_id, run_name=run_name or name,
                            tags={mlflow_key(k): redact(str(v)) for k, v in all_tags.items()})
    with _run_lifetime(client, run.info.run_id):
        yield MlflowRun(client, run.info.run_id, uri)


def tag_methods(uri: str, experiment: str, plan: dict[str, dict[str, Any]]) -> int:
    """Give the MLflow runs of each queued experiment (found by their `dvc.exp` tag) the method and
    seed tags that a sequential sweep passes through the environment. Returns the runs tagged."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return 0
    n = 0
    for name, entry in plan.items():
        for run in client.search_runs([exp.experiment_id], filter_string=f"tags.`dvc.exp` = '{name}'", max_results=1000):
            client.set_tag(run.info.run_id, "act.method", "+".join(entry["methods"]))
            client.set_tag(run.info.run_id, "act.seed", str(entry["seed"]))
            n += 1
    return n


def stage_seconds(uri: str, experiment: str, exp_name: str) -> dict[str, float]:
    """Wall time of each stage that ran in DVC experiment `exp_name` (its MLflow runs, found by
    their `dvc.exp` tag; the latest run per stage when the experiment was rerun): its `seconds`
    metric, else the finished run's start-to-end time. A stage DVC restored from its run cache ran
    elsewhere and is absent. {} without a store or runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    out: dict[str, float] = {}
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`dvc.exp` = '{exp_name}'",
                              order_by=["attributes.start_time DESC"], max_results=1000)
    for run in runs:
        stage = run.data.tags.get("act.dvc_stage") or run.data.tags.get("act.stage")
        if not stage or stage in out:
            continue
        if "seconds" in run.data.metrics:
            out[stage] = round(float(run.data.metrics["seconds"]), 1)
        elif run.info.status == "FINISHED" and run.info.end_time and run.info.start_time:
            out[stage] = round((run.info.end_time - run.info.start_time) / 1000, 1)  # a stage that logs no `seconds`
    return dict(sorted(out.items()))


def tag_tree(uri: str, root_run_id: str, tags: dict[str, str]) -> int:
    """Set `tags` on a run and every run nested under it (a sweep point's run and its stage runs:
    the worker that ran them). Returns the runs tagged."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp_id = client.get_run(root_run_id).info.experiment_id
    todo, n = [root_run_id], 0
    while todo:
        run_id = todo.pop()
        for k, v in tags.items():
            client.set_tag(run_id, mlflow_key(k), redact(str(v)))
        n += 1
        todo.extend(r.info.run_id for r in client.search_runs(
            [exp_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'", max_results=1000))
    return n


def kill_runs(uri: str, tags: dict[str, str]) -> list[str]:
    """Mark KILLED the RUNNING runs carrying `tags`, and the RUNNING runs nested under them: the
    MLflow runs of a sweep point whose worker died (no process is left to end them). Returns their ids."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    killed: list[str] = []
    for exp in client.search_experiments():
        todo = [r.info.run_id for r in client.search_runs([exp.experiment_id], filter_string=where, max_results=1000)]
        while todo:
            run_id = todo.pop()
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_terminated(run_id, "KILLED")
                killed.append(run_id)
            todo.extend(r.info.run_id for r in client.search_runs(
                [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'", max_results=1000))
    return killed
