"""What ACT's on-policy sampling needs besides the model, without importing TRL or torch.

`OnPolicySampler` holds the roles, the scorer and the simulation settings of a sampling round;
`TimedPolicy` separates sampling time from simulation time; `act_state_name` names the sampler's
state file in a checkpoint. The trainer itself (`act.training.act_trainer.ActDPOTrainer`) imports
TRL, so stages import this module to build a sampler and that one only when they train.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from act.records import SYSTEM_TEMPLATE
from act.roles.base import ActionClassifier, UserSimulator
from act.simulate import Scorer

EXTRA_COLUMNS = ("row_index", "chosen_loss_mask", "rejected_loss_mask")
"""Columns the trainer keeps past TRL's `remove_unused_columns`: the raw pair's row, the loss masks."""
ACT_STATE = "act_state.json"


def act_state_name(process_index: int = 0, world_size: int = 1) -> str:
    """The sampler state's file in a checkpoint, one per process of a multi-process launch."""
    return f"act_state_{process_index}.json" if world_size > 1 else ACT_STATE


@dataclass
class OnPolicySampler:
    """What a sampling round needs besides the model: roles, scorer and the simulation settings."""

    classifier: ActionClassifier
    simulator: UserSimulator
    scorer: Scorer
    tolerance: float
    max_clarify_turns: int = 1
    simulate_trajectories: bool = True
    max_new_tokens: int = 256
    temperature: float = 0.0
    """0 = greedy, as the reference code samples (train.sample_temperature)."""
    top_p: float = 1.0
    top_k: int = 0
    max_prompt_tokens: int | None = None
    """Prompt budget (simulate.max_prompt_tokens): the policy samples the `act.chat.fit_prompt` prompt."""
    batch_size: int = 16
    """Chats per generate call (simulate.generation_batch_size)."""
    backend: str = "hf"
    """train.sampler: hf (transformers generate) | vllm (TRL's vLLM integration, `act.model.vllm_policy`)."""
    vllm: Any = None
    """train.vllm (VllmParams) for the vllm backend."""
    engine: Any = None
    """vllm backend: a ready generation engine; None = built from `vllm` on the first round."""
    system_template: str = SYSTEM_TEMPLATE
    judge_backend: str = "offline"
    """The classifier's backend. When it is a model, each round also asks the offline surface rule
    and logs every sample the two judge differently (`judge/disagreements`)."""
    wrong_action_rule: str = "paper"
    """simulate.wrong_action_rule: paper (a wrong action always loses) | released (the released
    code keeps a direct answer on a CLARIFY turn that scores >= tolerance)."""


class TimedPolicy:
    """Wraps a Policy to separate the time spent sampling from the time spent simulating."""

    def __init__(self, policy):
        self.policy, self.seconds, self.calls = policy, 0.0, 0

    @property
    def last_truncated(self):
        """The wrapped policy's cut-at-the-cap flags of its last call (`act.simulate.rollout` reads them)."""
        return getattr(self.policy, "last_truncated", None)

    def generate(self, chats):
        t = time.perf_counter()
        try:
            return self.policy.generate(chats)
        finally:
            self.seconds += time.perf_counter() - t
            self.calls += 1
