"""CoQA token F1 (Abg-CoQA), hand-worked."""

import pytest

from act.metrics.coqa import best_em, best_f1, f1, normalize_answer, turn_em, turn_f1


def test_normalization():
    assert normalize_answer("The dense brush-wood.") == "dense brushwood"
    assert normalize_answer("  A Rope!! ") == "rope"


def test_partial_overlap_counts_multiplicity():
    """pred "red red car" vs gold "red car park": common = min(2,1) red + 1 car = 2.
    P = 2/3, R = 2/3 -> F1 = 2/3."""
    assert f1("red red car", "red car park") == pytest.approx(2 / 3)


def test_best_over_gold_alternatives():
    """"ropes" vs ["Rope.", "ropes"]: 0 against "rope" (different token), 1 against "ropes"."""
    assert best_f1("ropes", ["Rope.", "ropes"]) == 1.0
    assert best_em("Rope", ["Rope.", "ropes"]) == 1.0


def test_empty_sides():
    """Empty after normalization: 1 only when both are empty (official CoQA convention)."""
    assert f1("", "rope") == 0.0
    assert f1("the", "a") == 1.0
    assert best_f1("rope", []) == 0.0


# Parity with the official CoQA script's turn score (`compute_turn_score` in evaluate-v1.0.py),
# worked by hand: with n > 1 gold answers, leave each out, take the max over the rest, average.
def test_leave_one_out_matches_the_official_turn_score():
    golds = ["a red ball", "red ball", "blue ball", "the ball"]
    # normalized: "red ball", "red ball", "blue ball", "ball"; pred "red ball":
    # F1 vs each = 1, 1, 0.5, 2/3.  Leaving out #0 -> max(1, .5, 2/3) = 1; #1 -> 1; #2 -> 1; #3 -> 1
    assert turn_f1("red ball", golds, "leave_one_out") == pytest.approx(1.0)
    # pred "blue ball": F1 = .5, .5, 1, 2/3. Leaving out #2 -> max(.5, .5, 2/3) = 2/3; others -> 1
    assert turn_f1("blue ball", golds, "leave_one_out") == pytest.approx((1 + 1 + 2 / 3 + 1) / 4)
    assert turn_f1("blue ball", golds, "max") == 1.0
    # EM the same way: "blue ball" matches only #2 -> leaving #2 out gives 0 -> 3/4
    assert turn_em("blue ball", golds, "leave_one_out") == pytest.approx(0.75)


def test_leave_one_out_with_one_or_two_golds():
    assert turn_f1("rope", ["rope"], "leave_one_out") == 1.0  # one answer: its own score
    # two answers: each is scored against the other alone -> mean of F1(pred, g1) and F1(pred, g0)
    assert turn_f1("rope", ["rope", "a long rope"], "leave_one_out") == pytest.approx((f1("rope", "long rope") + 1.0) / 2)
    assert turn_f1("rope", [], "leave_one_out") == 0.0
    with pytest.raises(ValueError, match="averaging"):
        turn_f1("rope", ["rope"], "mean")


def test_task_score_offers_both_averagings():
    from act.metrics.task import score_detail
    from act.records import Branch

    branch = Branch("What did they find?", None, "a red ball", ["a red ball", "red ball", "blue ball", "the ball"])
    best = score_detail("abg_coqa", "blue ball", branch, {})
    official = score_detail("abg_coqa", "blue ball", branch, {}, coqa_averaging="leave_one_out")
    assert best.score == 1.0 and best.em == 1.0
    assert official.score == pytest.approx((1 + 1 + 2 / 3 + 1) / 4) and official.em == pytest.approx(0.75)
