"""The ablation flow: baselines and ablations over seeds, each a DVC experiment.

    act ablate --seeds 0 1 2                          all methods
    act ablate --seeds 0 1 --methods act act_random_actions
    act ablate --seeds 0 1 2 --jobs 3                 three experiments at a time (DVC's queue)
    act ablate --seeds 0 1 2 --pool gpus              each experiment a flow run on a Prefect work pool

Each (method, seed) is `dvc exp run --temp --name <method>-s<seed> -S seed=<n> -S <switch>...`, so
the workspace is never touched and DVC's run cache skips stages an earlier experiment already ran
with the same inputs. With `jobs` > 1 the experiments go to DVC's queue instead (`dvc exp run
--queue`, then `dvc queue start -j <jobs>`): as many run at once, each in its own scratch copy,
and the flow waits for the queue to drain (`run_queue`). Queue workers share one environment, so
each experiment's MLflow runs get their method tag afterwards, found by their `dvc.exp` tag. Finished experiments are found again by name and not rerun (the sweep
resumes after an interruption). Methods that share every switch share one experiment ("sft" is
the sft policy's figures in the ACT experiment's metrics), and each experiment's evaluate stage
scores only those of `evaluate.policies` its methods read (`evaluated_policies`). Writes `<out>/ablations.md`, `.csv`
and `.png` (mean and std per method and metric), `ablations_seeds.csv` (every seed's value) and
`ablations_paired.csv` (ACT minus each other method per seed, with a paired t test), each
experiment's metrics files under `<out>/runs/<method>-s<seed>/` (with the relabel counts of the
on-policy runs in the markdown), and logs the reports to a summary MLflow run.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from prefect import flow, get_run_logger, task

from act.metrics.paired import paired, summarize
from act.tables import paired_markdown, policy_figures, relabel_markdown, timings_markdown, to_markdown, write_reports
from flows.display import ablations_name, ablations_run_name, announce_flow_run, say, still_running
from flows.experiments import (RUN_FILES, _dvc_env, _exp_commits, _yaml_keys, exp_name, exp_run_cmd, find_exp_ref,
                               head_commit, queue_status, read_exp_metrics, save_runs, save_timings)
from flows.methods import METHODS, Method  # noqa: F401  (Method: the type of METHODS' values)


def check_switches(root: Path, methods: Sequence[str], extra: dict[str, Any]) -> None:
    """Fail before any run when a method's switch is not a params.yaml key (yet)."""
    from act.params import load_params

    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; known: {sorted(METHODS)}")
        try:
            load_params(root / "params.yaml", {**extra, **METHODS[m].overrides})
        except Exception as e:
            raise ValueError(f"method {m!r} cannot run on this params.yaml: {e}") from None


def evaluated_policies(policies: Sequence[str], methods: Sequence[str]) -> list[str]:
    """The policies an experiment's evaluate stage scores: those of `policies` (params.yaml's
    `evaluate.policies`) that one of its methods reads. The SFT policy is scored once per seed, in
    the experiment the `sft` method shares with ACT, not again beside every other method's policy."""
    wanted = {METHODS[m].policy for m in methods}
    return [p for p in policies if p in wanted] or sorted(wanted)


@task(task_run_name="{name}")
def run_experiment(name: str, root: str, overrides: dict[str, Any], env: dict[str, str], rerun: bool,
                   metrics_file: str, baseline: str) -> dict[str, Any]:
    """One DVC experiment; returns its metrics (read from the experiment's commit)."""
    logger = get_run_logger()
    t0 = time.time()
    state = "reused"
    head = head_commit(Path(root))
    if head != baseline:
        logger.warning("HEAD moved from %s to %s while the sweep runs: %s runs on %s's code", baseline[:7],
                       head[:7], name, head[:7])
    if rerun or find_exp_ref(Path(root), name, baseline) is None:
        cmd = exp_run_cmd(Path(root), name, overrides, rerun=rerun)
        logger.info(" ".join(cmd[2:]))
        proc = subprocess.run(cmd, cwd=root, env=_dvc_env(env), capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[2:])} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
        state = "ran"
    metrics = read_exp_metrics(Path(root), name, metrics_file, baseline)
    return {"name": name, "state": state, "seconds": round(time.time() - t0, 1), "metrics": metrics}


@task(task_run_name="queue-{jobs}-workers")
def run_queue(root: str, plan: dict[str, dict[str, Any]], env: dict[str, str], rerun: bool, jobs: int,
              baseline: str, poll_s: float = 2.0) -> dict[str, str]:
    """Queue the experiments of `plan` not yet finished (all with `rerun`), run them with `jobs`
    DVC queue workers and wait until none is queued or running. Returns name -> "ran" | "reused";
    raises naming every failed experiment with the end of its log (`dvc queue logs`)."""
    logger = get_run_logger()
    root_path = Path(root)
    before = _exp_commits(root_path, baseline)
    todo = [name for name in plan if rerun or name not in before]
    states = {name: "reused" for name in plan if name not in todo}
    if not todo:
        return states
    full_env = _dvc_env(env)
    for name in todo:
        cmd = exp_run_cmd(root_path, name, plan[name]["overrides"], rerun=rerun, queue=True)
        logger.info(" ".join(cmd[2:]))
        proc = subprocess.run(cmd, cwd=root, env=full_env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[2:])} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    start = [sys.executable, "-m", "dvc", "queue", "start", "-j", str(jobs)]
    subprocess.run(start, cwd=root, env=full_env, check=True, capture_output=True, text=True)
    logger.info("%d experiments queued, %d workers", len(todo), jobs)
    while True:
        pending = [t for t in queue_status(root_path) if t.get("name") in todo and t["status"] in ("Queued", "Running")]
        if not pending:
            break
        time.sleep(poll_s)
    # idle workers would keep this sweep's environment for a next one: stop them now
    subprocess.run([sys.executable, "-m", "dvc", "queue", "stop"], cwd=root, env=full_env, capture_output=True)
    after = _exp_commits(root_path, baseline)
    failed = [name for name in todo if name not in after or after[name] == before.get(name)]
    if failed:
        logs = []
        for name in failed:
            out = subprocess.run([sys.executable, "-m", "dvc", "queue", "logs", name], cwd=root, env=full_env,
                                 capture_output=True, text=True)
            logs.append(f"--- {name}:\n{(out.stdout + out.stderr)[-2000:]}")
        raise RuntimeError(f"{len(failed)} of {len(todo)} queued experiments failed: {', '.join(failed)}\n" + "\n".join(logs))
    return {**states, **{name: "ran" for name in todo}}


@flow(name="act-ablations", flow_run_name=ablations_run_name, log_prints=True)
def ablations(root: str = ".", methods: Sequence[str] = tuple(METHODS), seeds: Sequence[int] = (0, 1, 2),
              metrics_file: str = "metrics/evaluate.json", out_dir: str = "reports", rerun: bool = False,
              extra_overrides: dict[str, Any] | None = None, jobs: int = 1, pool: str | None = None,
              remote: str = "origin", stale_s: float = 120.0) -> dict[str, Any]:
    """`jobs` > 1: the experiments run through DVC's queue, that many at a time (see module doc).
    `pool`: each experiment is a flow run on that Prefect work pool, run by the pool's workers on
    any machine and pushed to the git remote `remote` (`flows.pool`); a point silent for
    `stale_s` seconds counts as crashed and is resubmitted up to `tracking.retries` times."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from act.params import load_params
    from act.tracking import parent_run, tag_methods, tracking_uri

    t0 = time.time()
    root_path = Path(root).resolve()
    extra = dict(extra_overrides or {})
    methods = list(methods)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if pool and jobs > 1:
        raise ValueError("--pool and --jobs exclude each other: on a pool, each worker runs one point at a time")
    check_switches(root_path, methods, extra)
    params = load_params(root_path / "params.yaml")
    uri = tracking_uri(root_path)

    baseline = head_commit(root_path)
    # one experiment per distinct (switches, seed); methods sharing switches share it
    plan: dict[str, dict[str, Any]] = {}
    for m in methods:
        for seed in seeds:
            overrides = {**extra, **METHODS[m].overrides, "seed": seed}
            name = exp_name(METHODS[m].overrides, seed, extra)
            entry = plan.setdefault(name, {"overrides": overrides, "methods": [], "seed": seed})
            entry["methods"].append(m)
    if "evaluate.policies" in _yaml_keys(root_path / "params.yaml"):  # (a DAG without an evaluate stage has none)
        policies = load_params(root_path / "params.yaml", extra).evaluate.policies
        for entry in plan.values():
            entry["overrides"]["evaluate.policies"] = evaluated_policies(policies, entry["methods"])

    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []

    def collect(res: dict[str, Any]) -> None:
        entry = plan[res["name"]]
        runs.append({k: res[k] for k in ("name", "state", "seconds")})
        for m in entry["methods"]:
            for metric, value in policy_figures(res["metrics"], metrics_file, METHODS[m].policy).items():
                rows.append({"method": m, "seed": entry["seed"], "metric": metric, "value": value})

    tags = {"act.methods": ",".join(methods), "act.seeds": ",".join(map(str, seeds))}
    run_name = ablations_name(root_path, methods, seeds)
    with parent_run(params, "ablations", root=root_path, tags=tags, run_name=run_name) as summary:
        try:
            shared = {"MLFLOW_TRACKING_URI": uri}
            if summary.run_id:
                shared["ACT_PARENT_RUN_ID"] = summary.run_id
            else:
                shared["ACT_TRACKING"] = "off"
            if pool:
                from flows.pool import pull_experiments, run_pool

                if not uri.startswith(("http://", "https://")):
                    get_run_logger().warning("MLFLOW_TRACKING_URI=%s is no server: the workers' runs will not nest "
                                             "under this sweep's summary run", uri)
                t_pool = time.time()
                done = run_pool(root_path, plan, pool, baseline, remote=remote, retries=params.tracking.retries,
                                stale_s=stale_s, rerun=rerun, parent_run_id=summary.run_id, uri=uri)
                pull_experiments(root_path, plan, remote)
                for name in plan:
                    collect({"name": name, "state": done[name]["state"], "seconds": round(time.time() - t_pool, 1),
                             "metrics": read_exp_metrics(root_path, name, metrics_file, baseline)})
                    runs[-1]["attempts"] = done[name]["attempts"]
            elif jobs > 1:
                t_queue = time.time()
                states = run_queue(str(root_path), plan, shared, rerun, jobs, baseline)
                if summary.run_id:
                    tag_methods(uri, params.tracking.experiment, {n: plan[n] for n, s in states.items() if s == "ran"})
                for name in plan:
                    collect({"name": name, "state": states[name], "seconds": round(time.time() - t_queue, 1),
                             "metrics": read_exp_metrics(root_path, name, metrics_file, baseline)})
            else:
                logger = get_run_logger()
                announce_flow_run(logger)
                for i, (name, entry) in enumerate(plan.items(), 1):
                    env = {**shared, "ACT_METHOD": "+".join(entry["methods"]), "ACT_SEED": str(entry["seed"])}
                    with still_running(logger, name):  # the same heartbeat and end line as `act run`'s stages
                        collect(run_experiment.with_options(name=name)(name, str(root_path), entry["overrides"], env,
                                                                       rerun, metrics_file, baseline))
                    say(logger, f"{name:<24} {runs[-1]['state']:<9} {runs[-1]['seconds']:>8.1f}s  [{i}/{len(plan)}]")
        finally:
            table = summarize(rows)
            comparisons = paired(rows, methods)
            relabels = (save_runs(root_path, plan, baseline, root_path / out_dir, (metrics_file, *RUN_FILES))
                        if table else [])
            timings = save_timings(root_path / out_dir, plan, uri, params.tracking.experiment) if table and summary.run_id else []
            seconds = time.time() - t0
            markdown = (to_markdown(table, methods, seconds) + paired_markdown(comparisons) + relabel_markdown(relabels)
                        + timings_markdown(timings))
            files = write_reports(root_path / out_dir, table, markdown, methods, rows, comparisons) if table else []
            summary.log_params({"methods": ",".join(methods), "seeds": ",".join(map(str, seeds)),
                                "metrics_file": metrics_file})
            summary.log_metrics({f"{r['method']}.{r['metric']}.{s}": r[s] for r in table for s in ("mean", "std")})
            summary.log_metrics({f"paired.{c['reference']}-{c['method']}.{c['metric']}.{s}": c[s]
                                 for c in comparisons for s in ("mean", "t", "p") if c[s] is not None})
            summary.log_dict({"experiments": runs, "rows": rows}, "ablations.json")
            for f in files:
                summary.log_artifact(f)
    create_markdown_artifact(key="act-ablations", markdown="# ACT ablations\n\n" + markdown,
                             description="Mean and std per method and metric")
    if table:
        create_table_artifact(key="act-ablations-table", table=[{**r, "mean": round(r["mean"], 4), "std": round(r["std"], 4)}
                                                                for r in table])
    return {"table": table, "paired": comparisons, "markdown": markdown, "experiments": runs,
            "summary_run_id": summary.run_id, "seconds": round(seconds, 1)}
