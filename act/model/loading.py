"""Loading the policy: base model (embedded dir or hub pointer), optional LoRA adapter, 4-bit.

`models/base` is either a full HF directory (the embedded model) or a pointer file naming a hub
model or local path; `resolve_base` turns either into what `from_pretrained` takes. An adapter
directory without `adapter_config.json` (SFT switched off) means "the base model itself".

The functions that turn config into library objects return None for "off", like TRL's
`get_quantization_config` / `get_peft_config`, so the CPU path and the QLoRA path share code.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from act.roles.base import Message

if TYPE_CHECKING:
    from act.params import LoraParams

log = logging.getLogger(__name__)

POINTER = "act_base.json"
"""File in `models/base` saying where the weights are: {"source": "embedded"|"pretrained", "model": ...}."""
ADAPTER_MARKER = "act_adapter.json"
"""File in an adapter dir; {"adapter": false} marks "no adapter: use the base model"."""


def resolve_base(base_dir: str | Path) -> str:
    """The `from_pretrained` argument for a `models/base` directory (itself, or the hub name it names)."""
    p = Path(base_dir)
    pointer = p / POINTER
    if not pointer.exists():
        if (p / "config.json").exists():
            return str(p)
        raise FileNotFoundError(f"{p}: neither {POINTER} nor config.json (did the base stage run?)")
    info = json.loads(pointer.read_text(encoding="utf-8"))
    return str(p) if info.get("source") == "embedded" else str(info["model"])


def has_adapter(adapter_dir: str | Path | None) -> bool:
    return adapter_dir is not None and (Path(adapter_dir) / "adapter_config.json").exists()


def get_quantization_config(quantization: str):
    """BitsAndBytesConfig for "nf4" (4-bit QLoRA; works on CPU too), None for "none"."""
    if quantization == "none":
        return None
    if quantization != "nf4":
        raise ValueError(f"unknown quantization {quantization!r}; expected 'none' or 'nf4'")
    import torch
    from transformers import BitsAndBytesConfig

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32,
    )


def get_peft_config(lora: "LoraParams | None"):
    """LoraConfig for a causal LM from the `lora` params; None when there is no adapter to add."""
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules), task_type="CAUSAL_LM", bias="none",
    )


def load_tokenizer(base_dir: str | Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_base(base_dir))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(base_dir: str | Path, adapter_dir: str | Path | None = None, *, quantization: str = "none",
               trainable: bool = False):
    """(model, tokenizer): the base model, 4-bit when asked, with the adapter applied if there is one.

    `trainable`: the adapter's weights get gradients, and a 4-bit base is prepared for k-bit training."""
    import torch
    from transformers import AutoModelForCausalLM

    from act.io import check_safetensors

    check_safetensors(base_dir)  # a truncated weights file fails naming its path
    if adapter_dir:
        check_safetensors(adapter_dir)
    tok = load_tokenizer(base_dir)
    qconfig = get_quantization_config(quantization)
    kwargs = {"quantization_config": qconfig} if qconfig is not None else {}
    if not torch.cuda.is_available():
        kwargs["dtype"] = torch.float32  # CPU: no bf16 kernels worth using
    model = AutoModelForCausalLM.from_pretrained(resolve_base(base_dir), **kwargs)
    if qconfig is not None and trainable:
        from peft import prepare_model_for_kbit_training

        # before the adapter goes on: this freezes every parameter it sees
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if has_adapter(adapter_dir):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
    return model, tok


class HFPolicy:
    """A transformers causal LM as a `Policy`: one assistant turn per chat, batched, left-padded.

    Works on a model that is being trained: it switches to eval mode for sampling and restores the
    previous mode afterwards."""

    def __init__(self, model, tokenizer, *, max_new_tokens: int = 64, temperature: float = 0.0, seed: int = 0,
                 batch_size: int = 16, max_prompt_tokens: int | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self.batch_size, self.max_prompt_tokens = batch_size, max_prompt_tokens
        self.calls = 0
        self.generated_tokens = 0

    def generate(self, chats: Sequence[Sequence[Message]]) -> list[str]:
        import torch

        out: list[str] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(chats), self.batch_size):
                out.extend(self._generate_batch(chats[start:start + self.batch_size], torch))
        finally:
            if was_training:
                self.model.train()
        return out

    def _generate_batch(self, chats, torch) -> list[str]:
        tok = self.tokenizer
        side = tok.padding_side
        tok.padding_side = "left"
        try:
            enc = tok.apply_chat_template([list(c) for c in chats], add_generation_prompt=True, tokenize=True,
                                          padding=True, return_tensors="pt", return_dict=True)
        finally:
            tok.padding_side = side
        input_ids, attention = enc["input_ids"], enc["attention_mask"]
        if self.max_prompt_tokens and input_ids.shape[1] > self.max_prompt_tokens:
            # keep the end: the latest turns and the generation prompt matter most for the next turn
            input_ids = input_ids[:, -self.max_prompt_tokens:]
            attention = attention[:, -self.max_prompt_tokens:]
        device = next(self.model.parameters()).device
        sample = self.temperature > 0
        torch.manual_seed(self.seed + self.calls)
        self.calls += 1
        with torch.no_grad():
            gen = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device),
                max_new_tokens=self.max_new_tokens, do_sample=sample,
                temperature=self.temperature if sample else None, top_k=0 if sample else None,
                top_p=1.0 if sample else None,
                pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, use_cache=True,
            )
        new = gen[:, input_ids.shape[1]:]
        self.generated_tokens += int((new != tok.pad_token_id).sum())
        return [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]


def load_policy(base_dir: str, adapter_dir: str | None = None, *, quantization: str = "none",
                max_new_tokens: int = 64, temperature: float = 0.0, seed: int = 0) -> HFPolicy:
    """The policy in `base_dir` (+ the LoRA adapter in `adapter_dir`, if it holds one), ready to sample."""
    model, tok = load_model(base_dir, adapter_dir, quantization=quantization)
    model.eval()
    return HFPolicy(model, tok, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
