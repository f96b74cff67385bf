"""The judge's own error rate: an action classifier scored on a labelled check set.

Every relabel in ACT rests on the classifier's verdict (clarify or answer), so its mistakes turn
right-action samples into losing sides. `data/checks/classifier.jsonl` holds hand-written
assistant turns in many styles (questions without "?", questions followed by examples, a question
buried mid-turn, multiple-choice offers, polite imperatives, SQL, numbers, prose, answers quoting
a question, rhetorical or confirmatory answers), each labelled clarify / answer with a `style`.

    turns = load_check_set()                      # the committed set
    report = check_classifier(classifier, turns)  # accuracy, Macro F1, clarify recall, per style
    require_valid(classifier, params.roles.classifier)  # an LLM judge below min_check_f1 stops the run

One JSON object per line: `id`, `dataset`, `messages` (the conversation before the turn, a list
of {role, content}), `response` (the turn to label), `action` (clarify | answer), `style`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from act.actions import Action
from act.errors import RecordError
from act.roles.base import ActionClassifier, ClassifyItem

log = logging.getLogger("act.roles")

CHECK_SET = Path(__file__).resolve().parents[2] / "data" / "checks" / "classifier.jsonl"
"""The committed check set (see data/checks/README.md for its provenance)."""


class JudgeCheckError(RuntimeError):
    """The configured classifier scores below its threshold on the check set."""


@dataclass(frozen=True)
class CheckTurn:
    id: str
    dataset: str
    messages: list[dict[str, str]]
    response: str
    action: Action
    style: str

    def item(self) -> ClassifyItem:
        return ClassifyItem(self.dataset, self.messages, self.response)


def _field(row: dict, name: str, kind: type, file: str, record: Any):
    value = row.get(name)
    if not isinstance(value, kind):
        raise RecordError(file, record, name, f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def load_check_set(path: str | Path = CHECK_SET) -> list[CheckTurn]:
    """The check turns in `path`; a malformed line fails naming file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"classifier check set {path} not found")
    turns, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = f"line {n}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(str(path), record, None, f"invalid JSON: {e}") from None
        if not isinstance(row, dict):
            raise RecordError(str(path), record, None, "expected a JSON object")
        tid = _field(row, "id", str, str(path), record)
        if tid in seen:
            raise RecordError(str(path), record, "id", f"duplicate id {tid!r}")
        seen.add(tid)
        messages = _field(row, "messages", list, str(path), record)
        for i, m in enumerate(messages):
            if not (isinstance(m, dict) and m.get("role") in ("user", "assistant", "system")
                    and isinstance(m.get("content"), str)):
                raise RecordError(str(path), record, f"messages[{i}]", "expected {role, content}")
        try:
            action = Action.parse(_field(row, "action", str, str(path), record))
        except ValueError as e:
            raise RecordError(str(path), record, "action", str(e)) from None
        turns.append(CheckTurn(tid, _field(row, "dataset", str, str(path), record), messages,
                               _field(row, "response", str, str(path), record), action,
                               _field(row, "style", str, str(path), record)))
    if not turns:
        raise RecordError(str(path), None, None, "no check turns")
    return turns


def check_classifier(classifier: ActionClassifier, turns: Sequence[CheckTurn]) -> dict[str, Any]:
    """Accuracy / Macro F1 / clarify precision and recall over the set, accuracy per style, and
    the ids of the turns it gets wrong."""
    from act.metrics.action import action_scores

    pred = [Action.parse(a) for a in classifier.classify([t.item() for t in turns])]
    if len(pred) != len(turns):
        raise ValueError(f"classifier returned {len(pred)} labels for {len(turns)} check turns")
    scores = action_scores([t.action for t in turns], pred)
    styles: dict[str, list[bool]] = {}
    for t, p in zip(turns, pred):
        styles.setdefault(t.style, []).append(t.action is p)
    return {
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()},
        "answer_precision": round(_answer_precision(turns, pred), 4),
        "by_style": {s: round(sum(ok) / len(ok), 4) for s, ok in sorted(styles.items())},
        "errors": [t.id for t, p in zip(turns, pred) if t.action is not p],
    }


def _answer_precision(turns: Sequence[CheckTurn], pred: Sequence[Action]) -> float:
    called = [t.action for t, p in zip(turns, pred) if p is Action.ANSWER]
    return sum(a is Action.ANSWER for a in called) / len(called) if called else 0.0


def require_valid(classifier: ActionClassifier, cfg, *, role: str = "classifier",
                  path: str | Path = CHECK_SET) -> dict[str, Any] | None:
    """Score an LLM-backed classifier on the check set and stop when its Macro F1 is below
    `cfg.min_check_f1`. The offline rule is not checked here (its figures are in metrics/judge.json).
    Returns the report, or None for an offline backend."""
    if cfg.backend == "offline":
        return None
    report = check_classifier(classifier, load_check_set(path))
    name = f"{cfg.backend}" + (f" ({cfg.model})" if cfg.model else "")
    if report["macro_f1"] < cfg.min_check_f1:
        raise JudgeCheckError(
            f"roles.{role}: the {name} classifier scores Macro F1 {report['macro_f1']:.3f} "
            f"(accuracy {report['accuracy']:.3f}, clarify recall {report['clarify_recall']:.3f}) on the check set "
            f"{path}, below roles.{role}.min_check_f1={cfg.min_check_f1}; fix its prompt or model, or lower the "
            f"threshold knowingly. Misjudged turns: {report['errors'][:10]}")
    log.info("roles.%s: %s passes the check set (Macro F1 %.3f >= %.3f)", role, name, report["macro_f1"],
             cfg.min_check_f1)
    return report
