"""Cheaper DPO and SFT forwards with the same losses: compact LM head, shared prompt, cached reference.

TRL 1.16 scores tokens with a fused LM head (`trl.trainer.utils.add_fused_lm_head`): the model is
called as `model(..., labels=labels, fused_lm_head=True)` and returns per-token log-probs. Three
kinds of work it does are wasted on this project's batches, which are mostly prompt:

1. **LM head over every position.** Off CUDA/XPU, TRL projects *every* position through the
   49k-word vocabulary and zeroes the prompt's afterwards ("every position is scored", to keep tile
   shapes fixed on compiled backends). `install_fast_forward` replaces the forward so that only the
   positions whose next token is a label (completion tokens) go through the head, on every device.
2. **The prompt run twice.** A DPO batch is `[chosen_1..B, rejected_1..B]`; row i and row i+B share
   their prompt. Inside `paired_batches()`, the forward runs each prompt once (batch B), tiles its
   KV cache, and runs only the two completions on top of it (batch 2B) -- in the policy pass
   (gradients flow through the cache into the prompt) and the reference pass alike. Rows whose
   halves do not share a prefix, gradient checkpointing (no cache) and unusual heads fall back to
   the plain path.
3. **Reference forwards repeated.** The reference is frozen, so its log-prob of a (prompt, side)
   sequence never changes. `FastDPOMixin` keeps them by token ids and runs the reference only on
   rows it has not seen (a second epoch; a side ACT kept; a sample greedy decoding repeats).

Same losses: every token's log-prob is computed from the same hidden state with the same kernel
(`ChunkedLogProbFunction`); only float summation order inside the attention differs (padding
widths), which moves DPO and SFT losses by ~1e-6 (tests/test_fast_forward.py, benchmarks/act_step.py).

`FastDPOMixin` goes before `DPOTrainer` in a trainer's bases, `FastSFTMixin` before `SFTTrainer`;
each takes a `fast=FastPaths(...)` keyword (params `train.fast_*` / `sft.fast_*`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import types
from dataclasses import dataclass
from typing import Any

_PAIRED = contextvars.ContextVar("act_paired_batches", default=False)


@dataclass(frozen=True)
class FastPaths:
    """Which wasted work to skip (each switch off = TRL's own path)."""

    compact_head: bool = True
    """LM head only at positions whose next token is scored."""
    shared_prefix: bool = False
    """DPO: run the prompt once for both sides (policy and reference passes)."""
    ref_cache: bool = False
    """DPO: reuse reference log-probs of sequences seen before."""


def fast_paths(section) -> FastPaths:
    """The switches of a params section (train or sft); keys it lacks are off."""
    return FastPaths(compact_head=getattr(section, "fast_lm_head", False),
                     shared_prefix=getattr(section, "fast_shared_prefix", False),
                     ref_cache=getattr(section, "fast_ref_cache", False))


@contextlib.contextmanager
def paired_batches(enabled: bool = True):
    """Within this block, a fused-head forward may treat its batch as DPO's [chosen..., rejected...]."""
    token = _PAIRED.set(enabled)
    try:
        yield
    finally:
        _PAIRED.reset(token)


def _unsupported_head(config) -> bool:
    """Heads whose logits TRL rescales or softcaps: left to TRL's forward."""
    text = config.get_text_config()
    return any(getattr(text, k, None) is not None for k in
               ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"))


def install_fast_forward(model, outputs: tuple[str, ...], fast: FastPaths) -> bool:
    """Replace the fused-head forward TRL put on `model` (the causal LM under any PEFT wrapper) by
    one that skips the wasted work of `fast`. False (nothing changed) where TRL's forward must stay."""
    import torch
    from trl.kernels import ChunkedLogProbFunction
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE, FusedCausalLMOutput

    trl_forward = model.forward
    if not fast.compact_head or _unsupported_head(model.config) or "forward" not in vars(model):
        return False

    def head(self, hidden, targets):
        lm_head = self.get_output_embeddings()
        hidden = hidden.to(lm_head.weight.device)
        return ChunkedLogProbFunction.apply(hidden, lm_head.weight, lm_head.bias, targets.to(lm_head.weight.device),
                                            1.0, _CHUNKED_LOGPROB_CHUNK_SIZE, None, 1.0, outputs)

    def result(per_token, mask, num_items_in_batch):
        fields = [None if x is None else x.new_zeros(mask.shape).masked_scatter(mask, x) for x in per_token]
        log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1 = fields
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
        return FusedCausalLMOutput(loss=loss, log_probs=log_probs, entropy=entropy, log_sum_sq_probs=log_sum_sq_probs,
                                   mean_logits=mean_logits, is_top1=is_top1, label_mask=mask)

    @functools.wraps(type(model).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        plain = (not fused_lm_head or args or shift_labels is not None or labels is None
                 or kwargs.get("output_router_logits") or kwargs.get("input_ids") is None
                 or kwargs.get("inputs_embeds") is not None)
        if plain:
            return trl_forward(*args, fused_lm_head=fused_lm_head, labels=labels, shift_labels=shift_labels,
                               num_items_in_batch=num_items_in_batch, **kwargs)
        kwargs["use_cache"] = False
        mask = labels[:, 1:] != -100
        rows, cols = mask.nonzero(as_tuple=True)
        hidden = None
        if fast.shared_prefix and _PAIRED.get() and not (self.training and _checkpointing(self)):
            hidden = _shared_prefix_hidden(self, kwargs, labels, rows, cols)
        self._act_fast_calls["shared_prefix" if hidden is not None else "compact"] += 1
        if hidden is None:
            hidden = self.base_model(**kwargs).last_hidden_state[rows, cols]
        per_token = head(self, hidden, labels[:, 1:][rows, cols])
        return result(per_token, mask.to(per_token[0].device), num_items_in_batch)

    model.forward = types.MethodType(forward, model)
    model._act_trl_forward = trl_forward
    model._act_fast_calls = {"shared_prefix": 0, "compact": 0}
    """How many fused-head forwards took each path (a check that the fast paths run)."""
    del torch
    return True


def _checkpointing(model) -> bool:
    """Gradient (activation) checkpointing is on: HF then drops the KV cache in training."""
    flag = getattr(type(model), "is_activation_checkpointing", None)
    return bool(model.is_activation_checkpointing if flag is not None else model.is_gradient_checkpointing)


def _prompt_lengths(input_ids, attention_mask, labels):
    """Per pair i (rows i and i+B): how many leading tokens both rows share before their first
    scored token, or None when the batch is not made of such pairs."""
    import torch

    n = input_ids.size(0)
    if n % 2 or n == 0 or attention_mask is None:
        return None
    lengths = attention_mask.sum(1)
    if not torch.equal(attention_mask, (torch.arange(attention_mask.size(1), device=lengths.device)
                                        < lengths[:, None]).to(attention_mask.dtype)):
        return None  # not right-padded
    scored = labels != -100
    if not bool(scored.any(1).all()):
        return None
    first = scored.float().argmax(1)
    b = n // 2
    prompt = torch.minimum(first[:b], first[b:])
    if bool((prompt < 1).any()):
        return None
    same = (input_ids[:b] == input_ids[b:]) | (torch.arange(input_ids.size(1), device=prompt.device)[None] >= prompt[:, None])
    if not bool(same.all()):
        return None
    return prompt, lengths


def _shared_prefix_hidden(model, kwargs: dict, labels, rows, cols):
    """Hidden states at the scored positions (rows, cols of the shifted labels), with each pair's
    prompt run once. None when the batch is not paired (the caller runs the plain forward)."""
    import torch
    from transformers import DynamicCache

    input_ids, attention_mask = kwargs["input_ids"], kwargs.get("attention_mask")
    extra = {k: v for k, v in kwargs.items()
             if k not in ("input_ids", "attention_mask", "use_cache", "position_ids") and v is not None and v is not False}
    found = _prompt_lengths(input_ids, attention_mask, labels)
    if found is None or extra:
        return None
    prompt, lengths = found
    b, device = input_ids.size(0) // 2, input_ids.device
    pm = int(prompt.max())
    span = torch.arange(pm, device=device)
    prompt_mask = (span[None] < prompt[:, None]).long()
    # right-padded prompts: no query row is fully masked, and the middle padding is masked in the cache
    prompt_out = model.base_model(input_ids=input_ids[:b, :pm] * prompt_mask, attention_mask=prompt_mask,
                                  position_ids=span[None].expand(b, pm), use_cache=True)
    cache = prompt_out.cache if getattr(prompt_out, "cache", None) is not None else prompt_out.past_key_values
    if cache is None:
        return None
    both = torch.cat([prompt, prompt])
    suffix_len = lengths - both
    sm = int(suffix_len.max())
    s_span = torch.arange(sm, device=device)
    suffix_mask = (s_span[None] < suffix_len[:, None]).long()
    gather = (both[:, None] + s_span[None]).clamp(max=input_ids.size(1) - 1)
    suffix_ids = torch.gather(input_ids, 1, gather) * suffix_mask
    layers = [(torch.cat([layer.keys, layer.keys]), torch.cat([layer.values, layer.values])) for layer in cache.layers]
    tiled = DynamicCache(ddp_cache_data=layers)
    suffix_out = model.base_model(input_ids=suffix_ids, attention_mask=torch.cat([prompt_mask.repeat(2, 1), suffix_mask], 1),
                                  position_ids=both[:, None] + s_span[None], cache=tiled, use_cache=True)
    last_prompt = prompt_out.last_hidden_state[torch.arange(b, device=device), prompt - 1]
    # position t of row k: t = prompt_k - 1 -> the prompt's last hidden state; t >= prompt_k -> suffix t - prompt_k
    ext = torch.cat([last_prompt.repeat(2, 1)[:, None], suffix_out.last_hidden_state], 1)
    return ext[rows, cols - both[rows] + 1]


class FastDPOMixin:
    """DPOTrainer hooks for the fast paths: put it before `DPOTrainer` in a trainer's bases."""

    def __init__(self, *args, fast: FastPaths | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        from accelerate.utils import is_peft_model

        self.fast = fast or FastPaths()
        outputs = ("log_probs", "entropy", "mean_logits", "is_top1") + (("log_sum_sq_probs",) if self.use_weighting else ())
        target = self.model.get_base_model() if is_peft_model(self.model) else self.model
        self.fast_installed = install_fast_forward(target, outputs, self.fast)
        self._ref_logps: dict[bytes, float] = {}
        self.ref_rows = {"computed": 0, "cached": 0}

    def _ref_cache_usable(self) -> bool:
        return (self.fast.ref_cache and not self.precompute_ref_logps and self.ld_alpha is None
                and getattr(self.args, "disable_dropout", True) and getattr(self.args, "sync_ref_model", False) is False)

    @staticmethod
    def _row_keys(inputs) -> list[bytes]:
        ids, att, comp = inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
        keys = []
        for k in range(ids.size(0)):
            n = int(att[k].sum())
            h = hashlib.blake2b(ids[k, :n].cpu().numpy().tobytes(), digest_size=20)
            h.update(comp[k, :n].cpu().numpy().astype("int8").tobytes())
            keys.append(h.digest())
        return keys

    def _cached_ref_logps(self, inputs) -> dict[str, Any]:
        """ref_chosen_logps / ref_rejected_logps for the batch: cached rows looked up, the rest run."""
        import torch

        keys = self._row_keys(inputs)
        missing = [k for k, key in enumerate(keys) if key not in self._ref_logps]
        if missing:
            if len(missing) == len(keys):
                with paired_batches(self.fast.shared_prefix):
                    chosen, rejected = self.compute_ref_log_probs(self.model, inputs)
                values = torch.cat([chosen, rejected])
            else:
                idx = torch.tensor(missing, device=inputs["input_ids"].device)
                sub = {k: inputs[k][idx] for k in ("input_ids", "attention_mask", "completion_mask")}
                values = torch.cat(self.compute_ref_log_probs(self.model, sub))
            for k, v in zip(missing, values.detach().float().cpu().tolist()):
                self._ref_logps[keys[k]] = v
        self.ref_rows["computed"] += len(missing)
        self.ref_rows["cached"] += len(keys) - len(missing)
        device = inputs["input_ids"].device
        logps = torch.tensor([self._ref_logps[key] for key in keys], device=device)
        b = len(keys) // 2
        return {"ref_chosen_logps": logps[:b], "ref_rejected_logps": logps[b:]}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        with paired_batches(self.fast.shared_prefix):
            if not self._ref_cache_usable():
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            inputs = {**inputs, **self._cached_ref_logps(inputs)}
            self.precompute_ref_logps = True  # TRL then reads the reference log-probs from the batch
            try:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            finally:
                self.precompute_ref_logps = False

    def compute_ref_log_probs(self, model, inputs):
        with paired_batches(self.fast.shared_prefix and _PAIRED.get()):
            return super().compute_ref_log_probs(model, inputs)


class FastSFTMixin:
    """SFTTrainer hook for the compact LM head: put it before `SFTTrainer` in a trainer's bases."""

    def __init__(self, *args, fast: FastPaths | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        from accelerate.utils import is_peft_model

        self.fast = fast or FastPaths()
        target = self.model.get_base_model() if is_peft_model(self.model) else self.model
        self.fast_installed = install_fast_forward(target, ("log_probs", "entropy", "is_top1"), self.fast)
