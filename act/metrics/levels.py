"""One policy on eval records: simulate its conversations and score every example at three levels.

`evaluate_policy` runs `act.simulate.rollout` on every branch of each record (first response,
sampled once per record, its classified action, the simulated user's replies while the policy
asks, the final answer scored by the task heuristic against that branch) and turns each
trajectory into a flat row: the action-level pair (gold vs predicted action), the turn-level
scores of the first response, and the trajectory-level score of the final answer. An ambiguous
record with k interpretations gives k rows (`branch_index`, `branches` = k). `per_record` averages
them into one row per record (trajectory score, success and termination as fractions), which
`act.metrics.summary.summarize` aggregates: every record counts once, and no branch is picked by
chance. Failures (empty responses, SQL errors and timeouts, conversations cut off after
`max_turns` questions) score 0 and keep their status.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from act.actions import Action
from act.metrics import coqa
from act.metrics.task import TEXT_DATASETS, TaskScore, score_detail
from act.records import Branch, TurnRecord
from act.roles.base import ActionClassifier, Policy, UserSimulator

Similarity = Callable[[Sequence[str], Sequence[str]], list[float]]
"""Pairwise semantic similarity of two equally long lists of texts (turn level; optional)."""

AVERAGED = ("traj_score", "success", "terminated", "clarify_turns", "truncated_turns")
"""The per-branch fields `per_record` averages over a record's branches."""


def evaluate_policy(records: Sequence[TurnRecord], policy: Policy, classifier: ActionClassifier,
                    simulator: UserSimulator, *, max_turns: int, tolerance: float,
                    db_dir: str | Path | None = None, sql_timeout_s: float = 5.0,
                    similarity: Similarity | None = None, coqa_averaging: str = "max",
                    progress_desc: str = "evaluate") -> list[dict[str, Any]]:
    """Rows (one per record and branch, records in order) for one policy and one sampling seed.
    Progress (a bar on a terminal, else a line now and then; `act.progress`) counts the
    conversations scored."""
    from act.pairs import gold_branch
    from act.progress import progress
    from act.simulate import every_branch, rollout

    details: dict[tuple[str, int], TaskScore] = {}
    records = [r for r in records if r.gold_action is not None]
    branches = [every_branch(r) for r in records]

    with progress(sum(len(b) for b in branches), progress_desc, unit="conversation") as bar:
        def scorer(record: TurnRecord, branch: Branch, answer: str) -> float:
            detail = score_detail(record.dataset, answer, branch, record.meta, db_dir=db_dir, timeout_s=sql_timeout_s,
                                  coqa_averaging=coqa_averaging)
            details[record.id, id(branch)] = detail
            bar.update(1)
            return detail.score

        trajectories = rollout(records, policy, classifier, simulator, scorer,
                               max_clarify_turns=max_turns, tolerance=tolerance, branches=branches)
    by_record: dict[str, list] = {}
    for t in trajectories:
        by_record.setdefault(t.record_id, []).append(t)
    firsts = [by_record[r.id][0].first_response for r in records]
    sims = [None] * len(records)
    if similarity is not None and records:
        sims = similarity(firsts, [r.gold_response for r in records])
    rows = []
    for rec, first, sim in zip(records, firsts, sims):
        turn: TaskScore | None = None
        if rec.action is Action.ANSWER:  # the first response against the gold branch's answer, once per record
            turn = score_detail(rec.dataset, first, gold_branch(rec), rec.meta, db_dir=db_dir, timeout_s=sql_timeout_s,
                                coqa_averaging=coqa_averaging)
        for traj in by_record[rec.id]:
            branch = rec.branches[traj.branch_index]
            final = details.get((rec.id, id(branch)))
            rows.append({
                "record_id": rec.id,
                "dataset": rec.dataset,
                "messages": list(rec.messages),
                "gold_action": rec.action.value,
                "gold_response": rec.gold_response,
                "gold_reply": branch.reply or "",
                "gold_target": branch.target,
                "pred_action": Action.parse(traj.first_action).value,
                "first_response": traj.first_response,
                "first_empty": not traj.first_response.strip(),
                "turn_score": turn.score if turn else None,
                "turn_status": turn.status if turn else "",
                "turn_token_f1": coqa.f1(first, rec.gold_response) if rec.dataset in TEXT_DATASETS else None,
                "turn_embedding": float(sim) if sim is not None else None,
                "branch_index": traj.branch_index,
                "branches": len(by_record[rec.id]),
                "turns": list(traj.turns),
                "final_answer": traj.final_answer,
                "traj_score": float(traj.score),
                "traj_status": final.status if final else "non_terminated",
                "success": bool(traj.success),
                "clarify_turns": int(traj.clarify_turns),
                "terminated": bool(traj.terminated),
                "truncated_turns": int(traj.truncated_turns),
            })
    return rows


def per_record(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (policy, seed, record): a record's branch rows averaged (`AVERAGED`; success and
    termination become the fraction of branches). A record with one branch keeps its row as it is.
    The trajectory status is the branches' common one, else "mixed". Order: first appearance."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r.get("policy"), r.get("seed"), r["record_id"]), []).append(r)
    out = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        row = dict(group[0])
        for key in AVERAGED:
            row[key] = sum(float(r.get(key) or 0) for r in group) / len(group)
        statuses = {r["traj_status"] for r in group}
        row["traj_status"] = statuses.pop() if len(statuses) == 1 else "mixed"
        row["branch_index"] = None
        out.append(row)
    return out
