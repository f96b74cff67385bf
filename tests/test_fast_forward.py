"""The fast DPO/SFT paths (act.training.fast_forward) give TRL's numbers, on a tiny Llama.

Per token: the compact LM head gives TRL's fused head's log-probs, entropy, mean logits and top-1
flags exactly, and the shared-prefix forward gives them to ~1e-6, gradients included. Per run:
DPO (two epochs, so the reference cache is used) and SFT train to the same per-step losses with the
fast paths on and off.
"""

from __future__ import annotations

import pytest

OUTPUTS = ("log_probs", "entropy", "mean_logits", "is_top1")


def _peft_model(base_dir, *, fast=None, checkpointing=False):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from act.training.fast_forward import install_fast_forward

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # non-zero LoRA B, so the adapter changes the prompt's keys and values (their gradients must flow)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0,
                                             init_lora_weights=False))
    add_fused_lm_head(model.get_base_model(), outputs=OUTPUTS)
    if fast is not None:
        assert install_fast_forward(model.get_base_model(), OUTPUTS, fast)
    model.train()
    return model


def _batch(shared_prompts: bool = True):
    """A DPO batch as TRL collates it: prompts and completions of different lengths, right-padded."""
    import torch
    from trl.trainer.dpo_trainer import DataCollatorForPreference

    g = torch.Generator().manual_seed(1)

    def ids(n):
        return torch.randint(5, 300, (n,), generator=g).tolist()

    examples = [{"prompt_ids": ids(p), "chosen_ids": ids(c), "rejected_ids": ids(r)}
                for p, c, r in [(20, 5, 9), (7, 12, 3), (30, 4, 4)]]
    batch = DataCollatorForPreference(pad_token_id=0)(examples)
    if not shared_prompts:  # the rejected rows' prompts no longer match their chosen rows'
        batch["input_ids"][3:, 0] = batch["input_ids"][3:, 0] % 200 + 1
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    return batch, labels


def _run(model, batch, labels, paired: bool):
    from act.training.fast_forward import paired_batches

    with paired_batches(paired):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
                    fused_lm_head=True)
    (out.log_probs.sum() + out.entropy.sum()).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return out, grads


def _assert_same(a, b, atol):
    import torch

    (out_a, grads_a), (out_b, grads_b) = a, b
    for field in ("log_probs", "entropy", "mean_logits"):
        assert torch.allclose(getattr(out_a, field), getattr(out_b, field), atol=atol, rtol=0), field
    assert torch.equal(out_a.is_top1, out_b.is_top1) and torch.equal(out_a.label_mask, out_b.label_mask)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for k in grads_a:
        scale = float(grads_a[k].abs().max()) + 1e-12
        assert float((grads_a[k] - grads_b[k]).abs().max()) <= atol * scale * 10, k


def test_compact_head_is_trls_fused_head_exactly(tiny_base):
    from act.training.fast_forward import FastPaths

    batch, labels = _batch()
    trl = _run(_peft_model(tiny_base), batch, labels, paired=False)
    fast = _run(_peft_model(tiny_base, fast=FastPaths()), batch, labels, paired=False)
    _assert_same(trl, fast, atol=0.0)


@pytest.mark.parametrize("shared_prompts", [True, False])
def test_shared_prefix_forward_matches_trl_to_1e5(tiny_base, shared_prompts):
    """The prompt run once (KV cache tiled for both sides) gives TRL's per-token figures and
    gradients; a batch whose halves do not share their prompts falls back to the plain path."""
    from act.training.fast_forward import FastPaths, _prompt_lengths

    batch, labels = _batch(shared_prompts)
    assert (_prompt_lengths(batch["input_ids"], batch["attention_mask"], labels) is not None) == shared_prompts
    trl = _run(_peft_model(tiny_base), batch, labels, paired=True)
    fast = _run(_peft_model(tiny_base, fast=FastPaths(shared_prefix=True)), batch, labels, paired=True)
    _assert_same(trl, fast, atol=1e-5)


def test_shared_prefix_falls_back_under_gradient_checkpointing(tiny_base):
    from act.training.fast_forward import FastPaths

    batch, labels = _batch()
    trl = _run(_peft_model(tiny_base, checkpointing=True), batch, labels, paired=True)
    fast = _run(_peft_model(tiny_base, fast=FastPaths(shared_prefix=True), checkpointing=True), batch, labels, paired=True)
    _assert_same(trl, fast, atol=1e-5)


def _records(n: int = 8):
    from act.records import Branch, TurnRecord

    sql = "SELECT count(*) FROM singer WHERE Birth_Year > 1950"
    return [TurnRecord(
        id=f"t{i}", dataset="ambigsql", conversation_id=f"c{i}", split="train",
        context="singer(Singer_ID, Name, Birth_Year, Net_Worth_Millions, Citizenship)",
        messages=[{"role": "user", "content": f"How many singers are there {i}?"}],
        gold_response="Born after which year?" if i % 2 else sql, gold_action="clarify" if i % 2 else "answer",
        branches=[Branch("How many singers were born after 1950?", "After 1950." if i % 2 else None, sql, [sql])],
        meta={"db_id": "singer"}) for i in range(n)]


def test_dpo_and_sft_losses_equal_with_fast_paths(tiny_base, tmp_path, monkeypatch):
    """Plain DPO over two epochs (the second one reads every reference log-prob from the cache)
    and SFT: the same per-step losses with every fast path on as with TRL's forward."""
    import dataclasses

    from act.pairs import build_pairs
    from act.params import RolesParams, SftParams, TrainParams
    from act.roles import build_role
    from act.training.dpo import train_dpo
    from act.training.sft import train_sft

    records = _records()
    pairs, _ = build_pairs(records, build_role("rejecter", RolesParams()))
    on = TrainParams(batch_size=4, learning_rate=1e-2, epochs=2, probe_every=0, save_steps=0)
    off = dataclasses.replace(on, fast_lm_head=False, fast_shared_prefix=False, fast_ref_cache=False)
    from trl import DPOTrainer

    calls = []
    parent = DPOTrainer.train

    def train(self, *a, **k):  # which forward path the trainer's passes took
        out = parent(self, *a, **k)
        calls.append(dict(getattr(self.model.get_base_model(), "_act_fast_calls", {})))
        return out

    monkeypatch.setattr(DPOTrainer, "train", train)
    runs = {name: train_dpo(tiny_base, None, pairs, records, tmp_path / name, params, seed=0)
            for name, params in (("off", off), ("on", on))}
    losses = {name: [h["loss"] for h in r.log_history if "loss" in h] for name, r in runs.items()}
    assert len(losses["on"]) == 4 and len(set(round(x, 4) for x in losses["on"])) > 1  # the policy moved
    assert losses["on"] == pytest.approx(losses["off"], abs=1e-5)
    assert runs["on"].metrics["reference_rows_cached"] == 16  # epoch 2: all 8 pairs x 2 sides from the cache
    assert runs["on"].metrics["reference_rows_computed"] == 16
    assert runs["off"].metrics["reference_rows_cached"] == 0
    # on: 4 policy passes + 2 reference passes (epoch 1) all took the shared prompt; off: TRL's forward
    assert calls == [{}, {"shared_prefix": 6, "compact": 0}]

    sft_on = SftParams(epochs=2, batch_size=4, learning_rate=5e-3, save_steps=0)
    sft = {name: train_sft(tiny_base, records, tmp_path / f"sft_{name}", params, seed=0, return_history=True)[1]
           for name, params in (("off", dataclasses.replace(sft_on, fast_lm_head=False)), ("on", sft_on))}
    sft_losses = {name: [h["loss"] for h in h_ if "loss" in h] for name, h_ in sft.items()}
    assert len(sft_losses["on"]) == 4
    assert sft_losses["on"] == pytest.approx(sft_losses["off"], abs=1e-5)
