"""HFPolicy sampling: merged LoRA gives the same greedy text, weights come back unchanged,
length-sorted batches keep the caller's order, and sampling leaves torch's global RNG alone."""

from __future__ import annotations

import pytest

from tests.chat_families import build_family

CHATS = [
    [{"role": "system", "content": "ctx"}, {"role": "user", "content": "How many singers are there?" * k}]
    for k in (3, 1, 5, 2, 4)
]


@pytest.fixture(scope="module")
def policy_parts(tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from act.model.loading import load_tokenizer

    path = build_family("chatml", tmp_path_factory.mktemp("chatml") / "m")
    tok = load_tokenizer(path)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(path),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    torch.manual_seed(1)
    with torch.no_grad():  # a non-zero adapter, so merging changes the weights
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model, tok


def test_merged_sampling_matches_unmerged_and_restores_weights(policy_parts):
    from act.model.loading import HFPolicy

    model, tok = policy_parts
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merged = HFPolicy(model, tok, max_new_tokens=6, batch_size=2, merge_lora=True).generate(CHATS)
    plain = HFPolicy(model, tok, max_new_tokens=6, batch_size=2, merge_lora=False).generate(CHATS)
    assert merged == plain
    after = model.state_dict()
    assert all((before[k] - after[k]).abs().max() < 1e-5 for k in before)


def test_order_is_kept_whatever_the_batching(policy_parts):
    from act.model.loading import HFPolicy

    model, tok = policy_parts
    one_by_one = [HFPolicy(model, tok, max_new_tokens=6, batch_size=1).generate([c])[0] for c in CHATS]
    assert HFPolicy(model, tok, max_new_tokens=6, batch_size=16).generate(CHATS) == one_by_one


def test_sampling_does_not_touch_the_global_generator(policy_parts):
    import torch

    from act.model.loading import HFPolicy

    model, tok = policy_parts
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    HFPolicy(model, tok, max_new_tokens=4, temperature=1.0, seed=7).generate(CHATS[:2])
    assert torch.equal(torch.rand(3), expected)


def test_turns_cut_at_max_new_tokens_are_flagged_and_counted(policy_parts):
    """A turn that is still running when max_new_tokens is reached counts as truncated (issue 19:
    `truncated_samples`); one that ended (EOS, then padding) does not, nor one ending on EOS exactly
    at the cap. A fake `generate` fixes the tokens, so the rule is what is tested."""
    import torch

    from act.model.loading import HFPolicy

    _, tok = policy_parts
    word = tok("singers", add_special_tokens=False)["input_ids"][0]
    eos, pad = tok.eos_token_id, tok.pad_token_id
    rows = {0: [word, word, word, word], 1: [word, eos, pad, pad], 2: [word, word, word, eos]}

    class FixedLM(torch.nn.Module):
        generation_config = None

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def generate(self, input_ids, attention_mask, max_new_tokens, **kw):
            assert max_new_tokens == 4
            new = torch.tensor([rows[i] for i in range(input_ids.shape[0])])
            return torch.cat([input_ids, new], 1)

    chats = [[{"role": "user", "content": "How many singers?"}]] * 3
    policy = HFPolicy(FixedLM(), tok, max_new_tokens=4, batch_size=3)
    out = policy.generate(chats)
    assert len(out) == 3 and policy.last_truncated == [True, False, False]
    assert (policy.samples, policy.truncated_samples) == (3, 1)
    policy.generate(chats[:1])
    assert policy.last_truncated == [True] and (policy.samples, policy.truncated_samples) == (4, 2)
