"""`act`: the command line of the project.

    act run [--targets pairs ...] [--force]      the pipeline flow (dvc repro, stage by stage), on `act ui`'s server
    act ablate --seeds 0 1 2 [--methods act sft ...]   baselines and ablations as DVC experiments
    act ablate --seeds 0 1 2 --jobs 3             the same, three experiments at a time (dvc queue)
    act ablate --seeds 0 1 2 --pool gpus          the same, on a Prefect work pool across machines
    act worker --pool gpus                        a worker of that pool, in this clone (one per GPU)
    act ui                                       Prefect server + MLflow UI on 127.0.0.1
    act serve --cron "0 3 * * *"                 register the pipeline for scheduled runs
    act show                                     metrics of the workspace (and the ablation table)
    act evaluate --data DIR --databases DIR --out DIR   the trained policies on any annotated held-out set

Everything heavy (prefect, mlflow, dvc) is imported inside the verb that needs it, so `--help`
answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from act.tables import headline_table
from flows.methods import METHODS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="act", description="ACT pipeline: DVC stages, Prefect flows, MLflow tracking.")
    p.add_argument("-C", "--root", default=".", help="project directory (default: current)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    r = sub.add_parser("run", help="run the pipeline flow (each DVC stage as a Prefect task)")
    r.add_argument("--targets", nargs="*", default=None, metavar="STAGE",
                   help="only these stages (e.g. pairs or pairs@ambigsql) and what they need")
    r.add_argument("--force", action="store_true", help="rerun stages even when DVC finds them unchanged")
    r.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")

    a = sub.add_parser("ablate", help="baselines and ablations over seeds, as DVC experiments")
    a.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    a.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    a.add_argument("--metrics-file", default="metrics/evaluate.json",
                   help="metrics JSON compared across methods (default: metrics/evaluate.json)")
    a.add_argument("--out", default="reports", help="folder for ablations.md/.csv/.png (default: reports)")
    a.add_argument("--rerun", action="store_true", help="rerun experiments that already finished")
    a.add_argument("-j", "--jobs", type=int, default=1,
                   help="experiments run at once through DVC's queue (dvc exp run --queue; dvc queue start -j N); "
                        "1 = one after another (default)")
    a.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra override for every experiment (dvc exp run -S)")
    a.add_argument("--pool", default=None, metavar="NAME",
                   help="run each experiment as a flow run on this Prefect work pool (`act worker --pool NAME` on "
                        "each machine); finished experiments are pushed to and read from the git remote --remote")
    a.add_argument("--remote", default="origin", help="git remote the pool's experiments go to (default: origin)")
    a.add_argument("--stale-s", type=float, default=120.0,
                   help="--pool: a point without a heartbeat this long counts as crashed and is resubmitted "
                        "(up to tracking.retries times; default 120)")

    w = sub.add_parser("worker", help="a Prefect worker of a work pool, running sweep points in this clone")
    w.add_argument("--pool", required=True, metavar="NAME", help="the work pool (`act ablate --pool NAME`)")
    w.add_argument("--name", default=None, help="worker name (default: <host>-<CUDA_VISIBLE_DEVICES>)")
    w.add_argument("-l", "--limit", type=int, default=1, help="points at once (default 1: one per GPU)")

    u = sub.add_parser("ui", help="start the Prefect server and the MLflow UI; Ctrl-C stops both")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--prefect-port", type=int, default=4200)
    u.add_argument("--mlflow-port", type=int, default=5000)

    s = sub.add_parser("serve", help="register the pipeline as a scheduled deployment and serve it")
    s.add_argument("--cron", default="0 3 * * *", help='cron schedule (default "0 3 * * *": daily at 03:00)')
    s.add_argument("--name", default="act-pipeline", help="deployment name")
    s.add_argument("--targets", nargs="*", default=None, metavar="STAGE")

    sh = sub.add_parser("show", help="headline metrics per policy and the ablation table")
    sh.add_argument("--metrics-file", default="metrics/evaluate.json")
    sh.add_argument("--all", action="store_true", help="every metrics file of the DAG (dvc metrics show)")

    from flows.heldout import add_arguments

    ev = sub.add_parser("evaluate", help="score the trained policies on any annotated held-out set (flows/heldout.py)")
    add_arguments(ev)
    ev.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    ev.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE", help="param override, e.g. -S evaluate.limit=20")
    return p


def show(root: str, metrics_file: str, *, every: bool = False) -> int:
    import json
    import subprocess
    from pathlib import Path

    if every:
        return subprocess.call([sys.executable, "-m", "dvc", "metrics", "show"], cwd=root)
    path = Path(root) / metrics_file
    if not path.exists():
        print(f"{path}: no metrics yet (run `dvc repro` or `act run`)", file=sys.stderr)
        return 1
    print(f"## Workspace: {metrics_file} (the last `dvc repro` / `act run` here), one row per policy\n")
    print(headline_table(json.loads(path.read_text(encoding="utf-8"))))
    table = Path(root) / "reports" / "ablations.md"
    if table.exists():
        print("\n## Ablations: reports/ablations.md (the last `act ablate`), one row per method over seeds\n")
        print(table.read_text(encoding="utf-8").removeprefix("# Ablations\n").lstrip("\n"))
    return 0



def run(root: str, args: argparse.Namespace) -> int:
    """`act run`: the pipeline flow on the Prefect server `flows.servers.on_project_server`
    picks (PREFECT_API_URL, else the project's `act ui`, else one started for the run)."""
    from flows.servers import on_project_server

    with on_project_server(root):
        from flows.pipeline import pipeline

        try:
            result = pipeline(root=root, params_file=args.params, targets=args.targets, force=args.force)
        except Exception as e:  # a stage failed (its message holds the tail of its output) or a bad target
            print(f"act run failed: {e or type(e).__name__}", file=sys.stderr)
            return 1
    states = [r["state"] for r in result["stages"]]
    counts = ", ".join(f"{states.count(s)} {s}" for s in ("ran", "skipped", "restored") if s in states)
    print(f"{len(states)} stages ({counts}) in {sum(r['seconds'] for r in result['stages']):.1f}s")
    if result["parent_run_id"]:
        print(f"MLflow parent run: {result['parent_run_id']}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `act` command. Any failure is one line on stderr (`act.errors.run_cli`: `error: ...`,
    exit 1; 130 on Ctrl-C), the traceback only with --debug or ACT_DEBUG=1. Returns the exit code."""
    from act.errors import run_cli

    try:
        run_cli(lambda: _main(argv))
    except SystemExit as e:  # run_cli exits with the verb's code; a refusal's message is printed here
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    return 0


def _main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = os.path.abspath(args.root)
    if args.verb == "run":
        return run(root, args)
    if args.verb == "ablate":
        from flows.servers import run_on_project_server

        from act.params import parse_overrides

        # values read as YAML, as `dvc exp run -S` and the stages' -S read them ("48" is a number)
        overrides = parse_overrides(args.set)
        out = run_on_project_server(root, "flows.ablations:ablations", root=root, methods=args.methods,
                                    seeds=args.seeds, metrics_file=args.metrics_file, out_dir=args.out,
                                    rerun=args.rerun, extra_overrides=overrides, jobs=args.jobs,
                                    pool=args.pool, remote=args.remote, stale_s=args.stale_s)
        print(out["markdown"])
        return 0
    if args.verb == "worker":
        from flows.pool import start_worker

        start_worker(root, args.pool, args.name, args.limit)
        return 0  # pragma: no cover - start_worker replaces this process
    if args.verb == "ui":
        from flows.servers import run_ui

        return run_ui(root=root, host=args.host, prefect_port=args.prefect_port, mlflow_port=args.mlflow_port)
    if args.verb == "serve":
        from flows.servers import prefect_logging_env, serve_pipeline

        prefect_logging_env()

        serve_pipeline(root=root, name=args.name, cron=args.cron, targets=args.targets)
        return 0
    if args.verb == "show":
        return show(root, args.metrics_file, every=args.all)
    if args.verb == "evaluate":
        from flows import heldout

        return heldout.run(args)
    return 2  # pragma: no cover - argparse rejects unknown verbs


if __name__ == "__main__":
    sys.exit(main())
