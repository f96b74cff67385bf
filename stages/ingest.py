"""ingest: one source corpus -> normalized TurnRecords (`data/ingest/<dataset>`), split and budgeted.

    python -m stages.ingest --dataset ambigsql --raw data/raw/spider \
        --out data/ingest/ambigsql --metrics metrics/ingest/ambigsql.json
    python -m stages.ingest --dataset custom --raw my_corpus.jsonl --out ... --metrics ...

Writes a DatasetDict with splits `train` and `eval` (PACIFIC also `unlabeled`), one row per
assistant turn (`TurnRecord.to_row()`), and a metrics JSON with counts per split, action and
ambiguity type. A malformed source record stops the stage naming file, record and field, or
with `ingest.on_error: skip` is skipped and counted.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from act.datasets import DATASETS
from act.io import save_dataset
from act.params import Params

log = logging.getLogger("act.ingest")


def _load_files(module: str):
    """The loader of a dataset read from its files: `act.data.<module>.load`."""
    def load(params: Params, raw: str | Path, bad, stats: dict[str, Any]) -> list:
        from act.data import abg_coqa, custom, pacific

        loader = {"pacific": pacific, "abg_coqa": abg_coqa, "custom": custom}[module].load
        return loader(raw, bad=bad, max_context_chars=params.ingest.max_context_chars)
    return load


def data_seed(params: Params) -> int:
    """The seed the data is drawn with: `ingest.data_seed`, or the run's `seed` when it is -1."""
    return params.seed if params.ingest.data_seed < 0 else params.ingest.data_seed


def _build_ambigsql(params: Params, raw: str | Path, bad, stats: dict[str, Any]) -> list:
    """AmbigSQL is built from Spider: under-specified questions made from clear ones."""
    from act.data import ambigsql

    chars = params.ingest.max_context_chars
    cfg = params.ingest.ambigsql
    build_stats = ambigsql.BuildStats()
    grouped = ambigsql.build(
        raw, seed=data_seed(params), ambiguity_types=cfg.ambiguity_types, ambiguous_fraction=cfg.ambiguous_fraction,
        query_timeout_s=cfg.query_timeout_s, bad=bad, max_context_chars=chars, stats=build_stats,
    )
    stats.update(alternatives_kept=build_stats.alternatives_kept,
                 alternatives_dropped=build_stats.alternatives_dropped,
                 perturbation_not_applicable=build_stats.not_applicable,
                 vacuous_gold_dropped=build_stats.vacuous_gold)
    return grouped


LOADERS = {"pacific": _load_files("pacific"), "abg_coqa": _load_files("abg_coqa"),
           "custom": _load_files("custom"), "ambigsql": _build_ambigsql}
"""(params, raw, bad-record policy, stats to fill) -> [(split group, record)], per dataset of
`act.datasets.REGISTRY` (a test holds the two to the same names)."""


def load_grouped(params: Params, dataset: str, raw: str | Path, bad, stats: dict[str, Any]) -> list:
    """(split group, record) pairs from the dataset's loader."""
    return LOADERS[dataset](params, raw, bad, stats)


def count(splits: dict[str, list], grouped: list) -> dict[str, Any]:
    """Counts per split: records, conversations, groups, actions, ambiguity types."""
    group_of = {r.id: g for g, r in grouped}
    out: dict[str, Any] = {}
    for name, records in splits.items():
        actions = Counter(r.gold_action or "unlabeled" for r in records)
        entry: dict[str, Any] = {
            "records": len(records),
            "conversations": len({r.conversation_id for r in records}),
            "groups": len({group_of[r.id] for r in records}),
            "actions": {a: actions.get(a, 0) for a in ("clarify", "answer", "unlabeled")},
            "branches": sum(len(r.branches) for r in records),
        }
        types = Counter(r.meta["ambiguity_type"] for r in records if "ambiguity_type" in r.meta)
        if types:
            entry["ambiguity_types"] = dict(sorted(types.items()))
        out[name] = entry
    return out


def run(params: Params, *, dataset: str, raw: str | Path | None, out: str | Path, metrics_path: str | Path) -> dict[str, Any]:
    from act.data.bad_records import BadRecords
    from act.data.splits import split_records
    from act.tracking import stage_run

    from act.datasets import check

    check(dataset, what="--dataset")
    cfg = getattr(params.ingest, dataset)
    if raw is None:
        if dataset != "custom" or not params.ingest.custom.path:
            raise ValueError("--raw is required (for custom it defaults to ingest.custom.path)")
        raw = params.ingest.custom.path
    started = time.monotonic()
    with stage_run("ingest", params, params.ingest, tags={"act.dataset": dataset}) as tracker:
        bad = BadRecords(params.ingest.on_error)
        stats: dict[str, Any] = {}
        grouped = load_grouped(params, dataset, raw, bad, stats)
        if not any(r.split != "unlabeled" for _, r in grouped):
            raise ValueError(f"{raw}: no usable records for {dataset}")
        splits = split_records(
            grouped, dataset=dataset, seed=data_seed(params), eval_fraction=cfg.eval_fraction,
            budget=cfg.budget, eval_conversations=cfg.eval_conversations,
        )
        save_dataset(out, {name: [r.to_row() for r in rows] for name, rows in splits.items()})
        metrics = {
            "dataset": dataset,
            "source_records": len(grouped),
            "records": sum(len(v) for v in splits.values()),
            "skipped": bad.skipped,
            "skipped_by_field": dict(bad.by_field),
            "splits": count(splits, grouped),
            **stats,
        }
        tracker.finish(metrics, metrics_path, started=started)
    log.info("ingest %s: %s", dataset, {k: v["records"] for k, v in metrics["splits"].items()})
    return metrics


def main(argv: list[str] | None = None) -> None:
    from act.progress import quiet_libraries
    from stages.common import load, parser, setup_logging

    p = parser("ingest", __doc__)
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--raw", help="source directory (a JSONL file for custom)")
    p.add_argument("--out", required=True, help="output DatasetDict directory")
    p.add_argument("--metrics", required=True, help="metrics JSON path")
    args = p.parse_args(argv)
    setup_logging()
    quiet_libraries()  # no "Saving the dataset" bar off a terminal (act.progress)
    run(load(args), dataset=args.dataset, raw=args.raw, out=args.out, metrics_path=args.metrics)


if __name__ == "__main__":
    from act.errors import run_cli

    run_cli(main)  # one-line errors; --debug or ACT_DEBUG=1 for the traceback
