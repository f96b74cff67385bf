"""judge: the action classifier's error rate on the labelled check set -> `metrics/judge.json`.

    python -m stages.judge --checks data/checks/classifier.jsonl --metrics metrics/judge.json

Scores the offline surface rule and, when `roles.classifier` (or `roles.annotator`) uses an http
or local backend, that backend too, on the same hand-labelled turns: accuracy, Macro F1, clarify
precision / recall, answer precision, accuracy per style and the ids of the misjudged turns.
A model-backed classifier below `roles.classifier.min_check_f1` fails this stage (and the
simulate / train / evaluate stages, which check it again before using it).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from act.params import Params

log = logging.getLogger("act.judge")


def run(params: Params, *, checks: str | Path, metrics_path: str | Path) -> dict[str, Any]:
    from act.roles import build_role
    from act.roles.base import UsageCounter
    from act.metrics.checks import JudgeCheckError, check_classifier, load_check_set
    from act.roles.offline import SurfaceClassifier
    from act.tracking import stage_run

    started = time.monotonic()
    turns = load_check_set(checks)
    backends: dict[str, Any] = {"offline": check_classifier(SurfaceClassifier(), turns)}
    configured = params.roles.classifier
    with stage_run("judge", params, configured) as tracker:
        for role in ("classifier", "annotator"):
            cfg = getattr(params.roles, role)
            if cfg.backend == "offline":
                continue
            usage = UsageCounter()
            report = check_classifier(build_role(role, params.roles, usage=usage), turns)
            backends[f"{role}:{cfg.backend}" + (f":{cfg.model}" if cfg.model else "")] = {**report, "usage": usage.as_dict()}
        metrics: dict[str, Any] = {
            "check_turns": len(turns),
            "clarify_turns": sum(t.action.value == "clarify" for t in turns),
            "classifier_backend": configured.backend,
            "min_check_f1": configured.min_check_f1,
            "backends": backends,
        }
        tracker.finish(metrics, metrics_path, started=started)
    for name, r in backends.items():
        log.info("judge %s: accuracy %.3f, Macro F1 %.3f, clarify recall %.3f on %d check turns", name,
                 r["accuracy"], r["macro_f1"], r["clarify_recall"], len(turns))
    if configured.backend != "offline":
        f1 = next(r for name, r in backends.items() if name.startswith("classifier:"))["macro_f1"]
        if f1 < configured.min_check_f1:
            raise JudgeCheckError(
                f"roles.classifier: the {configured.backend} classifier scores Macro F1 {f1:.3f} on the check set "
                f"{checks}, below roles.classifier.min_check_f1={configured.min_check_f1} (figures in {metrics_path})")
    return metrics


def main(argv: list[str] | None = None) -> None:
    from stages.common import load, parser, setup_logging

    p = parser("judge", __doc__)
    p.add_argument("--checks", default="data/checks/classifier.jsonl", help="labelled check set (JSONL)")
    p.add_argument("--metrics", required=True, help="metrics JSON path")
    args = p.parse_args(argv)
    setup_logging()
    run(load(args), checks=args.checks, metrics_path=args.metrics)


if __name__ == "__main__":
    from act.errors import run_cli

    run_cli(main)  # one-line errors; --debug or ACT_DEBUG=1 for the traceback
