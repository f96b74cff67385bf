"""Action-level scores: how well predicted actions (clarify / answer) match the gold actions.

Conventions (identical to scikit-learn's `*_score(..., labels=["clarify", "answer"],
zero_division=0)`, which the tests check on random label vectors):

- Macro F1 always averages over BOTH classes, clarify and answer, even when a class occurs in
  neither the gold nor the predicted labels; such a class has F1 0. An eval set with no CLARIFY
  turn therefore caps Macro F1 at 0.5: report the per-class figures and `n` alongside.
- A precision, recall or F1 whose denominator is 0 is 0.
- Weighted F1 weights each class by its gold support.
- Empty input: every score is 0.0 and `n` is 0 (a figure without data must not look perfect).

Two figures say whether a policy knows *when* to clarify rather than how often it does:
- `informedness` (Youden's J = clarify recall + answer recall - 1, scikit-learn's adjusted
  balanced accuracy): 0 for every policy that ignores its input (always answer, always ask, or a
  coin of any bias), 1 for a perfect one, negative when worse than chance. It is 0.0 when the
  gold labels hold one action only (undefined there).
- `majority_macro_f1`: the Macro F1 of always taking the gold majority action. A coin that asks at
  the gold rate scores Macro F1 ~0.5 in expectation whatever the rate, so Macro F1 below ~0.5 does
  not mean a policy knows less than another above it: compare `informedness`.
"""

from __future__ import annotations

from typing import Sequence

from act.actions import ACTIONS, Action


def _div(num: float, den: float) -> float:
    return num / den if den else 0.0


def _f1(precision: float, recall: float) -> float:
    return _div(2 * precision * recall, precision + recall)


def confusion(gold: Sequence[Action | str], pred: Sequence[Action | str]) -> dict[str, dict[str, int]]:
    """Counts as {gold action: {predicted action: count}} over both actions."""
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold actions but {len(pred)} predicted actions")
    table = {g.value: {p.value: 0 for p in ACTIONS} for g in ACTIONS}
    for g, p in zip(gold, pred):
        table[Action.parse(g).value][Action.parse(p).value] += 1
    return table


def action_scores(gold: Sequence[Action | str], pred: Sequence[Action | str]) -> dict[str, float | int]:
    """accuracy, macro_f1, weighted_f1, clarify_precision, clarify_recall, clarify_f1, informedness,
    majority_macro_f1, n."""
    table = confusion(gold, pred)
    n = len(gold)
    per_class = {}
    for a in ACTIONS:
        tp = table[a.value][a.value]
        predicted = sum(table[g.value][a.value] for g in ACTIONS)
        support = sum(table[a.value].values())
        p, r = _div(tp, predicted), _div(tp, support)
        per_class[a] = (p, r, _f1(p, r), support)
    correct = sum(table[a.value][a.value] for a in ACTIONS)
    clarify, answer = per_class[Action.CLARIFY], per_class[Action.ANSWER]
    both = clarify[3] > 0 and answer[3] > 0
    majority_f1 = _f1(_div(max(clarify[3], answer[3]), n), 1.0) / len(ACTIONS) if n else 0.0
    return {
        "accuracy": _div(correct, n),
        "macro_f1": sum(c[2] for c in per_class.values()) / len(ACTIONS),
        "weighted_f1": _div(sum(c[2] * c[3] for c in per_class.values()), n),
        "clarify_precision": clarify[0],
        "clarify_recall": clarify[1],
        "clarify_f1": clarify[2],
        "informedness": clarify[1] + answer[1] - 1.0 if both else 0.0,
        "majority_macro_f1": majority_f1,
        "n": n,
    }
