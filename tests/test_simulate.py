"""act.simulate: rollouts with scripted roles, and every relabel branch."""

from __future__ import annotations

import pytest

from act.actions import Action
from act.records import Branch, TurnRecord
from act.pairs import build_pairs, gold_branch, gold_branch_index
from act.params import RolesParams
from act.simulate import OUTCOMES, Trajectory, every_branch, relabel, rollout


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


def test_direct_answer_batch_follows_the_gold_branch():
    branches = [Branch("a", "ra", "A", ["A"]), Branch("b", "rb", "B", ["B"]), Branch("c", "rc", "C", ["C"])]
    recs = [record(f"id{i}", "answer", branches=branches) for i in range(12)]
    ts = rollout(recs, ScriptedPolicy({0: "A"}), SurfaceClassifier(), EchoUser(), exact,
                 max_clarify_turns=1, tolerance=0.9)
    assert [t.branch_index for t in ts] == [0] * 12  # an ANSWER turn's gold branch is branch 0, whatever the id
    assert all(t.success for t in ts)
    assert all(t.turns == [{"role": "assistant", "content": "A"}] for t in ts)
    assert Trajectory(**ts[0].to_row()) == ts[0]


MULTI = [Branch("How many singers are older than 30?", None, "SELECT 0", ["SELECT 0"]),
         Branch("How many singers are older than 40?", "Older than 40.", "SELECT 40", ["SELECT 40"]),
         Branch("How many singers are older than 50?", "Older than 50.", "SELECT 50", ["SELECT 50"])]


def test_training_rollout_follows_the_branch_of_the_kept_winner_and_sft():
    """Issue 19: the rollout's user follows the branch the Phase-1 winner's continuation and SFT's
    gold conversation use (the first with a reply: branch 1 here), for every record id."""
    from act.training.sft import gold_conversation

    recs = [record(f"ambigsql/{i}", "clarify", branches=MULTI) for i in range(8)]
    pairs, _ = build_pairs(recs, build_pairs_rejecter())
    user = EchoUser()
    ts = rollout(recs, ScriptedPolicy({0: "Which age?", 1: "SELECT 40"}), SurfaceClassifier(), user, exact,
                 max_clarify_turns=1, tolerance=0.9)
    for rec, pair, t in zip(recs, pairs, ts):
        assert gold_branch_index(rec) == 1 and gold_branch(rec) is rec.branches[1]
        winner_reply = pair["chosen"][1]["content"]                 # the kept winner: question, reply, answer
        sft_reply = gold_conversation(rec)[-2]["content"]            # SFT's gold continuation
        assert t.branch_index == 1 and t.turns[1]["content"] == winner_reply == sft_reply == "Older than 40."
        assert pair["chosen"][2]["content"] == rec.branches[t.branch_index].target
        assert t.success  # the answer SFT taught for this prompt is the one the rollout scores against
    assert {it.intent for it in user.items} == {MULTI[1].intent}


def build_pairs_rejecter():
    from act.roles import build_role

    return build_role("rejecter", RolesParams())


class ReplyPolicy:
    """Asks first; then answers with the SQL for the age the user's last reply names."""

    def __init__(self):
        self.calls = []

    def generate(self, chats):
        self.calls.append(len(chats))
        out = []
        for chat in chats:
            if chat[-1]["role"] == "user" and chat[-1]["content"].startswith("Older than"):
                out.append("SELECT " + chat[-1]["content"].split()[-1].rstrip("."))
            else:
                out.append("Which age?")
        return out


def test_every_branch_shares_the_first_turn_and_goes_on_apart():
    """Evaluation plays an ambiguous record out on each branch: one first sample, then each
    branch's user replies and the conversation goes on apart, scored against its own branch."""
    rec = record("e1", "clarify", branches=MULTI)
    user, policy = EchoUser(), ReplyPolicy()
    ts = rollout([rec], policy, SurfaceClassifier(), user, exact, max_clarify_turns=1, tolerance=0.9,
                 branches=[every_branch(rec)])
    assert [t.branch_index for t in ts] == [0, 1, 2]
    assert policy.calls == [1, 3]  # the first turn is sampled once for the three branches
    assert {t.first_response for t in ts} == {"Which age?"}
    assert [t.turns[1]["content"] for t in ts] == ["How many singers are older than 30?", "Older than 40.", "Older than 50."]
    assert [t.final_answer for t in ts] == [None, "SELECT 40", "SELECT 50"]
    assert [t.success for t in ts] == [False, True, True]  # branch 0's user states the intent: the policy asks again, cut


def test_reply_to_false_leaves_a_question_unanswered():
    (t,) = rollout([record("q1", "answer")], ScriptedPolicy({0: "Which one?"}), SurfaceClassifier(), EchoUser(), exact,
                   max_clarify_turns=1, tolerance=0.9, reply_to=[False])
    assert t.turns == [{"role": "assistant", "content": "Which one?"}] and not t.terminated and t.clarify_turns == 1


def test_truncated_turns_come_from_the_policy():
    class Cut(ScriptedPolicy):
        def generate(self, chats):
            out = super().generate(chats)
            self.last_truncated = [True] * len(out)
            return out

    (t,) = rollout([record("c1", "clarify")], Cut({0: "Which age range?", 1: GOLD_SQL}), SurfaceClassifier(),
                   EchoUser(), exact, max_clarify_turns=1, tolerance=0.9)
    assert t.truncated_turns == 2


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


def test_without_simulation_a_wrong_answer_loses():
    """Issue 19: "ACT w/o trajectory simulation" still scores a direct answer with the task
    heuristic: "SELECT 1" scoring 0 on an answer turn loses; a clarifying question with the
    winning action wins on its action alone."""
    (t,) = rollout([record("ns", "answer")], ScriptedPolicy({0: "SELECT 1"}), SurfaceClassifier(), EchoUser(), exact,
                   max_clarify_turns=0, tolerance=0.9)
    assert t.score == 0.0
    d = relabel(PAIR_ANSWER, t, simulate=False)
    assert d.outcome == "answer_failure" and d.replaced == "rejected"
    assert d.chosen == PAIR_ANSWER["chosen"] and d.rejected == [{"role": "assistant", "content": "SELECT 1"}]
    (good,) = rollout([record("ns", "answer")], ScriptedPolicy({0: GOLD_SQL}), SurfaceClassifier(), EchoUser(), exact,
                      max_clarify_turns=0, tolerance=0.9)
    assert relabel(PAIR_ANSWER, good, simulate=False).outcome == "answer_success"


def _one_turn(text, action, score):
    return Trajectory("r", 0, text, action, [{"role": "assistant", "content": text}], text if action == "answer" else None,
                      score, score >= 0.9, int(action == "clarify"), action == "answer")


def _asked(final, score):
    turns = [{"role": "assistant", "content": "Age?"}, {"role": "user", "content": "Older than 30."},
             {"role": "assistant", "content": final}]
    return Trajectory("r", 0, "Age?", "clarify", turns, final, score, score >= 0.9, 1, True)


REFERENCE_TABLE = [
    # (pair, trajectory, outcome under the paper's rule, policy side wins, outcome under the released rule)
    (PAIR_CLARIFY, _asked(GOLD_SQL, 1.0), "clarify_success", True, "clarify_success"),
    (PAIR_CLARIFY, _asked("SELECT 2", 0.0), "clarify_failure", False, "clarify_failure"),
    (PAIR_ANSWER, _one_turn(GOLD_SQL, "answer", 1.0), "answer_success", True, "answer_success"),
    (PAIR_ANSWER, _one_turn("SELECT 3", "answer", 0.2), "answer_failure", False, "answer_failure"),
    (PAIR_CLARIFY, _one_turn(GOLD_SQL, "answer", 1.0), "wrong_action", False, "wrong_action_success"),
    (PAIR_ANSWER, _one_turn("Which singers?", "clarify", 0.0), "wrong_action", False, "wrong_action"),
]


@pytest.mark.parametrize("pair,t,paper,wins,released", REFERENCE_TABLE)
def test_reference_decision_table(pair, t, paper, wins, released):
    """The reference's relabelling, replayed case by case on hand-made trajectories.

    google-research `learning_to_clarify/act/src/act/trainer/act_trainer.py:ACTTrainer.concatenated_forward`
    samples a trajectory with `simulation/simulator.py:Simulator.generate_trajectory`, which
    continues the conversation only when the sample asks and the pair's winning action
    (`chosen_policy`) is to ask (`should_simulate`); `metrics/pacific_metrics.py:PacificMetrics.
    conditon_checker` then tests the final answer alone (DROP F1 < 0.9): failing, the trajectory
    becomes `rejected` and the kept `chosen` stays; passing, it becomes `chosen` against the kept
    `rejected`. The six cases (gold action x sampled action x success):
      1 gold CLARIFY, asks, final answer succeeds   -> trajectory wins          (clarify_success)
      2 gold CLARIFY, asks, final answer fails      -> trajectory loses         (clarify_failure)
      3 gold ANSWER, answers, succeeds              -> answer wins              (answer_success)
      4 gold ANSWER, answers, fails                 -> answer loses             (answer_failure)
      5 gold CLARIFY, answers directly              -> loses (paper, Algorithm 2); the released code
                                                       scores it and keeps it when >= 0.9
      6 gold ANSWER, asks                           -> loses: no user reply, the question itself
                                                       is scored (never 0.9 against an answer)
    The paper's rule is the default (`simulate.wrong_action_rule: paper`); "released" restores case 5."""
    for rule, outcome in (("paper", paper), ("released", released)):
        d = relabel(pair, t, wrong_action_rule=rule)
        assert d.outcome == outcome and d.outcome in OUTCOMES
        policy_wins = wins or outcome == "wrong_action_success"
        assert d.replaced == ("chosen" if policy_wins else "rejected")
        sample = t.turns if outcome.startswith("clarify") else [{"role": "assistant", "content": t.first_response}]
        if policy_wins:
            assert d.chosen == sample and d.rejected == pair["rejected"]
        else:
            assert d.rejected == sample and d.chosen == pair["chosen"]


def test_unknown_wrong_action_rule_is_refused():
    with pytest.raises(ValueError, match="wrong_action_rule"):
        relabel(PAIR_ANSWER, _one_turn(GOLD_SQL, "answer", 1.0), wrong_action_rule="sometimes")
