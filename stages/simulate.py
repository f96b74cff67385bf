"""simulate: the SFT policy's trajectories on the training pairs, and their relabelled pairs.

    python -m stages.simulate --base models/base --sft models/sft --pairs data/pairs/ambigsql \
        --databases data/raw/spider/database --out data/simulate/ambigsql --metrics metrics/simulate.json

For every Phase-1 pair: sample the starting policy's response, classify its action
(`roles.classifier`), continue a clarifying question with the simulated user
(`roles.simulator`, up to `simulate.max_clarify_turns` exchanges, where the pair's winning
action is CLARIFY; the user follows the gold branch, the one the pair's winner and SFT use),
score the final answer with the task heuristic, and relabel the pair (`act.simulate.relabel`,
`simulate.wrong_action_rule`). Writes a DatasetDict with
`train` (the relabelled pairs, pair schema plus `outcome`/`score`) and `trajectories`. These
are the pairs of the "sampled once" ablation (`train.sampling: once`) and a picture of the
starting policy; ACT itself re-samples during training. With a model classifier (which must pass
the labelled check set first), `judge_disagreements` counts the samples whose action the offline
surface rule judges differently.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from act.params import Params

log = logging.getLogger("act.simulate")


def relabelled_row(pair: dict, decision) -> dict[str, Any]:
    return {**pair, "chosen": decision.chosen, "rejected": decision.rejected,
            "chosen_action": decision.chosen_action, "rejected_action": decision.rejected_action,
            "outcome": decision.outcome, "score": decision.score}


def run(params: Params, *, base: str | Path, sft: str | Path, pairs_dir: str | Path, databases: str | Path,
        out: str | Path, metrics_path: str | Path, classifier=None, simulator=None) -> dict[str, Any]:
    """`classifier` / `simulator` replace the configured roles (e.g. in tests)."""
    from act.io import require_dir, save_dataset
    from act.metrics.task import record_scorer
    from act.model.loading import load_policy
    from act.pairs import load_pairs
    from act.roles import build_role
    from act.roles.base import UsageCounter
    from act.simulate import OUTCOMES, offline_action, relabel, rollout
    from act.tracking import stage_run

    cfg = params.simulate
    if params.train.init == "sft":
        require_dir(sft, "--sft")  # a missing SFT dir would silently sample the base model
    require_dir(databases, "--databases")
    started = time.monotonic()
    usage = {"classifier": UsageCounter(), "simulator": UsageCounter()}
    if classifier is None:
        from act.metrics.checks import require_valid

        classifier = build_role("classifier", params.roles, usage=usage["classifier"])
        require_valid(classifier, params.roles.classifier)  # an LLM judge must pass the check set first
    simulator = simulator or build_role("simulator", params.roles, usage=usage["simulator"])
    start = sft if params.train.init == "sft" else None
    with stage_run("simulate", params, cfg, tags={"act.dataset": params.dataset}) as tracker:
        pairs, records = load_pairs(pairs_dir)
        policy = load_policy(str(base), str(start) if start else None, quantization=params.train.quantization,
                             max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=params.seed,
                             batch_size=cfg.generation_batch_size, max_prompt_tokens=cfg.max_prompt_tokens,
                             dtype=params.train.dtype, attn_implementation=params.train.attn_implementation)
        t0 = time.monotonic()
        trajectories = rollout(records, policy, classifier, simulator, record_scorer(databases),
                               max_clarify_turns=cfg.max_clarify_turns, tolerance=cfg.tolerance,
                               reply_to=[p["chosen_action"] == "clarify" for p in pairs])
        rollout_s = time.monotonic() - t0
        decisions = [relabel(p, t, wrong_action_rule=cfg.wrong_action_rule) for p, t in zip(pairs, trajectories)]
        relabelled = [relabelled_row(p, d) for p, d in zip(pairs, decisions)]
        save_dataset(out, {"train": relabelled, "trajectories": [t.to_row() for t in trajectories]})
        outcomes = Counter(d.outcome for d in decisions)
        disagree = ([r.id for r, t in zip(records, trajectories) if offline_action(r.dataset, t) != t.first_action]
                    if params.roles.classifier.backend != "offline" else [])
        n = max(1, len(trajectories))
        metrics: dict[str, Any] = {
            "pairs": len(pairs),
            "start_policy": "sft" if start else "base",
            **{f"relabel/{o}": outcomes.get(o, 0) for o in OUTCOMES},
            "first_action_clarify_rate": round(sum(t.first_action == "clarify" for t in trajectories) / n, 4),
            "action_match_rate": round(sum(t.first_action == p["gold_action"] for p, t in zip(pairs, trajectories)) / n, 4),
            "success_rate": round(sum(t.success for t in trajectories) / n, 4),
            "mean_score": round(sum(t.score for t in trajectories) / n, 4),
            "judge_disagreements": len(disagree),
            "judge_disagreement_ids": disagree[:50],
            "terminated_rate": round(sum(t.terminated for t in trajectories) / n, 4),
            "generated_tokens": policy.generated_tokens,
            "truncated_samples": policy.truncated_samples,  # turns cut at simulate.max_new_tokens
            "prompts": dict(policy.prompt_stats),  # fitted to simulate.max_prompt_tokens: truncated / dropped counts
            "rollout_seconds": round(rollout_s, 2),
            "usage": {k: u.as_dict() for k, u in usage.items()},
        }
        tracker.finish(metrics, metrics_path, started=started)
    log.info("simulate: %d pairs, outcomes %s", len(pairs), dict(outcomes))
    return metrics


def main(argv: list[str] | None = None) -> None:
    from stages.common import load, parser, setup_logging

    p = parser("simulate", __doc__)
    p.add_argument("--base", required=True, help="base model directory")
    p.add_argument("--sft", required=True, help="SFT adapter directory (the starting policy)")
    p.add_argument("--pairs", required=True, help="Phase-1 pair DatasetDict")
    p.add_argument("--databases", required=True, help="SQLite databases dir for SQL execution scoring")
    p.add_argument("--out", required=True, help="output DatasetDict (train: relabelled pairs, trajectories)")
    p.add_argument("--metrics", required=True, help="metrics JSON path")
    args = p.parse_args(argv)
    setup_logging()
    run(load(args), base=args.base, sft=args.sft, pairs_dir=args.pairs, databases=args.databases, out=args.out,
        metrics_path=args.metrics)


if __name__ == "__main__":
    from act.errors import run_cli

    run_cli(main)  # one-line errors; --debug or ACT_DEBUG=1 for the traceback
