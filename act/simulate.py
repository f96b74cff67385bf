"""On-policy trajectory simulation and ACT's relabelling rule (the paper's Algorithm 2, lines 4-12).

`rollout` runs the policy on records: it samples a first response, classifies its action, and,
while the policy keeps asking clarifying questions (at most `max_clarify_turns` times), lets the
simulated user reply from its hidden intent and the policy go on. The final answer is scored by
the task heuristic against the branch the simulated user follows: in training the gold branch
(`act.pairs.gold_branch_index`, the one the kept Phase-1 winner and SFT use, as the reference's
user follows the one gold trajectory); in evaluation every branch of the record, each its own
trajectory from the same first turn. Used by the training loop (on every sampling round), by
`stages/simulate.py`, and by evaluation.

`relabel` turns a preference pair plus the policy's trajectory on its prompt into the pair the
DPO update trains on (the reference's decision table, `trainer/act_trainer.py:
ACTTrainer.concatenated_forward` with `metrics/*:conditon_checker`):

    sampled action != winning action         -> the sample becomes the losing side  (wrong_action)
    CLARIFY == gold, trajectory succeeds     -> the trajectory becomes the winner   (clarify_success)
    CLARIFY == gold, trajectory fails        -> the trajectory becomes the loser    (clarify_failure)
    ANSWER  == gold, answer succeeds         -> the answer becomes the winner       (answer_success)
    ANSWER  == gold, answer fails            -> the answer becomes the loser        (answer_failure)

`wrong_action_rule="released"` keeps the released code's exception: a direct answer on a CLARIFY
turn that scores >= tolerance wins (wrong_action_success) instead of losing; the default "paper"
makes every wrong action lose, as the paper's Algorithm 2 does.

Without trajectory simulation (the "w/o trajectory simulation" ablation) a clarifying question
with the winning action wins on its action alone (right_action); a direct answer is still scored
by the task heuristic (answer_success / answer_failure): the paper's ablation reward accounts for
actions and task heuristics.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Sequence

from act.actions import Action
from act.records import SYSTEM_TEMPLATE, Branch, Message, TurnRecord, with_system
from act.roles.base import ActionClassifier, ClassifyItem, Policy, SimulateItem, UserSimulator

Scorer = Callable[[TurnRecord, Branch, str], float]
"""Task heuristic: (record, branch the user followed, final answer) -> score in [0, 1]."""

OUTCOMES = ("wrong_action", "clarify_success", "clarify_failure", "answer_success", "answer_failure", "right_action",
            "wrong_action_success")
WRONG_ACTION_RULES = ("paper", "released")


def every_branch(record: TurnRecord) -> list[int]:
    """All branch indices of a record: evaluation plays an ambiguous record out on each of them."""
    if not record.branches:
        raise ValueError(f"record {record.id}: no branches to simulate a user from")
    return list(range(len(record.branches)))


@dataclass
class Trajectory:
    record_id: str
    branch_index: int
    first_response: str
    first_action: str
    """"clarify" | "answer": the classified action of the first sampled turn."""
    turns: list[Message]
    """Messages after the prompt: assistant, user, assistant, ... ending in an assistant turn."""
    final_answer: str | None
    """The policy's answer; None when it was still asking after `max_clarify_turns` questions."""
    score: float
    success: bool
    clarify_turns: int
    terminated: bool
    """True when the policy answered within the bound (the conversation ended on its own)."""
    truncated_turns: int = 0
    """Policy turns of this conversation cut at the policy's max_new_tokens (a policy that reports
    `last_truncated`); a cut answer rarely scores."""

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Conversation:
    """One (record, branch) conversation in flight."""

    record: int
    branch: int
    turns: list[Message] = field(default_factory=list)
    first: tuple[str, Action] | None = None
    final: str | None = None
    clarifies: int = 0
    truncated: int = 0

    def take(self, response: str, action: Action, cut: bool, max_clarify_turns: int, may_ask: bool) -> bool:
        """Append the policy's turn; True when the simulated user is to reply to it."""
        self.turns.append({"role": "assistant", "content": response})
        self.truncated += cut
        if self.first is None:
            self.first = (response, action)
        if action is Action.ANSWER:
            self.final = response
            return False
        self.clarifies += 1  # the last question past the bound is counted but never answered
        return may_ask and self.clarifies <= max_clarify_turns


def _generate(policy: Policy, chats: list) -> tuple[list[str], list[bool]]:
    responses = policy.generate(chats)
    if len(responses) != len(chats):
        raise ValueError(f"policy returned {len(responses)} responses for {len(chats)} chats")
    cut = getattr(policy, "last_truncated", None)
    cut = list(cut) if cut is not None and len(cut) == len(responses) else [False] * len(responses)
    return responses, cut


def rollout(
    records: Sequence[TurnRecord],
    policy: Policy,
    classifier: ActionClassifier,
    simulator: UserSimulator,
    scorer: Scorer,
    *,
    max_clarify_turns: int,
    tolerance: float,
    system_template: str = SYSTEM_TEMPLATE,
    branches: Sequence[Sequence[int]] | None = None,
    reply_to: Sequence[bool] | None = None,
) -> list[Trajectory]:
    """Simulate each record's conversation with the policy; all model calls are batched per turn.

    branches[i]: the branches record i is played out on (default: its gold branch,
    `act.pairs.gold_branch_index`). The first turn is sampled once per record and shared by its
    branches; after a clarifying question each branch's user replies and the conversations go on
    apart. One trajectory per (record, branch), records in order, then branches in the given order.
    reply_to[i]: whether a clarifying question on record i gets a user reply (default: yes). The
    training loop replies only where the pair's winning action is CLARIFY, as the reference's
    `Simulator.should_simulate`; elsewhere a question loses on its action anyway."""
    from act.pairs import gold_branch_index

    if max_clarify_turns < 0:
        raise ValueError(f"max_clarify_turns must be >= 0, got {max_clarify_turns}")
    records = list(records)
    if not records:
        return []
    if branches is None:
        branches = [[gold_branch_index(r)] for r in records]
    if len(branches) != len(records) or (reply_to is not None and len(reply_to) != len(records)):
        raise ValueError(f"branches / reply_to must hold one entry per record ({len(records)})")
    for r, bs in zip(records, branches):
        if not bs or any(not 0 <= b < len(r.branches) for b in bs):
            raise ValueError(f"record {r.id}: branches {list(bs)} out of range (it has {len(r.branches)})")
    may_ask = list(reply_to) if reply_to is not None else [True] * len(records)
    convs = [_Conversation(i, b) for i, bs in enumerate(branches) for b in bs]

    def classify(items, responses):
        return [Action.parse(a) for a in classifier.classify([
            ClassifyItem(records[c.record].dataset, list(records[c.record].messages) + c.turns, resp)
            for c, resp in zip(items, responses)])]

    # the first turn: one sample per record, shared by its branches
    heads = {}
    for c in convs:
        heads.setdefault(c.record, c)
    firsts = list(heads.values())
    responses, cut = _generate(policy, [with_system(records[c.record], system_template) for c in firsts])
    actions = dict(zip((c.record for c in firsts), zip(responses, classify(firsts, responses), cut)))
    active = [c for c in convs if c.take(*actions[c.record], max_clarify_turns, may_ask[c.record])]
    while active:
        replies = simulator.reply([
            SimulateItem(
                dataset=records[c.record].dataset,
                context=records[c.record].context,
                messages=list(records[c.record].messages) + c.turns,
                intent=records[c.record].branches[c.branch].intent,
                gold_reply=records[c.record].branches[c.branch].reply,
            )
            for c in active
        ])
        for c, reply in zip(active, replies):
            c.turns.append({"role": "user", "content": reply})
        responses, cut = _generate(policy, [with_system(records[c.record], system_template) + c.turns for c in active])
        acts = classify(active, responses)
        active = [c for c, resp, act, k in zip(active, responses, acts, cut)
                  if c.take(resp, act, k, max_clarify_turns, may_ask[c.record])]
    out = []
    for c in convs:
        rec = records[c.record]
        score = float(scorer(rec, rec.branches[c.branch], c.final)) if c.final is not None else 0.0
        resp, act = c.first
        out.append(Trajectory(
            record_id=rec.id,
            branch_index=c.branch,
            first_response=resp,
            first_action=act.value,
            turns=c.turns,
            final_answer=c.final,
            score=score,
            success=score >= tolerance,
            clarify_turns=c.clarifies,
            terminated=c.final is not None,
            truncated_turns=c.truncated,
        ))
    return out


def offline_action(dataset: str, trajectory: Trajectory) -> str:
    """The offline surface rule's action for the trajectory's first turn: set beside the configured
    classifier's `first_action` to find the relabels the two judges disagree on."""
    from act.roles.offline import surface_action

    return surface_action(dataset, trajectory.first_response).value


@dataclass(frozen=True)
class RelabelDecision:
    outcome: str
    """One of OUTCOMES."""
    chosen: list[Message]
    rejected: list[Message]
    chosen_action: str
    rejected_action: str
    replaced: str
    """Which side the policy's sample replaced: "chosen" | "rejected"."""
    score: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def relabel(pair: dict[str, Any], trajectory: Trajectory, *, simulate: bool = True,
            wrong_action_rule: Literal["paper", "released"] = "paper") -> RelabelDecision:
    """ACT's relabelling of one pair from the policy's trajectory on its prompt.

    `pair` is a row of the pair dataset (`chosen`, `rejected`, `chosen_action`, `rejected_action`,
    `gold_action`). Success is the trajectory's own (`rollout` decided it: score >= tolerance).
    A sample takes the right action when it takes the pair's winning action
    (`chosen_action`, as in the paper's Algorithm 2). That is the gold action, except under the
    "ACT w/ Random Actions" ablation (`pairs.random_actions`), where the winning action was drawn at
    random and so stays random in the relabelling too: no phase sees the true action.

    `simulate=False` (the "w/o trajectory simulation" ablation): only the first sampled turn is
    used; a clarifying question with the winning action wins on its action alone (right_action),
    a direct answer is judged by the task heuristic like any answer (the trajectory's score is the
    first answer's when the rollout ran with max_clarify_turns=0).

    `wrong_action_rule`: "paper" (every wrong action loses, Algorithm 2) or "released" (the released
    code's `conditon_checker` scores the final answer alone, so a direct answer on a CLARIFY turn
    that reaches the tolerance wins: wrong_action_success)."""
    if wrong_action_rule not in WRONG_ACTION_RULES:
        raise ValueError(f"wrong_action_rule must be one of {WRONG_ACTION_RULES}, got {wrong_action_rule!r}")
    gold = Action.parse(pair.get("chosen_action") or pair["gold_action"])
    sampled = Action.parse(trajectory.first_action)
    first_turn = [{"role": "assistant", "content": trajectory.first_response}]
    keep_chosen = (list(pair["chosen"]), str(pair["chosen_action"]))
    keep_rejected = (list(pair["rejected"]), str(pair["rejected_action"]))

    def decision(outcome: str, sample: list[Message], wins: bool, score: float | None) -> RelabelDecision:
        if wins:
            return RelabelDecision(outcome, sample, keep_rejected[0], sampled.value, keep_rejected[1], "chosen", score)
        return RelabelDecision(outcome, keep_chosen[0], sample, keep_chosen[1], sampled.value, "rejected", score)

    if sampled is not gold:
        if wrong_action_rule == "released" and sampled is Action.ANSWER and trajectory.success:
            return decision("wrong_action_success", first_turn, True, trajectory.score)
        return decision("wrong_action", first_turn, False, None)
    if sampled is Action.CLARIFY:
        if not simulate:
            return decision("right_action", first_turn, True, None)
        outcome = "clarify_success" if trajectory.success else "clarify_failure"
        return decision(outcome, list(trajectory.turns), trajectory.success, trajectory.score)
    outcome = "answer_success" if trajectory.success else "answer_failure"
    return decision(outcome, first_turn, trajectory.success, trajectory.score)
