"""Loading the policy: base model (embedded dir or hub pointer), optional LoRA adapter, 4-bit.

`models/base` is either a full HF directory (the embedded model) or a pointer file naming a hub
model or local path; `resolve_base` turns either into what `from_pretrained` takes. An adapter
directory without `adapter_config.json` (SFT switched off) means "the base model itself".

The functions that turn config into library objects return None for "off", like TRL's
`get_quantization_config` / `get_peft_config`, so the CPU path and the QLoRA path share code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from act.records import Message

if TYPE_CHECKING:
    from act.params import LoraParams

log = logging.getLogger(__name__)

POINTER = "act_base.json"
"""File in `models/base` saying where the weights are: {"source": "embedded"|"pretrained", "model": ...}."""
ADAPTER_MARKER = "act_adapter.json"
"""File in an adapter dir; {"adapter": false} marks "no adapter: use the base model"."""


def base_info(base_dir: str | Path) -> dict:
    """The pointer file of a `models/base` directory ({"source": ..., "model": ...}); a plain HF
    directory without one counts as a local model."""
    p = Path(base_dir)
    pointer = p / POINTER
    if not pointer.exists():
        if (p / "config.json").exists():
            return {"source": "local", "model": str(p)}
        raise FileNotFoundError(f"{p}: neither {POINTER} nor config.json (did the base stage run?)")
    return json.loads(pointer.read_text(encoding="utf-8"))


def resolve_base(base_dir: str | Path) -> str:
    """The `from_pretrained` argument for a `models/base` directory (itself, or the model it names)."""
    info = base_info(base_dir)
    return str(base_dir) if info.get("source") in ("embedded", "converted") else str(info["model"])


def _from_pretrained(cls, base_dir: str | Path, **kwargs):
    """`cls.from_pretrained` on the base model, with its pinned revision; a hub model that cannot
    be fetched names the offline switch."""
    from act.progress import quiet_libraries

    quiet_libraries()  # off a terminal: no "Loading weights" bar, no library FutureWarnings (act.progress)
    info = base_info(base_dir)
    where = resolve_base(base_dir)
    if info.get("source") == "pretrained" and info.get("revision"):
        kwargs["revision"] = info["revision"]
    try:
        return cls.from_pretrained(where, **kwargs)
    except OSError as e:
        if info.get("source") == "pretrained" and not Path(where).exists():
            offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
            hint = ("HF_HUB_OFFLINE is set: unset it (or export HF_HUB_OFFLINE=0) to download" if offline
                    else "check the name and your network, or point base.model at a local directory or .gguf file")
            raise OSError(f"base.model={where}: cannot load from the hub ({hint}): {e}") from e
        raise


def has_adapter(adapter_dir: str | Path | None) -> bool:
    return adapter_dir is not None and (Path(adapter_dir) / "adapter_config.json").exists()


def get_quantization_config(quantization: str, compute_dtype: str | None = None):
    """BitsAndBytesConfig for "nf4" (4-bit QLoRA; works on CPU too), None for "none".
    `compute_dtype`: bf16 / fp16 / fp32 (`act.devices.resolve_dtype`; None = auto)."""
    if quantization == "none":
        return None
    if quantization != "nf4":
        raise ValueError(f"unknown quantization {quantization!r}; expected 'none' or 'nf4'")
    import importlib.util

    from transformers import BitsAndBytesConfig

    from act.devices import resolve_dtype, torch_dtype

    if importlib.util.find_spec("bitsandbytes") is None:
        from act.errors import ParamsError

        raise ParamsError("quantization: nf4 needs bitsandbytes, the optional [qlora] extra "
                          "(pip install -e '.[qlora]'); or set sft.quantization / train.quantization to none")
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype(compute_dtype or resolve_dtype("auto")),
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
    """The base model's tokenizer, ready for chats (template set and checked, pad token, system
    folding decided: see `act.chat`), padding on the left for generation."""
    from transformers import AutoTokenizer

    from act.chat import prepare_tokenizer

    tok = _from_pretrained(AutoTokenizer, base_dir)
    info = base_info(base_dir)
    if info.get("chat_template_text"):
        tok.chat_template = info["chat_template_text"]
    prepare_tokenizer(tok, source=f"base model {resolve_base(base_dir)}")
    tok.padding_side = "left"
    return tok


def load_model(base_dir: str | Path, adapter_dir: str | Path | None = None, *, quantization: str = "none",
               trainable: bool = False, gradient_checkpointing: bool = False, dtype: str = "auto",
               attn_implementation: str = "", section: str = "train"):
    """(model, tokenizer): the base model, 4-bit when asked, with the adapter applied if there is one.

    `trainable`: the adapter's weights get gradients, and a 4-bit base is prepared for k-bit training
    (with gradient checkpointing when `gradient_checkpointing`). `dtype` (auto | bf16 | fp16 |
    fp32) and `attn_implementation` are the params of `section`, named in errors. A model that
    only generates goes to the GPU when there is one (`act.devices`)."""
    from transformers import AutoModelForCausalLM

    from act.io import check_safetensors
    from act.devices import attn_kwargs, inference_device_map, resolve_dtype, torch_dtype, training_device_map

    check_safetensors(base_dir)  # a truncated weights file fails naming its path
    if adapter_dir:
        check_safetensors(adapter_dir)
    tok = load_tokenizer(base_dir)
    precision = resolve_dtype(dtype, key=f"{section}.dtype")
    qconfig = get_quantization_config(quantization, precision)
    kwargs = {"quantization_config": qconfig} if qconfig is not None else {}
    kwargs["dtype"] = torch_dtype(precision)
    kwargs.update(attn_kwargs(attn_implementation, key=f"{section}.attn_implementation"))
    device_map = training_device_map(qconfig is not None) if trainable else inference_device_map()
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = _from_pretrained(AutoModelForCausalLM, base_dir, **kwargs)
    if qconfig is not None and trainable:
        from peft import prepare_model_for_kbit_training

        # before the adapter goes on: this freezes every parameter it sees
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    if has_adapter(adapter_dir):
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable)
    return model, tok


class PromptStats(dict):
    """Counts of `fit_prompt` over every prompt a policy sampled from (a stage's metrics)."""

    KEYS = ("prompts", "truncated", "context_tokens_cut", "turns_dropped", "over_budget")

    def __init__(self):
        super().__init__({k: 0 for k in self.KEYS})

    def fit(self, tokenizer, chats: Sequence[Sequence[Message]], budget: int | None) -> list[list[Message]]:
        from act.chat import fit_prompt

        out = []
        for chat in chats:
            fitted = fit_prompt(tokenizer, chat, budget)
            self["prompts"] += 1
            self["truncated"] += fitted.truncated
            self["context_tokens_cut"] += fitted.context_cut
            self["turns_dropped"] += fitted.turns_dropped
            self["over_budget"] += not fitted.fits
            out.append(fitted.messages)
        return out


class HFPolicy:
    """A transformers causal LM as a `Policy`: one assistant turn per chat, batched, left-padded.

    Every chat is first fitted to `max_prompt_tokens` by `act.chat.fit_prompt` (system header and
    latest request kept, the context's middle and then the oldest history cut), the same prompt DPO
    trains on; `prompt_stats` counts the prompts, the truncated ones, the context tokens cut, the
    history messages dropped and the prompts still over budget.

    Works on a model that is being trained: it switches to eval mode for sampling and restores the
    previous mode afterwards. Chats are batched by length (fewer pad tokens); a LoRA adapter on an
    unquantized base is merged into the weights while sampling and unmerged afterwards (LoRA
    layers cost a fifth to a third of generation time otherwise)."""

    def __init__(self, model, tokenizer, *, max_new_tokens: int = 64, temperature: float = 0.0, seed: int = 0,
                 batch_size: int = 16, max_prompt_tokens: int | None = None, top_p: float = 1.0, top_k: int = 0,
                 merge_lora: bool = True):
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self.top_p, self.top_k = top_p, top_k
        self.batch_size, self.max_prompt_tokens = batch_size, max_prompt_tokens
        self.merge_lora = merge_lora
        self.calls = 0
        self.generated_tokens = 0
        self.samples = 0
        self.truncated_samples = 0
        """Samples that hit max_new_tokens without ending their turn (cut answers rarely score)."""
        self.last_truncated: list[bool] = []
        """Per chat of the last `generate` call: whether its turn was cut at max_new_tokens."""
        self.prompt_stats = PromptStats()

    def generate(self, chats: Sequence[Sequence[Message]]) -> list[str]:
        import torch

        chats = self.prompt_stats.fit(self.tokenizer, chats, self.max_prompt_tokens)
        order = sorted(range(len(chats)), key=lambda i: sum(len(m["content"]) for m in chats[i]))
        out: list[str] = [""] * len(chats)
        cut = [False] * len(chats)
        was_training = self.model.training
        self.model.eval()
        try:
            with self._merged():
                for start in range(0, len(order), self.batch_size):
                    idx = order[start:start + self.batch_size]
                    for i, (text, hit_cap) in zip(idx, self._generate_batch([chats[i] for i in idx], torch)):
                        out[i], cut[i] = text, hit_cap
        finally:
            if was_training:
                self.model.train()
        self.last_truncated = cut
        self.samples += len(out)
        self.truncated_samples += sum(cut)
        return out

    @contextlib.contextmanager
    def _merged(self):
        """LoRA merged into the base weights for the duration: only on an fp32 base. On a quantized
        base merging is impossible, and in bf16/fp16 merge + unmerge would round the frozen base
        weights a little every sampling round (the reference policy would drift)."""
        import torch

        model = self.model
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        merge = (self.merge_lora and hasattr(model, "merge_adapter")
                 and getattr(model.config, "quantization_config", None) is None
                 and getattr(base, "dtype", None) == torch.float32)
        if merge:
            model.merge_adapter()
        try:
            yield
        finally:
            if merge:
                model.unmerge_adapter()

    def _generate_batch(self, chats, torch) -> list[tuple[str, bool]]:
        """(text, cut at max_new_tokens) per chat."""
        from act.chat import normalize

        tok = self.tokenizer
        side = tok.padding_side
        tok.padding_side = "left"
        try:
            enc = tok.apply_chat_template([normalize(tok, c) for c in chats], add_generation_prompt=True,
                                          tokenize=True, padding=True, return_tensors="pt", return_dict=True)
        finally:
            tok.padding_side = side
        input_ids, attention = enc["input_ids"], enc["attention_mask"]
        device = next(self.model.parameters()).device
        sample = self.temperature > 0
        seed = self.seed + self.calls
        self.calls += 1
        # a private RNG stream: sampling neither reseeds nor advances the global generator a trainer uses
        forked = [device.index or 0] if device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=forked):
            torch.manual_seed(seed)
            gen = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device),
                max_new_tokens=self.max_new_tokens, do_sample=sample,
                temperature=self.temperature if sample else None, top_k=self.top_k if sample else None,
                top_p=self.top_p if sample else None,
                pad_token_id=tok.pad_token_id, eos_token_id=stop_ids(self.model, tok), use_cache=True,
            )
        new = gen[:, input_ids.shape[1]:]
        self.generated_tokens += int((new != tok.pad_token_id).sum())
        ends = set(stop_ids(self.model, tok)) | {tok.pad_token_id}
        # a turn still running at the cap: all max_new_tokens generated and the last one ends nothing
        cut = [new.shape[1] >= self.max_new_tokens and int(row[-1]) not in ends for row in new]
        return list(zip((t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)), cut))


def stop_ids(model, tokenizer) -> list[int]:
    """Token ids that end a turn: the tokenizer's EOS plus those of the model's generation config
    (Llama-3 ends chat turns with <|eot_id|>, Gemma with <end_of_turn>)."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(i for i in ids if i is not None)


def load_policy(base_dir: str, adapter_dir: str | None = None, *, quantization: str = "none",
                max_new_tokens: int = 64, temperature: float = 0.0, seed: int = 0, batch_size: int = 16,
                max_prompt_tokens: int | None = None, dtype: str = "auto", attn_implementation: str = "") -> HFPolicy:
    """The policy in `base_dir` (+ the LoRA adapter in `adapter_dir`, if it holds one), ready to
    sample, on the GPU when there is one. On an unquantized base the adapter is merged into the
    weights once (faster generation). `dtype` / `attn_implementation`: the train section's."""
    model, tok = load_model(base_dir, adapter_dir, quantization=quantization, dtype=dtype,
                            attn_implementation=attn_implementation)
    if has_adapter(adapter_dir) and quantization == "none":
        model = model.merge_and_unload()
    model.eval()
    return HFPolicy(model, tok, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed,
                    batch_size=batch_size, max_prompt_tokens=max_prompt_tokens)


def save_adapter(model, out_dir: str, **kwargs) -> None:
    """`model.save_pretrained(out_dir)` with a byte-reproducible `adapter_config.json`: peft keeps
    `target_modules` as a Python set, so the saved list follows the string hash seed, which
    differs in every process (PYTHONHASHSEED), and two identical trainings wrote different files
    (so dvc.lock changed on every run). The list is written sorted; the weights are untouched."""
    import json
    from pathlib import Path

    model.save_pretrained(out_dir, **kwargs)
    for config in Path(out_dir).rglob("adapter_config.json"):
        data = json.loads(config.read_text(encoding="utf-8"))
        if isinstance(data.get("target_modules"), list):
            data["target_modules"] = sorted(data["target_modules"])
            # peft's own layout (PeftConfigMixin.save_pretrained): indent 2, sorted keys
            config.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
