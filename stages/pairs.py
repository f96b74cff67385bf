"""pairs: Phase 1 of ACT, action-contrastive preference pairs -> `data/pairs/<dataset>`.

    python -m stages.pairs --dataset ambigsql --in data/annotate/ambigsql \
        --out data/pairs/ambigsql --sample data/pairs_sample/ambigsql.md \
        --metrics metrics/pairs/ambigsql.json

For each labelled assistant turn of the train split the gold turn wins and a turn taking the
opposite action, written by the rejecter role (`roles.rejecter`), loses (`pairs.random_actions`
draws the winning action at random instead: the "ACT w/ Random Actions" ablation). Every pair is
schema-checked before it is written. The eval split's turns give an `eval` split of pairs (gold
always wins): the fixed probe set on which training logs its margins. Also reported: the configured classifier role's accuracy
and Macro F1 on the gold-labelled turns, and how often it sees the rejected side taking the
action it was asked to take.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from act.params import Params

log = logging.getLogger("act.pairs")


def classifier_report(records, pairs, classifier) -> dict[str, Any]:
    """Classifier vs gold labels on the gold-labelled turns, and vs intended action on the
    rejected sides (a rejecter that fails to take the opposite action shows up here)."""
    from act.metrics.action import action_scores
    from act.roles.base import ClassifyItem

    gold_recs = [r for r in records if r.action is not None and r.action_source == "gold" and r.gold_response.strip()]
    rejected = [p for p in pairs if p["rejected"]]
    items = [ClassifyItem(r.dataset, r.messages, r.gold_response, r.context) for r in gold_recs]
    items += [ClassifyItem(p["dataset"], p["messages"], p["rejected"][0]["content"], p["context"]) for p in rejected]
    labels = classifier.classify(items) if items else []
    report: dict[str, Any] = {}
    if gold_recs:
        report["gold_turns"] = action_scores([r.action for r in gold_recs], labels[: len(gold_recs)])
    if rejected:
        seen = labels[len(gold_recs):]
        hits = sum(a.value == p["rejected_action"] for a, p in zip(seen, rejected))
        report["rejected_takes_intended_action"] = round(hits / len(rejected), 4)
    return report


def run(params: Params, *, dataset: str, inp: str | Path, out: str | Path, sample: str | Path,
        metrics_path: str | Path, rejecter=None, classifier=None) -> dict[str, Any]:
    """`rejecter` / `classifier` replace the configured roles (e.g. in tests)."""
    from act.io import atomic_file, load_dataset_dict, save_dataset
    from act.pairs import build_pairs, render_sample, validate_pair
    from act.records import validate_row
    from act.roles import build_role
    from act.roles.base import UsageCounter
    from act.tracking import stage_run

    cfg = params.pairs
    started = time.monotonic()
    rej_usage, clf_usage = UsageCounter(), UsageCounter()
    rejecter = rejecter or build_role("rejecter", params.roles, usage=rej_usage)
    classifier = classifier or build_role("classifier", params.roles, usage=clf_usage)
    with stage_run("pairs", params, cfg, tags={"act.dataset": dataset}) as tracker:
        dd = load_dataset_dict(inp)
        if "train" not in dd:
            raise FileNotFoundError(f"{inp}: no 'train' split (found {sorted(dd)})")
        file = f"{inp}/train"
        records = [validate_row(row, file=file, index=i) for i, row in enumerate(dd["train"])]
        pairs, counts = build_pairs(records, rejecter, clarify_winner=cfg.clarify_winner,
                                    random_actions=cfg.random_actions, seed=params.seed)
        # the eval split's Phase-1 pairs (gold wins, never random): the fixed probe set of training
        probe: list[dict] = []
        if "eval" in dd:
            eval_records = [validate_row(row, file=f"{inp}/eval", index=i) for i, row in enumerate(dd["eval"])]
            probe, _ = build_pairs(eval_records, rejecter, clarify_winner=cfg.clarify_winner, seed=params.seed)
        for i, row in enumerate(pairs + probe):
            validate_pair(row, file=f"{out} (to be written)", index=i)
        save_dataset(out, {"train": pairs, **({"eval": probe} if probe else {})})
        with atomic_file(sample) as fh:
            fh.write(render_sample(pairs, cfg.samples, seed=params.seed,
                                   title=f"Preference pairs: {dataset} ({len(pairs)} pairs)"))
        metrics: dict[str, Any] = {
            "dataset": dataset,
            **counts,
            "probe_pairs": len(probe),
            "gold_action": dict(sorted(Counter(p["gold_action"] for p in pairs).items())),
            "chosen_action": dict(sorted(Counter(p["chosen_action"] for p in pairs).items())),
            "multi_turn_chosen": sum(len(p["chosen"]) > 1 for p in pairs),
            "classifier": {"backend": params.roles.classifier.backend,
                           **classifier_report(records, pairs, classifier), "usage": clf_usage.as_dict()},
            "rejecter": {"backend": params.roles.rejecter.backend, "usage": rej_usage.as_dict()},
        }
        tracker.finish(metrics, metrics_path, started=started, artifacts=((sample, None),))
    gold = metrics["classifier"].get("gold_turns")
    log.info("pairs %s: %d pairs from %d records (%d unlabeled skipped)%s", dataset, counts["pairs"],
             counts["records"], counts["skipped_unlabeled"],
             f"; classifier accuracy {gold['accuracy']:.3f}, macro F1 {gold['macro_f1']:.3f}" if gold else "")
    return metrics


def main(argv: list[str] | None = None) -> None:
    from act.progress import quiet_libraries
    from stages.common import load, parser, setup_logging

    p = parser("pairs", __doc__)
    p.add_argument("--dataset", required=True)
    p.add_argument("--in", dest="inp", required=True, help="annotated DatasetDict directory")
    p.add_argument("--out", required=True, help="output pair DatasetDict directory")
    p.add_argument("--sample", required=True, help="human-readable Markdown sample of pairs")
    p.add_argument("--metrics", required=True, help="metrics JSON path")
    args = p.parse_args(argv)
    setup_logging()
    quiet_libraries()  # no "Saving the dataset" bar off a terminal (act.progress)
    run(load(args), dataset=args.dataset, inp=args.inp, out=args.out, sample=args.sample, metrics_path=args.metrics)


if __name__ == "__main__":
    from act.errors import run_cli

    run_cli(main)  # one-line errors; --debug or ACT_DEBUG=1 for the traceback
