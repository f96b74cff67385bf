"""`act evaluate`: score the trained policies on any annotated held-out set (a command, not a DVC stage).

    act evaluate --data data/annotate/my_corpus --split all --databases my_spider/database \
        --out reports/heldout/my_corpus [--base models/base] [--adapter sft=models/sft ...] [-S key=value]

`--data` is an annotated DatasetDict: the output of `python -m stages.ingest` then
`python -m stages.annotate` on your own source, e.g. a custom JSONL corpus
(`--dataset custom --raw corpus.jsonl`), another PACIFIC file, or an AmbigSQL set built from
Spider databases the project never saw (`--dataset ambigsql --raw <spider dir>`). Nothing about
the project's own split is assumed: `--split` picks which of its splits are scored (`all` = every
record). `--databases` holds `<db_id>/<db_id>.sqlite` for SQL execution scoring.

It runs the evaluate stage's command (`python -m stages.evaluate ... --split S`) with every output
under `--out`: `metrics.json` (policy x action / turn / trajectory level), `predictions/`,
`plots/` and `report.html`; `evaluate.*` params apply (override them with -S).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="annotated DatasetDict dir (python -m stages.annotate output)")
    p.add_argument("--split", default="eval", help="split scored: eval (default), all, or any split name")
    p.add_argument("--base", default="models/base", help="base model dir (default: models/base)")
    p.add_argument("--adapter", action="append", default=None, metavar="NAME=DIR",
                   help="a LoRA adapter evaluated as policy NAME (default: sft=models/sft act=models/act)")
    p.add_argument("--databases", default=None, help="SQL sets: dir holding <db_id>/<db_id>.sqlite")
    p.add_argument("--out", required=True, help="output dir: metrics.json, predictions/, plots/, report.html")


def command(args) -> list[str]:
    """The `python -m stages.evaluate` command line for parsed `act evaluate` arguments."""
    out = Path(args.out)
    cmd = [sys.executable, "-m", "stages.evaluate", "--params", args.params, "--in", args.data, "--split", args.split,
           "--base", args.base, "--out", str(out / "predictions"), "--metrics", str(out / "metrics.json"),
           "--plots", str(out / "plots"), "--report", str(out / "report.html")]
    for a in args.adapter if args.adapter is not None else ["sft=models/sft", "act=models/act"]:
        cmd += ["--adapter", a]
    if args.databases:
        cmd += ["--databases", args.databases]
    for s in args.set:
        cmd += ["-S", s]
    return cmd


def run(args) -> int:
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return subprocess.run(command(args)).returncode
