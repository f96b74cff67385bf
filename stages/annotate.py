"""annotate: give every assistant turn its action (CLARIFY / ANSWER) -> `data/annotate/<dataset>`.

    python -m stages.annotate --dataset ambigsql --in data/ingest/ambigsql \
        --out data/annotate/ambigsql --metrics metrics/annotate/ambigsql.json

Dataset labels are kept where they exist (`annotate.use_gold_labels: true`); unlabeled turns,
or every turn with `use_gold_labels: false` (the paper's "no action label available" setting),
are labelled by the annotator role (`roles.annotator`). `action_source` says where each label
came from: "gold", "annotator:<backend>", or "none" (a turn without a response to classify,
e.g. PACIFIC's unlabeled requests). Where gold labels exist the annotator's agreement with them
(accuracy, Macro F1, clarify P/R/F1) is reported as metrics.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from act.io import load_dataset_dict, save_dataset
from act.params import Params

log = logging.getLogger("act.annotate")


def annotate_records(records: list, annotator, *, source: str, use_gold_labels: bool, measure_agreement: bool):
    """(relabelled records, gold labels, annotator labels for the gold-labelled turns).

    Turns with an empty gold response have nothing to classify and keep no label."""
    from act.actions import Action
    from act.roles.base import ClassifyItem

    classifiable = [i for i, r in enumerate(records) if r.gold_response.strip()]
    need = [i for i in classifiable
            if not use_gold_labels or records[i].gold_action is None
            or (measure_agreement and records[i].action_source == "gold")]
    predicted: dict[int, Action] = {}
    if need:
        items = [ClassifyItem(records[i].dataset, records[i].messages, records[i].gold_response) for i in need]
        labels = annotator.classify(items)
        if len(labels) != len(items):
            raise RuntimeError(f"annotator returned {len(labels)} labels for {len(items)} turns")
        predicted = {i: Action.parse(a) for i, a in zip(need, labels)}
    out, gold, pred = [], [], []
    for i, r in enumerate(records):
        has_gold = r.gold_action is not None and r.action_source == "gold"
        if has_gold and i in predicted:
            gold.append(r.action)
            pred.append(predicted[i])
        if has_gold and use_gold_labels:
            out.append(r)
        elif i in predicted:
            out.append(dataclasses.replace(r, gold_action=predicted[i].value, action_source=source))
        else:
            out.append(dataclasses.replace(r, gold_action=None, action_source="none"))
    return out, gold, pred


def run(params: Params, *, dataset: str, inp: str | Path, out: str | Path, metrics_path: str | Path,
        annotator=None) -> dict[str, Any]:
    """`annotator` (an ActionClassifier) replaces the configured role, e.g. in tests."""
    from act.metrics.action import action_scores
    from act.records import validate_row
    from act.roles.base import UsageCounter
    from act.tracking import stage_run

    cfg = params.annotate
    started = time.monotonic()
    usage = UsageCounter()
    if annotator is None:
        from act.roles import build_role

        annotator = build_role("annotator", params.roles, usage=usage)
    source = f"annotator:{params.roles.annotator.backend}"
    with stage_run("annotate", params, cfg, tags={"act.dataset": dataset}) as tracker:
        dd = load_dataset_dict(inp)
        splits: dict[str, list[dict]] = {}
        counts: dict[str, Any] = {}
        all_gold, all_pred = [], []
        for name in dd:
            records = [validate_row(row, file=f"{inp}/{name}", index=i) for i, row in enumerate(dd[name])]
            labelled, gold, pred = annotate_records(records, annotator, source=source,
                                                    use_gold_labels=cfg.use_gold_labels,
                                                    measure_agreement=cfg.measure_agreement)
            all_gold += gold
            all_pred += pred
            splits[name] = [r.to_row() for r in labelled]
            actions = Counter(r.gold_action or "unlabeled" for r in labelled)
            counts[name] = {
                "records": len(labelled),
                "actions": {a: actions.get(a, 0) for a in ("clarify", "answer", "unlabeled")},
                "action_source": dict(sorted(Counter(r.action_source for r in labelled).items())),
            }
            if gold:
                counts[name]["agreement"] = action_scores(gold, pred)
        save_dataset(out, splits)
        metrics: dict[str, Any] = {
            "dataset": dataset,
            "use_gold_labels": cfg.use_gold_labels,
            "records": sum(c["records"] for c in counts.values()),
            "splits": counts,
            "annotator": {"backend": params.roles.annotator.backend, **usage.as_dict()},
        }
        if all_gold:
            metrics["agreement"] = action_scores(all_gold, all_pred)
        tracker.finish(metrics, metrics_path, started=started)
    if "agreement" in metrics:
        log.info("annotate %s: annotator vs gold accuracy %.3f, macro F1 %.3f", dataset,
                 metrics["agreement"]["accuracy"], metrics["agreement"]["macro_f1"])
    return metrics


def main(argv: list[str] | None = None) -> None:
    from act.progress import quiet_libraries
    from stages.common import load, parser, setup_logging

    p = parser("annotate", __doc__)
    p.add_argument("--dataset", required=True)
    p.add_argument("--in", dest="inp", required=True, help="ingested DatasetDict directory")
    p.add_argument("--out", required=True, help="output DatasetDict directory")
    p.add_argument("--metrics", required=True, help="metrics JSON path")
    args = p.parse_args(argv)
    setup_logging()
    quiet_libraries()  # no "Saving the dataset" bar off a terminal (act.progress)
    run(load(args), dataset=args.dataset, inp=args.inp, out=args.out, metrics_path=args.metrics)


if __name__ == "__main__":
    from act.errors import run_cli

    run_cli(main)  # one-line errors; --debug or ACT_DEBUG=1 for the traceback
