"""Tiny random chat models in the formats of the real families, built offline for the tests.

Each family gets a byte-level BPE tokenizer trained on a few sentences, with the family's special
tokens and chat template (the files in act/templates/, which follow the models' own), and
a 2-layer, hidden-64 model of the family's architecture with random weights, saved with
`save_pretrained` so it loads like a downloaded model.
"""

from __future__ import annotations

from pathlib import Path

from act.chat import TEMPLATE_DIR

# family -> (architecture, special tokens, bos, eos, pad, template file or None)
FAMILIES: dict[str, tuple[str, list[str], str | None, str, str | None, str | None]] = {
    "zephyr": ("llama", ["<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>"], "<s>", "</s>", None,
               "zephyr"),
    "chatml": ("llama", ["<|im_start|>", "<|im_end|>", "<|endoftext|>"], None, "<|im_end|>", None, "chatml"),
    "qwen2.5": ("qwen2", ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], None, "<|im_end|>", "<|endoftext|>",
                "qwen2.5"),
    "llama3": ("llama", ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"],
               "<|begin_of_text|>", "<|eot_id|>", None, "llama3"),
    "gemma": ("llama", ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<end_of_turn>",
              "<pad>", "gemma"),
    "mistral": ("llama", ["<s>", "</s>", "<unk>"], "<s>", "</s>", None, "mistral"),
    "none": ("llama", ["<s>", "</s>"], "<s>", "</s>", None, None),
}

CORPUS = [
    "How many singers are there? SELECT count(*) FROM singer WHERE Birth_Year > 1950",
    "Do you mean singers born after a given year? Born after which year? After 1950.",
    "You are a helpful assistant. Context: singer(Singer_ID, Name, Birth_Year, Citizenship)",
    "What is the capital of France? Paris. Which one do you mean, the city or the team?",
]


def build_family(family: str, out: Path) -> Path:
    """Save a tiny random model + tokenizer of `family` in `out`; returns `out`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    arch, specials, bos, eos, pad, template = FAMILIES[family]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token=bos, eos_token=eos, pad_token=pad,
                                  unk_token="<unk>" if "<unk>" in specials else None)
    if template:
        tok.chat_template = (TEMPLATE_DIR / f"{template}.jinja").read_text(encoding="utf-8")
    ids = {k: tok.convert_tokens_to_ids(v) for k, v in (("bos", bos), ("eos", eos), ("pad", pad)) if v}
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                  bos_token_id=ids.get("bos"), eos_token_id=ids["eos"], pad_token_id=ids.get("pad"))
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**common)) if arch == "qwen2" else LlamaForCausalLM(LlamaConfig(**common))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
