"""The pipeline flow: the DVC DAG as Prefect tasks, one per DVC stage, in DAG order.

Each task runs `dvc repro --single-item <stage>`, so DVC stays the record: a run started from the
Prefect UI or a schedule leaves `dvc.lock` and the DVC cache exactly as `dvc repro` would, and an
unchanged stage is skipped by DVC. The stage list is read from dvc.yaml (through DVC), never
hard-coded. All stage runs nest under one MLflow parent run.

    act run                      # whole DAG
    act run --targets pairs      # pairs stages and what they need
    python -m flows.pipeline     # the flow alone (no server choice, no terminal lines)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from prefect import flow, get_run_logger, task

from flows.display import announce_flow_run, log_noise, pipeline_name, pipeline_run_name, say, still_running


@dataclass(frozen=True)
class DagStage:
    """One (expanded) DVC stage, e.g. `ingest@ambigsql`."""

    name: str
    cmd: str
    params: tuple[str, ...] = ()
    """params.yaml keys the stage declares (`roles.annotator`, `pairs`...)."""
    deps: tuple[str, ...] = ()
    outs: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    upstream: tuple[str, ...] = field(default=())

    @property
    def base(self) -> str:
        """The stage's module/section name: `ingest` for `ingest@ambigsql`."""
        return self.name.partition("@")[0]

    @property
    def item(self) -> str:
        return self.name.partition("@")[2]


def dag(root: str | Path = ".", targets: Sequence[str] | None = None) -> list[DagStage]:
    """The stages of dvc.yaml in an order DVC would run them (dvc.yaml order among equals).

    `targets` (stage names, or a base name such as `pairs` for all its foreach items) keeps only
    those stages and everything upstream of them."""
    import networkx as nx
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = [s for s in repo.index.stages if getattr(s, "cmd", None)]
        graph = repo.index.graph  # edge u -> v: u depends on v
        position = {s.name: i for i, s in enumerate(stages)}
        order = list(nx.lexicographical_topological_sort(
            graph.reverse(copy=True), key=lambda s: f"{position.get(s.name, 1 << 30):09d}"))
        by_name: dict[str, DagStage] = {}
        for s in order:
            if s.name not in position:
                continue
            params: list[str] = []
            deps: list[str] = []
            for d in s.deps:
                if isinstance(d, ParamsDependency):
                    params.extend(d.params or [])
                else:
                    deps.append(str(d.def_path))
            by_name[s.name] = DagStage(
                name=s.name,
                cmd=s.cmd if isinstance(s.cmd, str) else " && ".join(s.cmd),
                params=tuple(params),
                deps=tuple(deps),
                outs=tuple(str(o.def_path) for o in s.outs),
                metrics=tuple(str(o.def_path) for o in s.outs if o.metric),
                upstream=tuple(sorted(v.name for v in graph.successors(s) if v.name in position)),
            )
    ordered = list(by_name.values())
    if not targets:
        return ordered
    unknown = [t for t in targets if not any(t in (st.name, st.base) for st in ordered)]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; dvc.yaml has {sorted({s.base for s in ordered})}")
    keep: set[str] = set()
    todo = [st.name for st in ordered if st.name in targets or st.base in targets]
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo.extend(by_name[name].upstream)
    return [st for st in ordered if st.name in keep]


def calls_external_api(stage: DagStage, params: Any) -> bool:
    """True when the stage uses a model role whose backend is an HTTP API (worth retrying)."""
    from act.roles import ROLE_NAMES as names

    roles = params.roles
    for key in stage.params:
        if key == "roles":
            if any(getattr(roles, n).backend == "http" for n in names):
                return True
        elif key.startswith("roles."):
            role = key.split(".")[1]
            if role in names and getattr(roles, role).backend == "http":
                return True
    return False


def _command_env(extra: dict[str, str]) -> dict[str, str]:
    """The stage commands say `python -m stages.x`: make `python` and `dvc` this interpreter's."""
    from act.progress import QUIET_ENV

    env = {**QUIET_ENV, **os.environ}  # the stage's output goes to the task's logs: no bars
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


@task(task_run_name="{stage}")
def repro_stage(stage: str, root: str, env: dict[str, str], force: bool = False) -> dict[str, Any]:
    """`dvc repro --single-item <stage>`: upstream stages already ran in DAG order. Every line it
    prints goes to this task's run logger (the task's logs in the Prefect UI). DVC and the stage
    run in a process group of their own: when this process is stopped (SIGTERM, Ctrl-C) the group
    gets SIGTERM, so the stage's MLflow run ends KILLED rather than running on unseen."""
    logger = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", "repro", "--single-item", stage] + (["--force"] if force else [])
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=root, env=_command_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True)
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if line and not log_noise(line):
                logger.info(line)
        rc = proc.wait()
    except BaseException:
        _terminate_group(proc)
        raise
    seconds = round(time.time() - t0, 2)
    if rc != 0:
        tail = "\n".join(lines[-40:])
        raise RuntimeError(f"dvc repro --single-item {stage} failed (exit {rc}) after {seconds}s:\n{tail}")
    skipped = any("didn't change, skipping" in ln or "Stage is cached" in ln for ln in lines)
    restored = any("Restored stage" in ln for ln in lines)
    state = "restored" if restored else ("skipped" if skipped else "ran")
    return {"stage": stage, "state": state, "seconds": seconds}


def _terminate_group(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM the stage's process group (DVC and the stage: its MLflow run ends KILLED) and wait
    until every process of it is gone, then SIGKILL whatever is left."""
    import signal

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            proc.poll()  # reap DVC itself; the stage, once orphaned, is reaped by init
            try:
                os.killpg(proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.2)


def read_metrics(root: str | Path, stages: Sequence[DagStage]) -> dict[str, Any]:
    """Each stage's metrics JSON, keyed by DVC stage name (the same dicts the stages logged)."""
    import json

    out: dict[str, Any] = {}
    for st in stages:
        for rel in st.metrics:
            path = Path(root) / rel
            if path.exists():
                try:
                    out[st.name] = json.loads(path.read_text(encoding="utf-8"))
                except json.JSONDecodeError:
                    out[st.name] = {}
    return out


TRAINING_FIGURES: dict[str, tuple[str, ...]] = {
    "sft": ("steps", "train_loss", "loss_first", "loss_last"),
    "train": ("steps", "pairs", "train_loss", "final/rewards/margins", "final/rewards/accuracies",
              "probe/start/rewards/margins", "probe/end/rewards/margins", "probe/end/rewards/accuracies",
              "sampling_rounds"),
}
"""The key figures of the training stages shown in the run's artifact (those a stage reported)."""


def headline(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per policy of the evaluate stage's metrics: the headline metrics
    (`act.metrics.summary.HEADLINE`, by their titles) and the number of eval turns."""
    from act.metrics.summary import HEADLINE

    rows = []
    for policy, levels in (metrics.get("evaluate") or {}).items():
        if not isinstance(levels, dict):
            continue
        row: dict[str, Any] = {"policy": policy}
        for level, key, title in HEADLINE:
            value = levels.get(level, {}).get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                row[title] = round(float(value), 4)
        n = levels.get("trajectory", {}).get("n")
        if isinstance(n, (int, float)):
            row["n"] = int(n)
        rows.append(row)
    return rows


def training_figures(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows (stage, figure, value) of `TRAINING_FIGURES` that the training stages reported."""
    rows = []
    for stage, keys in TRAINING_FIGURES.items():
        for key in keys:
            value = (metrics.get(stage) or {}).get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"stage": stage, "figure": key, "value": round(float(value), 4)})
    return rows


def _markdown(results: list[dict[str, Any]], metrics: dict[str, Any], parent: str | None) -> str:
    lines = ["# ACT pipeline run", ""]
    if parent:
        lines += [f"MLflow parent run: `{parent}`", ""]
    lines += ["| stage | state | seconds |", "|---|---|---:|"]
    lines += [f"| {r['stage']} | {r['state']} | {r['seconds']} |" for r in results]
    if metrics.get("evaluate"):
        from act.tables import headline_table

        lines += ["", "## Headline metrics per policy (evaluate)", "", headline_table(metrics["evaluate"])]
    figures = training_figures(metrics)
    if figures:
        lines += ["", "## Training", "", "| stage | figure | value |", "|---|---|---:|"]
        lines += [f"| {r['stage']} | {r['figure']} | {r['value']} |" for r in figures]
    return "\n".join(lines) + "\n"


def headline_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """What the parent run logs: the headline metrics per policy of the evaluate stage
    (`act.metrics.summary.HEADLINE`) as `<policy>/<level>.<metric>` (MLflow's chart view groups
    them by policy). Each stage's full metrics live on its own child run (and in pipeline.json)."""
    from act.metrics.summary import HEADLINE

    out: dict[str, float] = {}
    for policy, levels in (metrics.get("evaluate") or {}).items():
        if not isinstance(levels, dict):
            continue
        for level, key, _ in HEADLINE:
            value = (levels.get(level) or {}).get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{policy}/{level}.{key}"] = float(value)
    return out


@flow(name="act-pipeline", flow_run_name=pipeline_run_name, log_prints=True)
def pipeline(root: str = ".", params_file: str = "params.yaml", targets: list[str] | None = None,
             force: bool = False, method: str | None = None, seed: int | None = None) -> dict[str, Any]:
    """Run the DVC DAG stage by stage; returns per-stage state/timing, the parent run id and
    every stage's metrics."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from act.params import load_params
    from act.tracking import flatten, parent_run, tracking_uri

    logger = get_run_logger()
    root_path = Path(root).resolve()
    params = load_params(root_path / params_file)
    stages = dag(root_path, targets)
    logger.info("DAG: %s", " -> ".join(s.name for s in stages))
    announce_flow_run(logger)

    env = {"MLFLOW_TRACKING_URI": tracking_uri(root_path),
           "ACT_METHOD": method or os.environ.get("ACT_METHOD") or "act",
           "ACT_SEED": str(params.seed if seed is None else seed)}
    tags = {"act.method": env["ACT_METHOD"], "act.seed": env["ACT_SEED"], "act.dataset": params.dataset}
    try:
        from prefect.runtime import flow_run

        tags["prefect.flow_run_id"] = str(flow_run.id)
    except Exception:
        pass
    results: list[dict[str, Any]] = []
    run_name = pipeline_name(root_path, params_file, targets, env["ACT_METHOD"], env["ACT_SEED"])
    with parent_run(params, "pipeline", root=root_path, tags=tags, run_name=run_name) as parent:
        if parent.run_id:
            env["ACT_PARENT_RUN_ID"] = parent.run_id
        else:
            env["ACT_TRACKING"] = "off"
        try:
            for st in stages:
                options: dict[str, Any] = {"name": st.name}
                if calls_external_api(st, params):
                    options.update(retries=params.tracking.retries,
                                   retry_delay_seconds=params.tracking.retry_delay_s,
                                   timeout_seconds=params.tracking.timeout_s)
                t0 = time.time()
                try:
                    with still_running(logger, st.name):
                        results.append(repro_stage.with_options(**options)(st.name, str(root_path), env, force))
                except Exception:
                    say(logger, f"{st.name:<24} {'failed':<9} {time.time() - t0:>8.1f}s  (its logs: the task run)")
                    raise
                r = results[-1]
                say(logger, f"{r['stage']:<24} {r['state']:<9} {r['seconds']:>8.1f}s  [{len(results)}/{len(stages)}]")
                if parent.run_id and results[-1]["state"] == "ran":
                    parent.tag_from_lock(root_path / "dvc.lock", st.name)
        finally:
            metrics = read_metrics(root_path, stages)
            parent.log_params({"seed": params.seed, "dataset": params.dataset,
                               "targets": ",".join(targets or []) or "all"})
            parent.log_metrics(headline_metrics(metrics))
            parent.log_dict({"stages": results, "metrics": metrics}, "pipeline.json")
    rows = headline(metrics)
    create_markdown_artifact(key="act-pipeline", markdown=_markdown(results, metrics, parent.run_id),
                             description="ACT pipeline: stage states, timings, headline metrics per policy, training figures")
    if rows:
        create_table_artifact(key="act-pipeline-metrics", table=rows,
                              description="Headline metrics per policy (metrics/evaluate.json)")
    return {"stages": results, "parent_run_id": parent.run_id, "metrics": flatten(metrics)}


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m flows.pipeline [--targets ...] [--force]`: the flow alone, on the Prefect server
    PREFECT_API_URL names (else a temporary one). `act run` (flows/cli.py) adds the choice of
    server and the terminal lines; this module imports nothing of flows/ but its tasks."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m flows.pipeline", description="the ACT pipeline flow")
    p.add_argument("-C", "--root", default=".")
    p.add_argument("--targets", nargs="*", default=None, metavar="STAGE")
    p.add_argument("--force", action="store_true")
    p.add_argument("--params", default="params.yaml")
    args = p.parse_args(argv)
    pipeline(root=os.path.abspath(args.root), params_file=args.params, targets=args.targets, force=args.force)


if __name__ == "__main__":
    main()
