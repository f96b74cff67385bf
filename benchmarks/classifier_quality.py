"""Action classifier quality: accuracy and Macro F1 of a classifier backend against the gold
action labels of the annotate outputs, per dataset and split, and on the labelled check set
(data/checks/classifier.jsonl: hand-written turns in many styles, accuracy per style).

    python benchmarks/classifier_quality.py                       # roles.classifier from params.yaml
    python benchmarks/classifier_quality.py -S roles.classifier.backend=http \
        -S roles.classifier.model=gpt-4o-mini -S roles.classifier.base_url=https://api.openai.com/v1
    python benchmarks/classifier_quality.py --annotate-dir data/annotate --json out.json

Only turns whose label came from the dataset (`action_source == "gold"`) count. Prints a
Markdown table; `--json` also writes the figures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from act.datasets import BENCHMARKS as DATASETS  # noqa: E402  (after the sys.path line)


def measure(classifier, annotate_dir: Path, datasets=DATASETS) -> list[dict]:
    from act.io import load_dataset_dict
    from act.metrics.action import action_scores
    from act.records import validate_row
    from act.roles.base import ClassifyItem

    rows = []
    for ds in datasets:
        path = annotate_dir / ds
        if not path.exists():
            print(f"{path}: missing (run `dvc repro annotate` first); skipped", file=sys.stderr)
            continue
        dd = load_dataset_dict(path)
        for split in dd:
            recs = [validate_row(r, file=f"{path}/{split}", index=i) for i, r in enumerate(dd[split])]
            recs = [r for r in recs if r.action is not None and r.action_source == "gold" and r.gold_response.strip()]
            if not recs:
                continue
            pred = classifier.classify([ClassifyItem(r.dataset, r.messages, r.gold_response, r.context) for r in recs])
            gold = [r.action for r in recs]
            rows.append({"dataset": ds, "split": split, "clarify_turns": sum(a.value == "clarify" for a in gold),
                         **action_scores(gold, pred)})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--annotate-dir", default="data/annotate", help="folder with one annotate output per dataset")
    p.add_argument("--checks", default="data/checks/classifier.jsonl", help="labelled check set (\"\" = skip)")
    p.add_argument("--json", default="", help="also write the figures here")
    args = p.parse_args(argv)

    import yaml

    from act.io import write_json
    from act.params import load_params
    from act.roles import build_role
    from act.roles.base import UsageCounter

    params = load_params(args.params, {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)})
    usage = UsageCounter()
    classifier = build_role("classifier", params.roles, usage=usage)
    rows = measure(classifier, Path(args.annotate_dir))
    backend = params.roles.classifier.backend + (f" ({params.roles.classifier.model})" if params.roles.classifier.model else "")
    print(f"classifier backend: {backend}\n")
    print("| dataset | split | turns | clarify turns | accuracy | Macro F1 | clarify P | clarify R |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['dataset']} | {r['split']} | {r['n']} | {r['clarify_turns']} | "
              f"{r['accuracy']:.3f} | {r['macro_f1']:.3f} | {r['clarify_precision']:.3f} | {r['clarify_recall']:.3f} |")
    check = None
    if args.checks:
        from act.metrics.checks import check_classifier, load_check_set

        check = check_classifier(classifier, load_check_set(args.checks))
        print(f"\ncheck set {args.checks}: {check['n']} turns, accuracy {check['accuracy']:.3f}, Macro F1 "
              f"{check['macro_f1']:.3f}, clarify recall {check['clarify_recall']:.3f}, answer precision "
              f"{check['answer_precision']:.3f}\n")
        print("| style | accuracy |\n|---|---:|")
        for style, acc in check["by_style"].items():
            print(f"| {style} | {acc:.3f} |")
        if check["errors"]:
            print(f"\nmisjudged: {', '.join(check['errors'])}")
    print(f"\nusage: {usage.as_dict()}")
    if args.json:
        write_json(args.json, {"backend": backend, "rows": rows, "check_set": check, "usage": usage.as_dict()})


if __name__ == "__main__":
    main()
