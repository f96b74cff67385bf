"""From per-example evaluation rows to the three-level metrics of one policy, and across seeds.

A row (one per policy x seed x eval record; built by `stages/evaluate.py`) carries at least:
`gold_action`, `pred_action`, `turn_score` (task score of the first response, None unless the
gold turn is an answer), `turn_status`, `turn_token_f1` (None for SQL), `turn_embedding` (None
when off), `traj_score`, `traj_status`, `success`, `clarify_turns`, `terminated`, `first_empty`.

Levels (every figure comes with the count it is averaged over):
- action:     `act.metrics.action.action_scores` of the classified first response vs gold action.
- turn:       `answer_score`: task score of the first response where the gold turn answers
              (PACIFIC/Abg-CoQA F1, AmbigSQL execution match), over `n_answer`;
              `token_f1` / `embedding_similarity` of the first response vs the gold turn, over `n`.
- trajectory: `score`: task score of the final answer of the simulated conversation (Trajectory
              F1 / execution match), over all `n` (no final answer = 0); `success_rate`
              (score >= tolerance); `post_clarify_score` over the `n_post_clarify` conversations
              where the policy asked first; `score_gold_clarify` over the `n_gold_clarify`
              ambiguous turns; `terminated_rate`, `mean_clarify_turns`; failures counted:
              `non_terminated`, `empty`, and for SQL `errors`, `timeouts`.
Across seeds each figure is the mean; with several seeds `<name>_std` (sample std, ddof 1) is
added. Counts fixed by the records (`n`, `n_answer`, `n_gold_clarify`) are kept as they are.

The evaluate stage adds to the action level, once per policy (log-likelihoods do not depend on the
sampling seed, so there is no `_std`): `action_auc` (`act.metrics.likelihood`: ROC AUC of "ask"
minus "answer" log-likelihood against the gold action; 0.5 = blind, threshold-free),
`action_auc_lo` / `action_auc_hi` (its 95% bootstrap interval), `action_auc_n_clarify`,
`action_auc_n_answer` and `action_auc_skipped` (records without a direct answer to score).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from act.metrics.action import action_scores

LEVELS = ("action", "turn", "trajectory")

HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("action", "macro_f1", "Action Macro F1"),
    ("action", "accuracy", "Action accuracy"),
    ("action", "clarify_f1", "Clarify F1"),
    ("action", "informedness", "Action informedness (J)"),
    ("action", "action_auc", "Action AUC (likelihood)"),
    ("turn", "answer_score", "Turn task score"),
    ("turn", "token_f1", "Turn token F1"),
    ("trajectory", "score", "Trajectory score"),
    ("trajectory", "post_clarify_score", "Post-clarify score"),
    ("trajectory", "success_rate", "Trajectory success"),
)
"""The headline metrics, (level, metric, label), in display order: the report's bar chart and
table, `act show` and the ablation table all show these (where the data has them)."""

HEADLINE_KEYS: tuple[str, ...] = tuple(f"{level}.{metric}" for level, metric, _ in HEADLINE)
"""The same as dotted names, as flattened metrics spell them."""

ABLATION_METRICS: tuple[str, ...] = ("action.macro_f1", "action.clarify_f1", "action.action_auc", "turn.answer_score", "trajectory.score",
                                     "trajectory.success_rate")
"""The metrics a sweep compares: the ablation plot draws them (where the table has them) and the
ablation markdown shows their paired ACT - method differences (the CSVs hold every metric)."""


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0.0 for a single value) over seeds."""
    if not values:
        raise ValueError("mean_std of no values")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Paired comparison of two methods run on the same seeds: `a - b` per seed, their mean and
    sample std, Student's t = mean / (std / sqrt(n)) with n - 1 degrees of freedom and its two-sided
    p. With fewer than 2 seeds, or differences that do not vary, t and p are None (no test)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_difference needs two equally long, non-empty lists; got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b)]
    mean, std = mean_std(diffs)
    out: dict[str, Any] = {"diffs": diffs, "mean": mean, "std": std, "n": len(diffs), "df": len(diffs) - 1,
                           "t": None, "p": None}
    if len(diffs) >= 2 and std > 1e-12:
        from scipy.stats import t as student_t  # scipy comes with mlflow

        out["t"] = mean / (std / math.sqrt(len(diffs)))
        out["p"] = float(2 * student_t.sf(abs(out["t"]), len(diffs) - 1))
    return out


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    """{"action": {...}, "turn": {...}, "trajectory": {...}} for the rows of one policy and seed."""
    action = action_scores([r["gold_action"] for r in rows], [r["pred_action"] for r in rows])

    answer_rows = [r for r in rows if r.get("turn_score") is not None]
    turn: dict[str, float | int] = {
        "answer_score": _mean([r["turn_score"] for r in answer_rows]),
        "n_answer": len(answer_rows),
        "empty": sum(1 for r in rows if r.get("first_empty")),
        "n": len(rows),
    }
    token = [r["turn_token_f1"] for r in rows if r.get("turn_token_f1") is not None]
    if token:
        turn["token_f1"] = _mean(token)
    emb = [r["turn_embedding"] for r in rows if r.get("turn_embedding") is not None]
    if emb:
        turn["embedding_similarity"] = _mean(emb)
    statuses = [r.get("turn_status") for r in answer_rows]
    if any(s in ("error", "timeout", "mismatch") for s in statuses):
        turn["errors"] = statuses.count("error")
        turn["timeouts"] = statuses.count("timeout")

    asked = [r for r in rows if r["pred_action"] == "clarify"]
    ambiguous = [r for r in rows if r["gold_action"] == "clarify"]
    traj_status = [r.get("traj_status") for r in rows]
    trajectory: dict[str, float | int] = {
        "score": _mean([r["traj_score"] for r in rows]),
        "success_rate": _mean([float(r["success"]) for r in rows]),  # a fraction of branches per record
        "post_clarify_score": _mean([r["traj_score"] for r in asked]),
        "n_post_clarify": len(asked),
        "score_gold_clarify": _mean([r["traj_score"] for r in ambiguous]),
        "n_gold_clarify": len(ambiguous),
        "terminated_rate": _mean([float(r["terminated"]) for r in rows]),
        "mean_clarify_turns": _mean([float(r["clarify_turns"]) for r in rows]),
        "non_terminated": sum(1 for r in rows if float(r["terminated"]) < 1.0),  # a branch was cut
        "empty": traj_status.count("empty"),
        "n": len(rows),
    }
    if any(s in ("error", "timeout", "mismatch") for s in traj_status):
        trajectory["errors"] = traj_status.count("error")
        trajectory["timeouts"] = traj_status.count("timeout")
    return {"action": action, "turn": turn, "trajectory": trajectory}


SEED_FREE_COUNTS = ("n", "n_answer", "n_gold_clarify", "action_auc_n_clarify", "action_auc_n_answer",
                    "action_auc_skipped")
"""Counts fixed by the eval records; every other figure (n_post_clarify too) depends on sampling."""


def _is_count(name: str) -> bool:
    return name in SEED_FREE_COUNTS


def combine_seeds(per_seed: Sequence[dict[str, dict[str, float | int]]]) -> dict[str, dict[str, float | int]]:
    """Mean over seeds of each figure (plus `_std` with several seeds); counts kept."""
    if not per_seed:
        raise ValueError("no seeds to combine")
    out: dict[str, dict[str, float | int]] = {}
    for level in per_seed[0]:
        combined: dict[str, float | int] = {}
        for name, first in per_seed[0][level].items():
            values = [s[level].get(name, 0) for s in per_seed]
            if _is_count(name):
                combined[name] = first
                continue
            mean, std = mean_std([float(v) for v in values])
            combined[name] = mean
            if len(values) > 1:
                combined[f"{name}_std"] = std
        if len(per_seed) > 1:
            combined["seeds"] = len(per_seed)
        out[level] = combined
    return out
