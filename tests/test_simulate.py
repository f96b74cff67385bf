"""act.simulate: rollouts with scripted roles, and every relabel branch."""

from __future__ import annotations

import pytest

from act.actions import Action
from act.records import Branch, TurnRecord
from act.simulate import OUTCOMES, Trajectory, branch_index, relabel, rollout


def record(rid: str, action: str, *, branches=None) -> TurnRecord:
    branches = branches or [
        Branch(intent="How many singers are older than 30?", reply="Older than 30.",
               target="SELECT count(*) FROM singer WHERE age > 30", answers=["SELECT count(*) FROM singer WHERE age > 30"]),
    ]
    return TurnRecord(
        id=rid, dataset="ambigsql", conversation_id=rid, split="train", context="singer(name, age)",
        messages=[{"role": "user", "content": "How many singers?"}],
        gold_response="Which age range?" if action == "clarify" else "SELECT count(*) FROM singer",
        gold_action=action, branches=branches, meta={"db_id": "singer"},
    )


class ScriptedPolicy:
    """Answers from a per-record script keyed by the first user turn and the number of turns so far."""

    def __init__(self, script: dict[int, str]):
        self.script, self.calls = script, []

    def generate(self, chats):
        self.calls.append(len(chats))
        return [self.script[sum(m["role"] == "assistant" for m in chat)] for chat in chats]


class SurfaceClassifier:
    def classify(self, items):
        return [Action.CLARIFY if it.response.rstrip().endswith("?") else Action.ANSWER for it in items]


class EchoUser:
    def __init__(self):
        self.items = []

    def reply(self, items):
        self.items.extend(items)
        return [it.gold_reply or it.intent for it in items]


def exact(rec, branch, pred):
    return 1.0 if pred.strip() in branch.answers else 0.0


GOLD_SQL = "SELECT count(*) FROM singer WHERE age > 30"


def test_clarify_then_answer_is_scored_on_final_answer():
    policy = ScriptedPolicy({0: "Which age range?", 1: GOLD_SQL})
    user = EchoUser()
    (t,) = rollout([record("r1", "clarify")], policy, SurfaceClassifier(), user, exact,
                   max_clarify_turns=1, tolerance=0.9)
    assert t.first_action == "clarify" and t.clarify_turns == 1 and t.terminated
    assert [m["role"] for m in t.turns] == ["assistant", "user", "assistant"]
    assert t.turns[1]["content"] == "Older than 30."
    assert t.final_answer == GOLD_SQL and t.score == 1.0 and t.success
    # the user saw the conversation including the policy's question, and its hidden intent
    assert user.items[0].messages[-1] == {"role": "assistant", "content": "Which age range?"}
    assert user.items[0].intent.startswith("How many singers are older")
    assert policy.calls == [1, 1]


def test_policy_that_never_answers_stops_at_the_bound():
    policy = ScriptedPolicy({0: "Which one?", 1: "Really which?", 2: "And?", 3: "Hm?"})
    (t,) = rollout([record("r2", "clarify")], policy, SurfaceClassifier(), EchoUser(), exact,
                   max_clarify_turns=2, tolerance=0.9)
    assert t.final_answer is None and not t.terminated and t.score == 0.0 and not t.success
    assert [m["role"] for m in t.turns] == ["assistant", "user", "assistant", "user", "assistant"]
    assert t.clarify_turns == 3


def test_direct_answer_batch_and_branch_is_deterministic():
    branches = [Branch("a", "ra", "A", ["A"]), Branch("b", "rb", "B", ["B"]), Branch("c", "rc", "C", ["C"])]
    recs = [record(f"id{i}", "answer", branches=branches) for i in range(12)]
    ts = rollout(recs, ScriptedPolicy({0: "B"}), SurfaceClassifier(), EchoUser(), exact,
                 max_clarify_turns=1, tolerance=0.9)
    assert [t.branch_index for t in ts] == [branch_index(r) for r in recs]
    assert len({t.branch_index for t in ts}) > 1  # ids spread over branches
    assert all(t.success == (t.branch_index == 1) for t in ts)
    assert all(t.turns == [{"role": "assistant", "content": "B"}] for t in ts)
    assert Trajectory(**ts[0].to_row()) == ts[0]


PAIR_CLARIFY = {
    "gold_action": "clarify", "chosen_action": "clarify", "rejected_action": "answer",
    "chosen": [{"role": "assistant", "content": "Which age range?"}, {"role": "user", "content": "Older than 30."},
               {"role": "assistant", "content": GOLD_SQL}],
    "rejected": [{"role": "assistant", "content": "SELECT count(*) FROM singer"}],
}
PAIR_ANSWER = {
    "gold_action": "answer", "chosen_action": "answer", "rejected_action": "clarify",
    "chosen": [{"role": "assistant", "content": GOLD_SQL}],
    "rejected": [{"role": "assistant", "content": "Which singers?"}],
}


def traj(first: str, action: str, turns, score: float) -> Trajectory:
    return Trajectory("r", 0, first, action, turns, turns[-1]["content"], score, score >= 0.9, 0, True)


@pytest.mark.parametrize("pair,t,outcome,replaced", [
    (PAIR_CLARIFY, traj("SELECT 1", "answer", [{"role": "assistant", "content": "SELECT 1"}], 0.0),
     "wrong_action", "rejected"),
    (PAIR_ANSWER, traj("Which?", "clarify", [{"role": "assistant", "content": "Which?"}], 0.0),
     "wrong_action", "rejected"),
    (PAIR_CLARIFY, traj("Age?", "clarify", [{"role": "assistant", "content": "Age?"}, {"role": "user", "content": "30"},
                                            {"role": "assistant", "content": GOLD_SQL}], 1.0),
     "clarify_success", "chosen"),
    (PAIR_CLARIFY, traj("Age?", "clarify", [{"role": "assistant", "content": "Age?"}, {"role": "user", "content": "30"},
                                            {"role": "assistant", "content": "SELECT 2"}], 0.0),
     "clarify_failure", "rejected"),
    (PAIR_ANSWER, traj(GOLD_SQL, "answer", [{"role": "assistant", "content": GOLD_SQL}], 1.0),
     "answer_success", "chosen"),
    (PAIR_ANSWER, traj("SELECT 3", "answer", [{"role": "assistant", "content": "SELECT 3"}], 0.2),
     "answer_failure", "rejected"),
])
def test_relabel_branches(pair, t, outcome, replaced):
    d = relabel(pair, t)
    assert d.outcome == outcome and d.outcome in OUTCOMES and d.replaced == replaced
    sample = t.turns if outcome.startswith("clarify") else [{"role": "assistant", "content": t.first_response}]
    if replaced == "chosen":
        assert d.chosen == sample and d.rejected == pair["rejected"]
        assert d.chosen_action == t.first_action and d.rejected_action == pair["rejected_action"]
    else:
        assert d.rejected == sample and d.chosen == pair["chosen"]
        assert d.rejected_action == t.first_action and d.chosen_action == pair["chosen_action"]


def test_relabel_without_simulation_judges_by_action():
    t = traj("Age?", "clarify", [{"role": "assistant", "content": "Age?"}, {"role": "user", "content": "30"},
                                 {"role": "assistant", "content": "SELECT 2"}], 0.0)
    d = relabel(PAIR_CLARIFY, t, simulate=False)
    assert d.outcome == "right_action" and d.chosen == [{"role": "assistant", "content": "Age?"}]


@pytest.mark.parametrize("score,outcome", [(0.9, "answer_success"), (0.89, "answer_failure")])
def test_success_boundary_is_score_at_least_tolerance(score, outcome):
    """A score exactly at the tolerance succeeds and the answer wins; just below it loses."""
    (t,) = rollout([record("rb", "answer")], ScriptedPolicy({0: "SELECT 9"}), SurfaceClassifier(), EchoUser(),
                   lambda rec, branch, pred: score, max_clarify_turns=1, tolerance=0.9)
    assert t.score == score and t.success is (score >= 0.9)
    d = relabel(PAIR_ANSWER, t)
    assert d.outcome == outcome
    assert (d.chosen if outcome == "answer_success" else d.rejected) == [{"role": "assistant", "content": "SELECT 9"}]


def test_random_actions_ablation_relabels_against_the_drawn_winning_action():
    """Under pairs.random_actions a pair whose drawn winner is CLARIFY on an ANSWER turn: a clarifying
    sample takes the pair's (random) winning action, an answer loses, whatever the gold action."""
    flipped = {**PAIR_ANSWER, "chosen_action": "clarify", "rejected_action": "answer",
               "chosen": PAIR_ANSWER["rejected"], "rejected": PAIR_ANSWER["chosen"]}
    answer = traj(GOLD_SQL, "answer", [{"role": "assistant", "content": GOLD_SQL}], 1.0)
    assert relabel(flipped, answer).outcome == "wrong_action"
    assert relabel(PAIR_ANSWER, answer).outcome == "answer_success"
    ask = traj("Age?", "clarify", [{"role": "assistant", "content": "Age?"}, {"role": "user", "content": "30"},
                                   {"role": "assistant", "content": GOLD_SQL}], 1.0)
    d = relabel(flipped, ask)
    assert d.outcome == "clarify_success" and d.replaced == "chosen" and d.rejected == PAIR_ANSWER["chosen"]
