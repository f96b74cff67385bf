"""The methods an ablation sweep compares: the paper's baselines and ACT's ablations, each a set
of `dvc exp run -S` switches over the default pipeline. Light on purpose (no Prefect, no DVC):
the CLI reads the names for its `--methods` choices.

    from flows.methods import METHODS
    METHODS["act_random_actions"].overrides   # {"pairs.random_actions": True}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Method:
    overrides: dict[str, Any] = field(default_factory=dict)
    """`dvc exp run -S` switches that make this method from the default pipeline."""
    policy: str = "act"
    """Whose figures to read from the metrics file (evaluate reports base / sft / act)."""


METHODS: dict[str, Method] = {
    "sft": Method(policy="sft"),
    "dpo_offpolicy": Method({"train.on_policy": False}),
    "act": Method(),
    "act_random_actions": Method({"pairs.random_actions": True}),
    "act_no_simulation": Method({"train.simulate_trajectories": False}),
    "act_from_base": Method({"train.init": "base"}),
}
