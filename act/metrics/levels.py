"""One policy on eval records: simulate its conversations and score every example at three levels.

`evaluate_policy` runs `act.simulate.rollout` (first response, its classified action, the
simulated user's replies while the policy asks, the final answer scored by the task heuristic)
and turns each trajectory into a flat row: the action-level pair (gold vs predicted action), the
turn-level scores of the first response, and the trajectory-level score of the final answer.
`act.metrics.summary.summarize` aggregates rows. Failures (empty responses, SQL errors and
timeouts, conversations cut off after `max_turns` questions) score 0 and keep their status.
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


def evaluate_policy(records: Sequence[TurnRecord], policy: Policy, classifier: ActionClassifier,
                    simulator: UserSimulator, *, max_turns: int, tolerance: float,
                    db_dir: str | Path | None = None, sql_timeout_s: float = 5.0,
                    similarity: Similarity | None = None, coqa_averaging: str = "max",
                    progress_desc: str = "evaluate") -> list[dict[str, Any]]:
    """Rows (one per record, in order) for one policy and one sampling seed. Progress (a bar on a
    terminal, else a line now and then; `act.progress`) counts the conversations scored."""
    from act.progress import progress
    from act.simulate import rollout

    details: dict[str, TaskScore] = {}
    records = [r for r in records if r.gold_action is not None]

    with progress(len(records), progress_desc, unit="record") as bar:
        def scorer(record: TurnRecord, branch: Branch, answer: str) -> float:
            detail = score_detail(record.dataset, answer, branch, record.meta, db_dir=db_dir, timeout_s=sql_timeout_s,
                                  coqa_averaging=coqa_averaging)
            details[record.id] = detail
            bar.update(1)
            return detail.score

        trajectories = rollout(records, policy, classifier, simulator, scorer,
                               max_clarify_turns=max_turns, tolerance=tolerance)
    sims = [None] * len(records)
    if similarity is not None and records:
        sims = similarity([t.first_response for t in trajectories], [r.gold_response for r in records])
    rows = []
    for rec, traj, sim in zip(records, trajectories, sims):
        branch = rec.branches[traj.branch_index]
        turn: TaskScore | None = None
        if rec.action is Action.ANSWER:
            turn = score_detail(rec.dataset, traj.first_response, branch, rec.meta, db_dir=db_dir, timeout_s=sql_timeout_s,
                                coqa_averaging=coqa_averaging)
        final = details.get(rec.id)
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
            "turn_token_f1": coqa.f1(traj.first_response, rec.gold_response) if rec.dataset in TEXT_DATASETS else None,
            "turn_embedding": float(sim) if sim is not None else None,
            "branch_index": traj.branch_index,
            "turns": list(traj.turns),
            "final_answer": traj.final_answer,
            "traj_score": float(traj.score),
            "traj_status": final.status if final else "non_terminated",
            "success": bool(traj.success),
            "clarify_turns": int(traj.clarify_turns),
            "terminated": bool(traj.terminated),
        })
    return rows
