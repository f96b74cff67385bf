"""The 7B QLoRA recipe (profiles/zephyr-24gb.yaml) measured on a real GPU, with nothing downloaded.

A Mistral-7B-architecture model (Zephyr-7B-beta's config: 7.24B parameters, 32k vocabulary) gets
random weights, built directly in bf16 on the GPU and saved with safetensors to local disk, since
the project's stages load a base model from a directory. Its tokenizer is a byte-level BPE trained
on the repo's raw corpus (PACIFIC and Abg-CoQA texts under data/raw) with Zephyr's special tokens
and chat template. Records are PACIFIC-style turns with contexts longer than the prompt budget and
gold turns of ~700 tokens, so every SFT row and every DPO pair fills `max_length` (1,536): the
batches are as wide as the recipe allows and the memory peak is the real one.

Then the project's own code runs at the profile's settings: `stages.base` (pointer + template
check), `stages.sft` (QLoRA SFT), `stages.train` (ACT: on-policy sampling every micro-batch,
offline classifier and simulator, DPO against the SFT adapter's frozen copy) and one evaluate
generation batch through `load_policy` (4-bit base + ACT adapter, `generation_batch_size` chats).
Only the number of steps is cut (`Sizes`), never what one step holds.

`Sizes.tiny()` is the same path on the CPU with a 2-layer model, for CI.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger("gpu_check.recipe")

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "profiles" / "zephyr-24gb.yaml"
ZEPHYR_SPECIALS = ["<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>"]

# Zephyr-7B-beta's config.json (MistralForCausalLM), minus the weights.
MISTRAL_7B = dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, max_position_embeddings=32768, rms_norm_eps=1e-5, rope_theta=10000.0,
                  sliding_window=4096, tie_word_embeddings=False)
MISTRAL_TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
                    sliding_window=4096, tie_word_embeddings=False)


@dataclass
class Sizes:
    """What the recipe run is cut to. `overrides` apply on top of the profile (tiny: CPU-sized)."""

    model: dict = field(default_factory=lambda: dict(MISTRAL_7B))
    vocab_size: int = 32000
    sft_steps: int = 2
    train_steps: int = 1
    answer_chars: int = 3200       # gold turn length: ~700 tokens with the 32k BPE
    context_chars: int = 9000      # longer than the 1,024-token prompt budget: its middle is cut
    overrides: dict = field(default_factory=dict)

    @classmethod
    def tiny(cls) -> "Sizes":
        return cls(model=dict(MISTRAL_TINY), vocab_size=2000, sft_steps=2, train_steps=1, answer_chars=300,
                   context_chars=1500, overrides={
                       "sft.quantization": "none", "train.quantization": "none", "sft.optim": "adamw_torch",
                       "train.optim": "adamw_torch", "sft.batch_size": 2, "train.batch_size": 2,
                       "sft.gradient_accumulation_steps": 2, "train.gradient_accumulation_steps": 2,
                       "sft.max_length": 256, "train.max_length": 256, "simulate.max_prompt_tokens": 160,
                       "simulate.generation_batch_size": 4, "simulate.max_new_tokens": 8,
                       "evaluate.max_new_tokens": 8})


def profile_overrides() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(PROFILE.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------ data
def corpus_texts(max_chars: int = 4_000_000) -> list[str]:
    """Every prose string of the PACIFIC and Abg-CoQA raw files in the repo (the tokenizer's corpus
    and the source of the long contexts and answers)."""
    texts: list[str] = []
    total = 0

    def walk(node):
        nonlocal total
        if isinstance(node, str):
            if len(node) >= 40 and total < max_chars:
                texts.append(node)
                total += len(node)
        elif isinstance(node, dict):
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for path in sorted((ROOT / "data/raw/pacific").glob("*.json")) + [ROOT / "data/raw/abg_coqa/coqa_abg_val.json"]:
        if path.exists():
            walk(json.loads(path.read_text(encoding="utf-8")))
    if not texts:
        raise FileNotFoundError(f"{ROOT / 'data/raw'}: no PACIFIC or Abg-CoQA raw files to build the corpus from")
    return texts


def build_tokenizer(texts: list[str], vocab_size: int):
    """Zephyr's tokens and chat template on a byte-level BPE trained on `texts`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from act.chat import TEMPLATE_DIR

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=ZEPHYR_SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.chat_template = (TEMPLATE_DIR / "zephyr.jinja").read_text(encoding="utf-8")
    return tok


def _take(texts: list[str], start: int, chars: int) -> str:
    out, i = [], start
    while sum(map(len, out)) < chars:
        out.append(texts[i % len(texts)])
        i += 1
    return " ".join(out)[:chars]


def make_records(texts: list[str], n: int, split: str, sizes: Sizes) -> list:
    """PACIFIC-style turns, every other one CLARIFY, with long contexts and long gold turns."""
    from act.records import Branch, TurnRecord

    out = []
    for i in range(n):
        clarify = i % 2 == 1
        answer = _take(texts, 7 * i + 3, sizes.answer_chars)
        question = _take(texts, 7 * i + 5, sizes.answer_chars // 3).rstrip(" ?.") + "? Which year do you mean?"
        out.append(TurnRecord(
            id=f"{split}{i}", dataset="pacific", conversation_id=f"{split}c{i}", split=split,
            context=_take(texts, 7 * i, sizes.context_chars),
            messages=[{"role": "user", "content": f"What was the total revenue in the period {i}?"}],
            gold_response=question if clarify else answer, gold_action="clarify" if clarify else "answer",
            branches=[Branch("What was the total revenue in 2019?", "2019." if clarify else None, answer, [answer[:80]])],
            meta={"answer_type": "span"},
        ))
    return out


# ------------------------------------------------------------------------------------ model
def build_base_model(out: Path, tok, sizes: Sizes) -> dict[str, Any]:
    """Random Mistral weights (bf16, built on the GPU when there is one) + tokenizer, saved to `out`."""
    import time

    import torch
    from transformers import GenerationConfig, MistralConfig, MistralForCausalLM

    on_gpu = torch.cuda.is_available()
    config = MistralConfig(vocab_size=max(sizes.vocab_size, len(tok)), bos_token_id=tok.bos_token_id,
                           eos_token_id=tok.eos_token_id, **sizes.model)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device("cuda" if on_gpu else "cpu"):
        model = MistralForCausalLM._from_config(config, dtype=torch.bfloat16 if on_gpu else torch.float32)
    if on_gpu:
        torch.cuda.synchronize()
    built = time.perf_counter() - t0
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    t0 = time.perf_counter()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    saved = time.perf_counter() - t0
    figures = {"parameters": sum(p.numel() for p in model.parameters()), "config_vocab_size": config.vocab_size,
               "tokenizer_vocab_size": len(tok), "build_seconds": round(built, 2), "save_seconds": round(saved, 2),
               "saved_gib": round(sum(f.stat().st_size for f in out.glob("*.safetensors")) / 2**30, 2)}
    del model
    return figures


# ------------------------------------------------------------------------------------ the run
def memory_cap(gib: float | None) -> None:
    """Let this process use at most `gib` GiB of the GPU (None: all of it), as a smaller card would:
    past it the caching allocator frees its cache and retries, then raises OutOfMemoryError."""
    import torch

    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, gib * 2**30 / total) if gib else 1.0)


def capped(name: str, record: dict[str, Any], cap_gib: float | None, fn: Callable[[dict[str, Any]], None]) -> None:
    """Run phase `name` under the memory cap; on OutOfMemoryError record it, lift the cap and run it
    again, so the phase's real peak is still measured and the phases after it can run."""
    import gpu_meter as meter
    import torch

    memory_cap(cap_gib)
    oom = ""
    try:
        with meter.phase(record.setdefault(name, {})) as rec:
            fn(rec)
        if cap_gib:
            record[name]["cap_gib"] = cap_gib
    except torch.OutOfMemoryError as e:
        oom = " ".join(str(e).split())[:400]
    finally:
        memory_cap(None)
    if oom:  # outside the except block: its traceback no longer holds the failed attempt's tensors
        log.warning("%s: out of memory under the %.2f GiB cap; again without the cap", name, cap_gib)
        record[name] = {"oom_at_cap_gib": cap_gib, "oom": oom}
        with meter.phase(record[name]) as rec:
            fn(rec)


def recipe_params(work: Path, sizes: Sizes):
    """(params, overrides, SFT records, DPO pairs): params.yaml + the profile + `sizes.overrides`,
    with only the number of steps cut: one epoch over exactly `sft_steps` optimizer steps of
    records, `train_steps` DPO steps, no checkpoints, no probe set."""
    from act.params import load_params

    over = {k: v for k, v in profile_overrides().items() if k != "base.model"}
    over.update(sizes.overrides)
    over.update({"base.model": str(work / "weights"), "sft.epochs": 1, "sft.save_steps": 0, "train.save_steps": 0,
                 "train.max_steps": sizes.train_steps, "train.probe_every": 0})
    p = load_params(ROOT / "params.yaml", over)
    sft_recs = p.sft.batch_size * p.sft.gradient_accumulation_steps * sizes.sft_steps
    pairs_n = p.train.batch_size * p.train.gradient_accumulation_steps * sizes.train_steps
    return p, over, sft_recs, pairs_n


def run(work: Path, sizes: Sizes, record: dict[str, Any], save: Callable[[], None],
        time_left: Callable[[], float], cap_gib: float | None = None) -> None:
    """Run the recipe phases in `work`, filling `record` (and calling `save`) after each one.
    `cap_gib`: the sft, train and evaluate phases run with the GPU memory capped there (a 24 GB card)."""
    import torch

    import gpu_meter as meter  # beside this file (gpu_check.py puts benchmarks/ on sys.path)
    from act.io import save_dataset
    from act.model.loading import load_policy
    from act.pairs import build_pairs
    from act.params import RolesParams
    from act.records import with_system
    from act.roles import build_role
    from stages import base as base_stage, sft as sft_stage, train as train_stage

    p, over, sft_recs, pairs_n = recipe_params(work, sizes)
    record["settings"] = {"profile": str(PROFILE.relative_to(ROOT)), "overrides": over, "sizes": asdict(sizes),
                          "sft_records": sft_recs, "train_pairs": pairs_n, "memory_cap_gib": cap_gib}
    save()

    with meter.phase(record.setdefault("build", {})) as rec:
        texts = corpus_texts()
        tok = build_tokenizer(texts, sizes.vocab_size)
        train_recs = make_records(texts, max(sft_recs, pairs_n), "train", sizes)
        eval_recs = make_records(texts[::-1], p.simulate.generation_batch_size, "eval", sizes)
        save_dataset(work / "annotate", {"train": [r.to_row() for r in train_recs],
                                         "eval": [r.to_row() for r in eval_recs]})
        pairs, _ = build_pairs(train_recs[:pairs_n], build_role("rejecter", RolesParams()))
        save_dataset(work / "pairs", {"train": pairs})
        rec.update(corpus_texts=len(texts), **build_base_model(work / "weights", tok, sizes))
        base_stage.run(p, data=work / "annotate", out=work / "base", metrics_path=work / "m" / "base.json")
    record["status"] = "build ok"
    save()

    def sft(rec):
        m = sft_stage.run(p, base=work / "base", data=work / "annotate", out=work / "sft",
                          metrics_path=work / "m" / "sft.json", checkpoint_dir=work / "ckpt_sft")
        rec.update(metrics=m, **meter.step_summary(steps.last()))

    def train(rec):
        with meter.generation_meter() as calls:
            m = train_stage.run(p, base=work / "base", sft=work / "sft", pairs_dir=work / "pairs",
                                simulated=work / "unused", databases=work / "db", out=work / "act",
                                log_dir=work / "log", metrics_path=work / "m" / "train.json",
                                checkpoint_dir=work / "ckpt_train")
        rec.update(metrics=m, sampling=meter.generation_summary(calls), **meter.step_summary(steps.last()))

    def evaluate(rec):
        with meter.generation_meter() as calls:
            policy = load_policy(str(work / "base"), str(work / "act"), quantization=p.train.quantization,
                                 max_new_tokens=p.evaluate.max_new_tokens, temperature=0.0,
                                 batch_size=p.simulate.generation_batch_size,
                                 max_prompt_tokens=p.simulate.max_prompt_tokens, dtype=p.train.dtype,
                                 attn_implementation=p.train.attn_implementation)
            texts_out = policy.generate([with_system(r) for r in eval_recs])
        rec.update(chats=len(eval_recs), nonempty=sum(bool(t) for t in texts_out),
                   prompt_stats=dict(policy.prompt_stats), device=str(next(policy.model.parameters()).device),
                   **meter.generation_summary(calls))

    (work / "db").mkdir(exist_ok=True)
    with meter.step_meter() as steps:
        for name, fn, need_s in (("sft", sft, 60), ("train", train, 60), ("evaluate", evaluate, 30)):
            if time_left() < need_s:
                raise TimeoutError(f"no time left for the {name} phase")
            capped(name, record, cap_gib, fn)
            record["status"] = f"{name} ok"
            save()
    record["status"] = "ok"
    save()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
