"""CoQA token F1 and EM, the Abg-CoQA metric, following the official CoQA evaluation script.

Normalization: lower-case, remove punctuation, drop the articles a/an/the, collapse whitespace.
F1 counts shared tokens with multiplicity (bag of words). When either side normalizes to no
tokens, F1 is 1 if both are empty and 0 otherwise.

Several gold answers, two averagings (`turn_f1` / `turn_em`, `averaging=`):
- "max" (the default here): the best-matching gold answer counts. Abg-CoQA branches carry one
  answer plus optional alternates, not four independent human answers, so this is what the
  project reports.
- "leave_one_out": the official CoQA script's turn score. With n > 1 gold answers, each one in
  turn is left out and the maximum over the other n - 1 is taken; the turn scores the mean of
  those n maxima. With one gold answer it is that answer's score. It is never above "max".
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in str(text).lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    pred, ref = tokens(prediction), tokens(gold)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_f1(prediction: str, golds: Sequence[str]) -> float:
    """F1 against the best-matching gold alternative; 0 when there is no gold."""
    return max((f1(prediction, g) for g in golds), default=0.0)


def best_em(prediction: str, golds: Sequence[str]) -> float:
    return max((exact_match(prediction, g) for g in golds), default=0.0)


AVERAGINGS = ("max", "leave_one_out")


def _turn(metric, prediction: str, golds: Sequence[str], averaging: str) -> float:
    if averaging not in AVERAGINGS:
        raise ValueError(f"averaging must be one of {AVERAGINGS}, got {averaging!r}")
    golds = list(golds)
    if not golds:
        return 0.0
    if averaging == "max" or len(golds) == 1:
        return max(metric(prediction, g) for g in golds)
    return sum(max(metric(prediction, g) for g in golds[:i] + golds[i + 1:]) for i in range(len(golds))) / len(golds)


def turn_f1(prediction: str, golds: Sequence[str], averaging: str = "max") -> float:
    """F1 of one turn against its gold answers: "max" or the official "leave_one_out" (module doc)."""
    return _turn(f1, prediction, golds, averaging)


def turn_em(prediction: str, golds: Sequence[str], averaging: str = "max") -> float:
    """Exact match of one turn, with the same averaging as `turn_f1`."""
    return _turn(exact_match, prediction, golds, averaging)
