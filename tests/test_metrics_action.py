"""Action-level scores: hand-worked cases, the documented conventions, and scikit-learn parity."""

import random

import pytest

from act.actions import Action
from act.metrics.action import action_scores, confusion

C, A = Action.CLARIFY, Action.ANSWER


def test_hand_worked_example():
    """gold = C C C A A A A A, pred = C C A C A A A A.

    clarify: tp 2, predicted 3, support 3 -> P = 2/3, R = 2/3, F1 = 2/3.
    answer:  tp 4, predicted 5, support 5 -> P = 4/5, R = 4/5, F1 = 4/5.
    accuracy 6/8; macro = (2/3 + 4/5) / 2 = 11/15; weighted = (3*2/3 + 5*4/5) / 8 = 6/8.
    """
    gold = [C, C, C, A, A, A, A, A]
    pred = [C, C, A, C, A, A, A, A]
    s = action_scores(gold, pred)
    assert s["n"] == 8
    assert s["accuracy"] == pytest.approx(0.75)
    assert s["clarify_precision"] == pytest.approx(2 / 3)
    assert s["clarify_recall"] == pytest.approx(2 / 3)
    assert s["clarify_f1"] == pytest.approx(2 / 3)
    assert s["macro_f1"] == pytest.approx(11 / 15)
    assert s["weighted_f1"] == pytest.approx(0.75)
    assert s["informedness"] == pytest.approx(2 / 3 + 4 / 5 - 1)
    assert s["majority_macro_f1"] == pytest.approx((2 * 5 / 8 / (5 / 8 + 1)) / 2)


def test_informedness_is_zero_for_every_input_blind_policy():
    """Always answering, always asking, or alternating regardless of the turn: J = 0, while their
    Macro F1 ranges from 0.36 to 0.5. Knowing *when* to ask is what moves J."""
    gold = [C] * 26 + [A] * 34
    blind = {"always answer": [A] * 60, "always ask": [C] * 60, "alternate": [C, A] * 30}
    scores = {name: action_scores(gold, pred) for name, pred in blind.items()}
    assert all(s["informedness"] == pytest.approx(0.0, abs=0.05) for s in scores.values())
    assert scores["always answer"]["macro_f1"] == pytest.approx(scores["always answer"]["majority_macro_f1"])
    assert scores["always answer"]["macro_f1"] < 0.37 < 0.49 < scores["alternate"]["macro_f1"]
    perfect = action_scores(gold, gold)
    assert perfect["informedness"] == 1.0
    assert action_scores(gold, [A if g == C else C for g in gold])["informedness"] == -1.0
    assert action_scores([A, A], [C, A])["informedness"] == 0.0  # one gold action: undefined -> 0


def test_strings_accepted_and_confusion_counts():
    table = confusion(["clarify", "answer", "answer"], ["answer", "answer", "CLARIFY"])
    assert table == {"clarify": {"clarify": 0, "answer": 1}, "answer": {"clarify": 1, "answer": 1}}


def test_empty_input_scores_zero_with_n_zero():
    s = action_scores([], [])
    assert s["n"] == 0 and s["macro_f1"] == 0.0 and s["accuracy"] == 0.0


def test_class_absent_from_both_counts_zero_in_macro():
    """All-answer gold, all-answer prediction: answer F1 = 1, clarify F1 = 0 (0/0 -> 0), macro 0.5."""
    s = action_scores([A, A], [A, A])
    assert s["accuracy"] == 1.0 and s["macro_f1"] == 0.5 and s["weighted_f1"] == 1.0
    assert s["clarify_f1"] == 0.0


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 gold actions but 1"):
        action_scores([A, C], [A])


def test_matches_sklearn_on_random_label_vectors():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, precision_score, recall_score

    rng = random.Random(1234)
    labels = ["clarify", "answer"]
    edges = [(["clarify"], ["clarify"]), (["answer"], ["clarify"]), (["answer"] * 3, ["answer"] * 3),
             (["clarify"] * 3, ["answer"] * 3), (["clarify", "answer"], ["answer", "clarify"])]
    cases = edges + [None] * 40  # every degenerate shape, then random vectors (sklearn costs ~25 ms a case)
    for trial, case in enumerate(cases):
        if case is None:
            n = rng.randint(1, 30)
            p_clarify = rng.choice([0.0, 0.1, 0.5, 0.9, 1.0])
            case = ([rng.random() < p_clarify and "clarify" or "answer" for _ in range(n)],
                    [rng.random() < rng.random() and "clarify" or "answer" for _ in range(n)])
        gold, pred = case
        s = action_scores(gold, pred)
        kw = dict(labels=labels, zero_division=0)
        assert s["accuracy"] == pytest.approx(accuracy_score(gold, pred)), trial
        assert s["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro", **kw)), trial
        assert s["weighted_f1"] == pytest.approx(f1_score(gold, pred, average="weighted", **kw)), trial
        assert s["clarify_precision"] == pytest.approx(precision_score(gold, pred, pos_label="clarify", **{**kw, "labels": None})), trial
        assert s["clarify_recall"] == pytest.approx(recall_score(gold, pred, pos_label="clarify", **{**kw, "labels": None})), trial
        assert s["clarify_f1"] == pytest.approx(f1_score(gold, pred, average=None, **kw)[0]), trial
        if len(set(gold)) == 2:
            assert s["informedness"] == pytest.approx(balanced_accuracy_score(gold, pred, adjusted=True)), trial
