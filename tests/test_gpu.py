"""The `gpu` tier: the policy's sampling on CUDA (skipped automatically without it): inputs follow
the model to the GPU, greedy decoding is reproducible there, and the prompt cap holds."""

from __future__ import annotations

import pytest

CHATS = [[{"role": "user", "content": "How many singers?"}],
         [{"role": "system", "content": "ctx"}, {"role": "user", "content": "Which year do you mean?"}]]


@pytest.mark.gpu
def test_greedy_policy_samples_on_cuda(tiny_base):
    import torch

    from act.model.loading import HFPolicy, load_model

    model, tok = load_model(tiny_base)
    model = model.to("cuda", dtype=torch.float32).eval()
    assert next(model.parameters()).is_cuda
    policy = HFPolicy(model, tok, max_new_tokens=6, temperature=0.0)
    first = policy.generate(CHATS)
    assert len(first) == 2 and all(isinstance(t, str) for t in first) and policy.generated_tokens > 0
    assert policy.generate(CHATS) == first
    policy.max_prompt_tokens = 8
    assert len(policy.generate(CHATS)) == 2
