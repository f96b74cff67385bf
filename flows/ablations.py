"""The ablation flow: baselines and ablations over seeds, each a DVC experiment.

    act ablate --seeds 0 1 2                          all methods
    act ablate --seeds 0 1 --methods act act_random_actions
    act ablate --seeds 0 1 2 --jobs 3                 three experiments at a time (DVC's queue)

Each (method, seed) is `dvc exp run --temp --name <method>-s<seed> -S seed=<n> -S <switch>...`, so
the workspace is never touched and DVC's run cache skips stages an earlier experiment already ran
with the same inputs. With `jobs` > 1 the experiments go to DVC's queue instead (`dvc exp run
--queue`, then `dvc queue start -j <jobs>`): as many run at once, each in its own scratch copy,
and the flow waits for the queue to drain (`run_queue`). Queue workers share one environment, so
each experiment's MLflow runs get their method tag afterwards, found by their `dvc.exp` tag. Finished experiments are found again by name and not rerun (the sweep
resumes after an interruption). Methods that share every switch share one experiment ("sft" is
the sft policy's figures in the ACT experiment's metrics). Writes `<out>/ablations.md`, `.csv`
and `.png` (mean and std per method and metric), `ablations_seeds.csv` (every seed's value) and
`ablations_paired.csv` (ACT minus each other method per seed, with a paired t test), each
experiment's metrics files under `<out>/runs/<method>-s<seed>/` (with the relabel counts of the
on-policy runs in the markdown), and logs the reports to a summary MLflow run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from prefect import flow, get_run_logger, task

from flows.methods import METHODS, Method  # noqa: F401  (Method: the type of METHODS' values)


def _yaml_value(v: Any) -> str:
    return "true" if v is True else "false" if v is False else str(v)


def _yaml_keys(path: Path) -> set[str]:
    import yaml

    from act.tracking import flatten

    keys = set()
    for dotted in flatten(yaml.safe_load(path.read_text(encoding="utf-8")) or {}):
        parts = dotted.split(".")
        keys.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return keys


def exp_name(overrides: dict[str, Any], seed: int, extra: dict[str, Any] | None = None) -> str:
    """A stable, git-ref-safe name for one experiment, from its switches and seed; the sweep's
    extra `-S` overrides (a profile) add a short hash, so sweeps of two profiles never share one."""
    import hashlib

    parts = [f"{k.split('.')[-1]}-{_yaml_value(v)}" for k, v in sorted(overrides.items())]
    if extra:
        parts.append("x" + hashlib.sha256(repr(sorted((k, _yaml_value(v)) for k, v in extra.items())).encode())
                     .hexdigest()[:8])
    return "-".join(["abl", *parts, f"s{seed}"]).replace("_", "-").lower()


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


def head_commit(root: Path) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()


def _existing_exps(root: Path, head: str) -> dict[str, str]:
    """Experiment name -> git ref, for experiments whose baseline is commit `head`.

    The sweep pins `head` when it starts: a commit made while it runs must not orphan the
    experiments it already finished (`find_exp_ref` also looks under the new HEAD)."""
    out = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], cwd=root,
                         capture_output=True, text=True).stdout
    # refs/exps/<baseline[:2]>/<baseline[2:]>/<name>
    return {ref.rsplit("/", 1)[-1]: ref for ref in out.split() if head and f"/{head[:2]}/{head[2:]}/" in ref}


def exp_refs(root: Path, baseline: str) -> dict[str, str]:
    """Experiment name -> git ref: those under the sweep's pinned `baseline`, and under the current
    HEAD those not found there. `dvc exp run` bases an experiment on HEAD as it starts, so one
    started after a commit made while the sweep runs lands under that commit."""
    head = head_commit(root)
    return {**(_existing_exps(root, head) if head != baseline else {}), **_existing_exps(root, baseline)}


def find_exp_ref(root: Path, name: str, baseline: str) -> str | None:
    return exp_refs(root, baseline).get(name)


def read_exp_metrics(root: Path, name: str, metrics_file: str, baseline: str) -> dict[str, Any]:
    """The metrics file as the experiment committed it (DVC metrics are git-tracked)."""
    import json

    ref = find_exp_ref(root, name, baseline)
    if ref is None:
        raise RuntimeError(f"experiment {name} finished but no git ref for it exists under the sweep's "
                           f"baseline {baseline[:7]} or HEAD {head_commit(root)[:7]}")
    proc = subprocess.run(["git", "show", f"{ref}:{metrics_file}"], cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"experiment {name} has no {metrics_file}: {proc.stderr.strip()}")
    return {metrics_file: json.loads(proc.stdout)}


def exp_run_cmd(root: Path, name: str, overrides: dict[str, Any], *, rerun: bool, queue: bool = False) -> list[str]:
    """`dvc exp run` of one experiment: at once in a scratch copy (--temp), or into DVC's queue."""
    cmd = [sys.executable, "-m", "dvc", "exp", "run", "--queue" if queue else "--temp", "--name", name]
    if rerun:
        cmd.append("--force")
    present = _yaml_keys(root / "params.yaml")
    for k, v in overrides.items():
        # DVC (hydra) only overrides keys the file has; `+key` adds one left to its default
        cmd += ["-S", f"{'' if k in present else '+'}{k}={_yaml_value(v)}"]
    return cmd


def _dvc_env(env: dict[str, str]) -> dict[str, str]:
    """The caller's environment plus `env`, with this interpreter's scripts first on PATH (DVC's
    queue workers start `dvc` from PATH)."""
    full_env = dict(os.environ)
    full_env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + full_env.get("PATH", "")
    full_env.update(env)
    return full_env


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


def _exp_commits(root: Path, head: str) -> dict[str, str]:
    """Experiment name -> its commit, for experiments of baseline `head`."""
    out = subprocess.run(["git", "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps"], cwd=root,
                         capture_output=True, text=True).stdout
    return {ref.rsplit("/", 1)[-1]: sha for ref, sha in (line.split() for line in out.splitlines())
            if head and f"/{head[:2]}/{head[2:]}/" in ref}


def queue_status(root: Path) -> list[dict[str, Any]]:
    """DVC's queue tasks: [{"name", "status": Queued | Running | Success | Failed, ...}]."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return list(repo.experiments.celery_queue.status())


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


def policy_figures(metrics: dict[str, Any], metrics_file: str, policy: str) -> dict[str, float]:
    """The numbers of one policy in a metrics file: its subtree when the file is keyed by policy
    (evaluate writes {"base": {...}, "sft": {...}, "act": {...}}), else every number in it."""
    from act.tracking import flatten

    data = metrics.get(metrics_file, metrics)
    for key in (policy, "policies"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key] if key == policy else data[key].get(policy, {})
            break
    return {k: float(v) for k, v in flatten(data).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """rows: (method, seed, metric, value) -> (method, metric, mean, std, n)."""
    from act.metrics.summary import mean_std

    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["metric"]), []).append(r["value"])
    out = []
    for (m, k), v in groups.items():
        mean, std = mean_std(v)
        out.append({"method": m, "metric": k, "mean": mean, "std": std, "n": len(v)})
    return out


def headline(table: list[dict[str, Any]]) -> list[str]:
    """The headline metrics (`act.metrics.summary.HEADLINE`) the table has, else all of them
    (the CSV and MLflow always hold every metric)."""
    from act.metrics.summary import HEADLINE_KEYS

    metrics = list(dict.fromkeys(r["metric"] for r in table))
    shown = [m for m in HEADLINE_KEYS if m in metrics]
    return shown or metrics


PAIRED_KEYS = ("action.macro_f1", "action.clarify_f1", "action.action_auc", "turn.answer_score", "trajectory.score",
               "trajectory.success_rate")
"""The metrics whose paired ACT - method differences the markdown shows (the CSV has every headline)."""


def paired(rows: list[dict[str, Any]], methods: Sequence[str], reference: str = "act") -> list[dict[str, Any]]:
    """ACT (`reference`) minus each other method, per seed, on the seeds both have: the mean
    difference, its std, Student's t and two-sided p (`act.metrics.summary.paired_difference`), per
    headline metric. Seeds share data and split, so pairing removes the seed-to-seed spread."""
    from act.metrics.summary import paired_difference

    value = {(r["method"], r["metric"], r["seed"]): r["value"] for r in rows}
    metrics = headline([{"metric": r["metric"]} for r in rows])
    out = []
    for other in methods:
        if other == reference or reference not in methods:
            continue
        for metric in metrics:
            seeds = sorted({s for (m, k, s) in value if m == reference and k == metric}
                           & {s for (m, k, s) in value if m == other and k == metric})
            if not seeds:
                continue
            d = paired_difference([value[(reference, metric, s)] for s in seeds],
                                  [value[(other, metric, s)] for s in seeds])
            out.append({"reference": reference, "method": other, "metric": metric, "seeds": seeds, **d})
    return out


RUN_FILES = ("metrics/evaluate.json", "metrics/train.json", "metrics/sft.json")
"""The metrics files of each experiment the sweep copies to `<out>/runs/<method>-s<seed>/`."""


def save_runs(root: Path, plan: dict[str, dict[str, Any]], baseline: str, out_dir: Path,
              files: Sequence[str] = RUN_FILES) -> list[dict[str, Any]]:
    """Copy each finished experiment's metrics `files` (where it has them) into
    `out_dir/runs/<method>-s<seed>/` and return the on-policy experiments' relabel counts, one row
    per (method, seed): how often each relabel branch of ACT's Phase 2 fired."""
    import json

    from act.io import atomic_file
    from act.simulate import OUTCOMES

    relabels = []
    refs = exp_refs(root, baseline)
    for name, entry in plan.items():
        ref = refs.get(name)
        if ref is None:
            continue
        method = next((m for m in entry["methods"] if m != "sft"), entry["methods"][0])
        run_dir = out_dir / "runs" / f"{method}-s{entry['seed']}"
        train: dict[str, Any] = {}
        for path in dict.fromkeys(files):
            proc = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=root, capture_output=True, text=True)
            if proc.returncode != 0:
                continue
            run_dir.mkdir(parents=True, exist_ok=True)
            with atomic_file(run_dir / Path(path).name) as fh:
                fh.write(proc.stdout)
            if path.endswith("train.json"):
                train = json.loads(proc.stdout)
        if train.get("on_policy_sampling"):
            relabels.append({"method": method, "seed": entry["seed"], "steps": train.get("steps"),
                             **{o: train.get(f"relabel/{o}", 0) for o in OUTCOMES}})
    return sorted(relabels, key=lambda r: (r["method"], r["seed"]))


def relabel_markdown(relabels: list[dict[str, Any]]) -> str:
    from act.simulate import OUTCOMES

    if not relabels:
        return ""
    lines = ["", "Relabel outcomes of the on-policy runs (pairs whose side the policy's own sample replaced, "
             "by branch; `metrics/train.json`):", "",
             "| method | seed | " + " | ".join(OUTCOMES) + " | training steps |",
             "|---|---:|" + "---:|" * (len(OUTCOMES) + 1)]
    for r in relabels:
        lines.append(f"| {r['method']} | {r['seed']} | " + " | ".join(str(int(r[o])) for o in OUTCOMES)
                     + f" | {r['steps']} |")
    return "\n".join(lines) + "\n"


def paired_markdown(comparisons: list[dict[str, Any]]) -> str:
    shown = [c for c in comparisons if c["metric"] in PAIRED_KEYS]
    if not shown:
        return ""
    lines = ["", "Paired differences (same seeds; Student's t with n - 1 df, two-sided p; "
             "\"–\": the differences do not vary or there is one seed):", "",
             "| difference | metric | per seed | mean | t | p |", "|---|---|---|---:|---:|---:|"]
    for c in shown:
        per_seed = ", ".join(f"{d:+.3f}" for d in c["diffs"])
        t = "–" if c["t"] is None else f"{c['t']:.2f}"
        p = "–" if c["p"] is None else f"{c['p']:.3f}"
        lines.append(f"| {c['reference']} − {c['method']} | {c['metric']} | {per_seed} | {c['mean']:+.3f} | {t} | {p} |")
    return "\n".join(lines) + "\n"


def to_markdown(table: list[dict[str, Any]], methods: Sequence[str], seconds: float) -> str:
    metrics = headline(table)
    cell = {(r["method"], r["metric"]): f"{r['mean']:.3f} ± {r['std']:.3f}" for r in table}
    n = max((r["n"] for r in table), default=0)
    lines = [f"Mean ± std over {n} seed(s); wall time {seconds / 60:.1f} min.", "",
             "| method | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(cell.get((m, k), "–") for k in metrics) + " |")
    return "\n".join(lines) + "\n"


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    from act.io import atomic_file

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_file(path) as fh:
        fh.write(buf.getvalue())


def write_reports(out_dir: Path, table: list[dict[str, Any]], markdown: str, methods: Sequence[str],
                  rows: list[dict[str, Any]] | None = None,
                  comparisons: list[dict[str, Any]] | None = None) -> list[Path]:
    """ablations.md (table + paired differences), ablations.csv (mean/std), ablations.png, and
    with `rows` ablations_seeds.csv (every method x seed x metric value) and ablations_paired.csv."""
    from act.io import atomic_file
    from act.report import plot_ablations

    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv_path, png = out_dir / "ablations.md", out_dir / "ablations.csv", out_dir / "ablations.png"
    with atomic_file(md) as fh:
        fh.write("# Ablations\n\n" + markdown)
    _write_csv(csv_path, ["method", "metric", "mean", "std", "n"], table)
    plot_ablations(table, methods, png)
    files = [md, csv_path, png]
    if rows:
        files.append(out_dir / "ablations_seeds.csv")
        _write_csv(files[-1], ["method", "seed", "metric", "value"], rows)
    if comparisons:
        files.append(out_dir / "ablations_paired.csv")
        _write_csv(files[-1], ["reference", "method", "metric", "seeds", "diffs", "mean", "std", "n", "t", "p"],
                   [{**c, "seeds": " ".join(map(str, c["seeds"])), "diffs": " ".join(f"{d:.6g}" for d in c["diffs"])}
                    for c in comparisons])
    return files


@flow(name="act-ablations", log_prints=True)
def ablations(root: str = ".", methods: Sequence[str] = tuple(METHODS), seeds: Sequence[int] = (0, 1, 2),
              metrics_file: str = "metrics/evaluate.json", out_dir: str = "reports", rerun: bool = False,
              extra_overrides: dict[str, Any] | None = None, jobs: int = 1) -> dict[str, Any]:
    """`jobs` > 1: the experiments run through DVC's queue, that many at a time (see module doc)."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from act.params import load_params
    from act.tracking import parent_run, tracking_uri

    t0 = time.time()
    root_path = Path(root).resolve()
    extra = dict(extra_overrides or {})
    methods = list(methods)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
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

    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []

    def collect(res: dict[str, Any]) -> None:
        entry = plan[res["name"]]
        runs.append({k: res[k] for k in ("name", "state", "seconds")})
        for m in entry["methods"]:
            for metric, value in policy_figures(res["metrics"], metrics_file, METHODS[m].policy).items():
                rows.append({"method": m, "seed": entry["seed"], "metric": metric, "value": value})

    tags = {"act.methods": ",".join(methods), "act.seeds": ",".join(map(str, seeds))}
    with parent_run(params, "ablations", root=root_path, tags=tags) as summary:
        try:
            shared = {"MLFLOW_TRACKING_URI": uri}
            if summary.run_id:
                shared["ACT_PARENT_RUN_ID"] = summary.run_id
            else:
                shared["ACT_TRACKING"] = "off"
            if jobs > 1:
                t_queue = time.time()
                states = run_queue(str(root_path), plan, shared, rerun, jobs, baseline)
                if summary.run_id:
                    tag_methods(uri, params.tracking.experiment, {n: plan[n] for n, s in states.items() if s == "ran"})
                for name in plan:
                    collect({"name": name, "state": states[name], "seconds": round(time.time() - t_queue, 1),
                             "metrics": read_exp_metrics(root_path, name, metrics_file, baseline)})
            else:
                for name, entry in plan.items():
                    env = {**shared, "ACT_METHOD": "+".join(entry["methods"]), "ACT_SEED": str(entry["seed"])}
                    collect(run_experiment.with_options(name=name)(name, str(root_path), entry["overrides"], env,
                                                                   rerun, metrics_file, baseline))
        finally:
            table = summarize(rows)
            comparisons = paired(rows, methods)
            relabels = (save_runs(root_path, plan, baseline, root_path / out_dir, (metrics_file, *RUN_FILES))
                        if table else [])
            seconds = time.time() - t0
            markdown = to_markdown(table, methods, seconds) + paired_markdown(comparisons) + relabel_markdown(relabels)
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
