"""DVC experiments as the sweeps use them: names, `dvc exp run` commands, and their git refs.

An experiment of a sweep is `dvc exp run --temp --name <name> -S ...` (`exp_run_cmd`); its name
comes from its switches and seed (`exp_name`), and it lands as a git ref under the commit the sweep
started from (`refs/exps/<baseline[:2]>/<baseline[2:]>/<name>`), where `exp_refs` finds it again
and `read_exp_metrics` reads the metrics it committed. Shared by the local sweep
(`flows.ablations`) and the work-pool sweep (`flows.pool`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

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


def run_dir(out_dir: Path, entry: dict[str, Any]) -> Path:
    """`out_dir/runs/<method>-s<seed>/` of a plan entry: named after its trained method (the ACT
    experiment that the `sft` method shares is `act-s<seed>`)."""
    method = next((m for m in entry["methods"] if m != "sft"), entry["methods"][0])
    return out_dir / "runs" / f"{method}-s{entry['seed']}"


RUN_FILES = ("metrics/evaluate.json", "metrics/train.json", "metrics/sft.json", "metrics/simulate.json",
             "plots/evaluate/sampling_rounds.tsv", "plots/evaluate/probe.tsv")
"""The files of each experiment the sweep copies to `<out>/runs/<method>-s<seed>/`: the metrics,
and the training curves of an on-policy run (the share of samples that clarify and win per
sampling round; the probe set's margins), where the experiment has them."""


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
        folder = run_dir(out_dir, entry)
        method = folder.name.rpartition("-s")[0]
        train: dict[str, Any] = {}
        for path in dict.fromkeys(files):
            proc = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=root, capture_output=True, text=True)
            if proc.returncode != 0:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_file(folder / Path(path).name) as fh:
                fh.write(proc.stdout)
            if path.endswith("train.json"):
                train = json.loads(proc.stdout)
        if train.get("on_policy_sampling"):
            relabels.append({"method": method, "seed": entry["seed"], "steps": train.get("steps"),
                             **{o: train.get(f"relabel/{o}", 0) for o in OUTCOMES}})
    return sorted(relabels, key=lambda r: (r["method"], r["seed"]))


def save_timings(out_dir: Path, plan: dict[str, dict[str, Any]], uri: str, experiment: str) -> list[dict[str, Any]]:
    """Write each experiment's wall time per stage (from its MLflow stage runs,
    `act.tracking.stage_seconds`) to `out_dir/runs/<method>-s<seed>/timings.json`; returns rows
    (method, seed, stage, seconds). Stages DVC restored from its run cache ran in an earlier
    experiment and are counted there only. Without a reachable store: nothing, with a warning."""
    import json
    import logging

    from act.io import atomic_file
    from act.tracking import stage_seconds

    rows: list[dict[str, Any]] = []
    for name, entry in plan.items():
        try:
            seconds = stage_seconds(uri, experiment, name)
        except Exception as e:  # a store that is gone must not lose the sweep's reports
            logging.getLogger(__name__).warning("wall time per stage of %s: MLflow store %s unreadable (%s)",
                                                name, uri, type(e).__name__)
            return rows
        if not seconds:
            continue
        folder = run_dir(out_dir, entry)
        method = folder.name.rpartition("-s")[0]
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(folder / "timings.json") as fh:
            fh.write(json.dumps(seconds, indent=2, sort_keys=True) + "\n")
        rows += [{"method": method, "seed": entry["seed"], "stage": st, "seconds": s} for st, s in seconds.items()]
    return rows
