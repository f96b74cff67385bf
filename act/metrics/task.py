"""The task heuristic: one number in [0, 1] for a final answer against the branch the user followed.

    pacific   DROP/TAT-QA F1 against `branch.answers` in `branch.scale` (`act.metrics.drop`)
    abg_coqa  CoQA token F1 over `branch.answers` (`act.metrics.coqa`): the best one, or the official
              leave-one-out average with `coqa_averaging="leave_one_out"` (evaluate.coqa_averaging)
    custom    same as abg_coqa
    ambigsql  execution match of the predicted SQL against the gold SQL (`branch.target`, else
              `branch.answers[0]`) on `<db_dir>/<meta["db_id"]>/<db_id>.sqlite` (`act.metrics.sql`)

Used by training (ACT's success test: score >= simulate.tolerance) and by evaluation. A missing,
empty or malformed prediction, SQL that fails or runs too long, a gold SQL result that proves
nothing (empty or a lone 0/NULL: status "vacuous"): all score 0, never raise; `score_detail` also
says why (its `status`) so callers can count failures. A database file that is missing or cannot
be opened is no score: it raises `act.metrics.sql.DatabaseUnavailable`, naming the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from act.datasets import DATASETS, TEXT_DATASETS  # noqa: F401  (TEXT_DATASETS: re-exported for levels)
from act.records import Branch

if TYPE_CHECKING:
    from act.records import TurnRecord

TASK_DATASETS = DATASETS


@dataclass(frozen=True)
class TaskScore:
    score: float
    status: str
    """"ok" (scored; the score may still be 0), "empty" (no prediction), or for SQL
    "mismatch" / "error" / "timeout" / "vacuous"."""
    em: float | None = None
    """Exact match where the metric defines one (PACIFIC, Abg-CoQA)."""
    message: str = ""


def pacific_answer_type(meta: dict) -> str:
    """Answer type of the final answer: a CLARIFY turn's own type is "question", not its answer's."""
    kind = str(meta.get("final_answer_type") or meta.get("answer_type") or "span")
    return "span" if kind == "question" else kind


def score_detail(dataset: str, prediction: str | None, branch: Branch, meta: dict, *,
                 db_dir: str | Path | None = None, timeout_s: float = 5.0, coqa_averaging: str = "max") -> TaskScore:
    if dataset not in TASK_DATASETS:
        raise ValueError(f"no task metric for dataset {dataset!r}; expected one of {TASK_DATASETS}")
    if prediction is None or not str(prediction).strip():
        return TaskScore(0.0, "empty", 0.0 if dataset != "ambigsql" else None)
    if dataset == "pacific":
        from act.metrics.drop import pacific_em_f1

        em, f1 = pacific_em_f1(str(prediction), branch.answers, branch.scale, pacific_answer_type(meta))
        return TaskScore(float(f1), "ok", float(em))
    if dataset in ("abg_coqa", "custom"):
        from act.metrics.coqa import turn_em, turn_f1

        golds = branch.answers or [branch.target]
        return TaskScore(turn_f1(str(prediction), golds, coqa_averaging), "ok",
                         turn_em(str(prediction), golds, coqa_averaging))
    from act.metrics.sql import execution_match

    db_id = meta.get("db_id")
    if not db_dir or not db_id:
        return TaskScore(0.0, "error", message="no database (db_dir or meta['db_id'] missing)")
    gold_sql = branch.target or (branch.answers[0] if branch.answers else "")
    result = execution_match(str(prediction), gold_sql, Path(db_dir) / str(db_id) / f"{db_id}.sqlite",
                             timeout_s=timeout_s)
    return TaskScore(result.score, result.status, message=result.message)


def score(dataset: str, prediction: str | None, branch: Branch, meta: dict, *,
          db_dir: str | Path | None = None, timeout_s: float = 5.0) -> float:
    """The task score in [0, 1] of `prediction` against `branch`; failures score 0."""
    return score_detail(dataset, prediction, branch, meta, db_dir=db_dir, timeout_s=timeout_s).score


def record_scorer(db_dir: str | Path | None = None, timeout_s: float = 5.0) -> Callable[["TurnRecord", Branch, str], float]:
    """`act.simulate.Scorer` for a record: `scorer(record, branch, final_answer) -> float`."""

    def scorer(record: "TurnRecord", branch: Branch, answer: str) -> float:
        return score(record.dataset, answer, branch, record.meta, db_dir=db_dir, timeout_s=timeout_s)

    return scorer
