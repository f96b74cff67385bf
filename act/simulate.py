"""On-policy trajectory simulation and ACT's relabelling rule (the paper's Algorithm 2, lines 4-12).

`rollout` runs the policy on records: it samples a first response, classifies its action, and,
while the policy keeps asking clarifying questions (at most `max_clarify_turns` times), lets the
simulated user reply from its hidden intent and the policy go on. The final answer is scored by
the task heuristic against the branch the simulated user follows. Used by the training loop (on
every sampling round), by `stages/simulate.py`, and by evaluation.

`relabel` turns a preference pair plus the policy's trajectory on its prompt into the pair the
DPO update trains on:

    sampled action != winning action         -> the sample becomes the losing side  (wrong_action)
    CLARIFY == gold, trajectory succeeds     -> the trajectory becomes the winner   (clarify_success)
    CLARIFY == gold, trajectory fails        -> the trajectory becomes the loser    (clarify_failure)
    ANSWER  == gold, answer succeeds         -> the answer becomes the winner       (answer_success)
    ANSWER  == gold, answer fails            -> the answer becomes the loser        (answer_failure)

Without trajectory simulation (ablation) a sample with the gold action wins on its action alone
(right_action).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

from act.actions import Action
from act.records import SYSTEM_TEMPLATE, Branch, Message, TurnRecord, with_system
from act.roles.base import ActionClassifier, ClassifyItem, Policy, SimulateItem, UserSimulator

Scorer = Callable[[TurnRecord, Branch, str], float]
"""Task heuristic: (record, branch the user followed, final answer) -> score in [0, 1]."""

OUTCOMES = ("wrong_action", "clarify_success", "clarify_failure", "answer_success", "answer_failure", "right_action")


def branch_index(record: TurnRecord) -> int:
    """The branch the simulated user follows: fixed by the record id, so every policy evaluated or
    trained on a record meets the same user (and re-runs are reproducible)."""
    if not record.branches:
        raise ValueError(f"record {record.id}: no branches to simulate a user from")
    digest = hashlib.sha256(record.id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % len(record.branches)


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

    def to_row(self) -> dict[str, Any]:
        return asdict(self)


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
) -> list[Trajectory]:
    """Simulate each record's conversation with the policy; all model calls are batched per turn."""
    if max_clarify_turns < 0:
        raise ValueError(f"max_clarify_turns must be >= 0, got {max_clarify_turns}")
    records = list(records)
    if not records:
        return []
    branches = [branch_index(r) for r in records]
    turns: list[list[Message]] = [[] for _ in records]
    first: list[tuple[str, Action] | None] = [None] * len(records)
    final: list[str | None] = [None] * len(records)
    clarifies = [0] * len(records)
    active = list(range(len(records)))
    while active:
        chats = [with_system(records[i], system_template) + turns[i] for i in active]
        responses = policy.generate(chats)
        if len(responses) != len(active):
            raise ValueError(f"policy returned {len(responses)} responses for {len(active)} chats")
        actions = classifier.classify([
            ClassifyItem(records[i].dataset, list(records[i].messages) + turns[i], resp)
            for i, resp in zip(active, responses)
        ])
        asking = []
        for i, resp, act in zip(active, responses, actions):
            act = Action.parse(act)
            turns[i].append({"role": "assistant", "content": resp})
            if first[i] is None:
                first[i] = (resp, act)
            if act is Action.ANSWER:
                final[i] = resp
            elif clarifies[i] < max_clarify_turns:
                clarifies[i] += 1
                asking.append(i)
            else:
                clarifies[i] += 1  # a last question the user never gets to answer
        if asking:
            replies = simulator.reply([
                SimulateItem(
                    dataset=records[i].dataset,
                    context=records[i].context,
                    messages=list(records[i].messages) + turns[i],
                    intent=records[i].branches[branches[i]].intent,
                    gold_reply=records[i].branches[branches[i]].reply,
                )
                for i in asking
            ])
            for i, reply in zip(asking, replies):
                turns[i].append({"role": "user", "content": reply})
        active = asking
    out = []
    for i, rec in enumerate(records):
        branch = rec.branches[branches[i]]
        score = float(scorer(rec, branch, final[i])) if final[i] is not None else 0.0
        resp, act = first[i]
        out.append(Trajectory(
            record_id=rec.id,
            branch_index=branches[i],
            first_response=resp,
            first_action=act.value,
            turns=turns[i],
            final_answer=final[i],
            score=score,
            success=score >= tolerance,
            clarify_turns=clarifies[i],
            terminated=final[i] is not None,
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


def relabel(pair: dict[str, Any], trajectory: Trajectory, *, simulate: bool = True) -> RelabelDecision:
    """ACT's relabelling of one pair from the policy's trajectory on its prompt.

    `pair` is a row of the pair dataset (`chosen`, `rejected`, `chosen_action`, `rejected_action`,
    `gold_action`). Success is the trajectory's own (`rollout` decided it: score >= tolerance).
    A sample takes the right action when it takes the pair's winning action
    (`chosen_action`, as in the paper's Algorithm 2). That is the gold action, except under the
    "ACT w/ Random Actions" ablation (`pairs.random_actions`), where the winning action was drawn at
    random and so stays random in the relabelling too: no phase sees the true action. With
    `simulate=False` only the first sampled turn is used and judged by its action alone (the
    "w/o trajectory simulation" ablation)."""
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
        return decision("wrong_action", first_turn, False, None)
    if not simulate:
        return decision("right_action", first_turn, True, None)
    if sampled is Action.CLARIFY:
        outcome = "clarify_success" if trajectory.success else "clarify_failure"
        return decision(outcome, list(trajectory.turns), trajectory.success, trajectory.score)
    outcome = "answer_success" if trajectory.success else "answer_failure"
    return decision(outcome, first_turn, trajectory.success, trajectory.score)
