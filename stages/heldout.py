"""Score the trained policies on any annotated held-out set (not a DVC stage: a command for users).

    act evaluate --data data/annotate/my_corpus --split all --databases my_spider/database \
        --out reports/heldout/my_corpus
    python -m stages.heldout --data DIR [--split eval|all|NAME] [--base models/base] \
        [--adapter sft=models/sft --adapter act=models/act] [--databases DIR] --out DIR [-S key=value]

`--data` is an annotated DatasetDict: the output of `python -m stages.ingest` then
`python -m stages.annotate` on your own source, e.g. a custom JSONL corpus
(`--dataset custom --raw corpus.jsonl`), another PACIFIC file, or an AmbigSQL set built from
Spider databases the project never saw (`--dataset ambigsql --raw <spider dir>`). Nothing about
the project's own split is assumed: `--split` picks which of its splits are scored (`all` = every
record; a held-out corpus has no training split to protect). `--databases` holds
`<db_id>/<db_id>.sqlite` for SQL execution scoring.

Writes into `--out`: `metrics.json` (policy x action / turn / trajectory level), `predictions/`
(one row per policy x seed x record), `plots/` and `report.html`, exactly as the evaluate stage
does (`evaluate.*` params apply; override them with -S).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from act.params import Params

log = logging.getLogger("act.heldout")


def select_split(data: str | Path, split: str, dest: Path) -> int:
    """Write the chosen split(s) of `data` as the `eval` split of a DatasetDict at `dest`; the count."""
    from act.io import load_dataset_dict, save_dataset

    dd = load_dataset_dict(data)
    names = list(dd) if split == "all" else [split]
    missing = [n for n in names if n not in dd]
    if missing:
        raise ValueError(f"{data}: no split {missing[0]!r} (has {sorted(dd)}; --split all takes every one)")
    rows = [dict(r) for n in names for r in dd[n]]
    if not rows:
        raise ValueError(f"{data}: split {split!r} holds no records")
    save_dataset(dest, {"eval": rows})
    return len(rows)


def run(params: Params, data: str | Path, base: str | Path, adapters: dict[str, str], databases: str | Path | None,
        out: str | Path, *, split: str = "eval", load_policy=None) -> dict[str, Any]:
    """Evaluate `params.evaluate.policies` on `split` of `data`; outputs under `out` (module doc)."""
    from stages import evaluate

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        n = select_split(data, split, Path(tmp) / "data")
        log.info("held-out evaluation: %d records of %s (split %s)", n, data, split)
        return evaluate.run(params, Path(tmp) / "data", base, adapters, databases, None, out / "predictions",
                            out / "metrics.json", out / "plots", out / "report.html", load_policy=load_policy)


def add_arguments(p) -> None:
    p.add_argument("--data", required=True, help="annotated DatasetDict dir (python -m stages.annotate output)")
    p.add_argument("--split", default="eval", help="split scored: eval (default), all, or any split name")
    p.add_argument("--base", default="models/base", help="base model dir (default: models/base)")
    p.add_argument("--adapter", action="append", default=None, metavar="NAME=DIR",
                   help="a LoRA adapter evaluated as policy NAME (default: sft=models/sft act=models/act)")
    p.add_argument("--databases", default=None, help="SQL sets: dir holding <db_id>/<db_id>.sqlite")
    p.add_argument("--out", required=True, help="output dir: metrics.json, predictions/, plots/, report.html")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from stages.common import load, parser, setup_logging
    from stages.evaluate import parse_adapters

    p = parser("heldout", __doc__)
    add_arguments(p)
    args = p.parse_args(argv)
    setup_logging()
    adapters = parse_adapters(args.adapter if args.adapter is not None else ["sft=models/sft", "act=models/act"])
    return run(load(args), args.data, args.base, adapters, args.databases, args.out, split=args.split)


if __name__ == "__main__":
    main()
