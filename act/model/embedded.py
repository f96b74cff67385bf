"""The embedded policy: a small Llama built and pre-trained offline on the training split.

`build_tokenizer` trains a byte-level BPE on the corpus and wraps it as a
`PreTrainedTokenizerFast` whose chat template marks assistant turns with `{% generation %}` (so
SFT can train on assistant tokens only). `build_model` makes a random-init `LlamaForCausalLM`;
`pretrain` gives it a language prior by causal-LM training on the rendered training chats, so
its samples are text in the chat format rather than noise.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Iterable, Sequence

from act.progress import progress

log = logging.getLogger(__name__)

END = "<|end|>"
PAD = "<|pad|>"
BOS = "<|bos|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, BOS, END, *ROLE_TOKENS)

# One special token per role and an end token after every turn; the assistant's turn (content
# plus its end token, which is what generation must learn to emit) sits in {% generation %}.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ message['content'] + '<|end|>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def build_tokenizer(texts: Iterable[str], vocab_size: int):
    """Train a byte-level BPE on `texts`; returns a `PreTrainedTokenizerFast` with the chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=END, pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"  # generation pads on the left; TRL's collators pad themselves
    return fast


def build_model(tokenizer, *, hidden_size: int, layers: int, heads: int, max_positions: int, seed: int):
    """A random-init Llama sized by the arguments (tied embeddings keep small models small)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def pretrain(model, tokenizer, texts: Sequence[str], *, block_size: int, batch_size: int, steps: int,
             learning_rate: float, seed: int) -> dict[str, float]:
    """Causal-LM training on `texts` packed into blocks; returns loss/throughput figures."""
    import torch

    if steps <= 0 or not texts:
        return {"pretrain_steps": 0, "pretrain_tokens": 0}
    ids: list[int] = []
    for t in texts:
        ids.extend(tokenizer(t, add_special_tokens=False)["input_ids"])
    n_blocks = max(1, len(ids) // block_size)
    ids = (ids * math.ceil(block_size / max(1, len(ids))))[: max(block_size, n_blocks * block_size)]
    data = torch.tensor(ids[: n_blocks * block_size], dtype=torch.long).view(n_blocks, block_size)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.1, 1 - s / steps))
    model.train()
    start, first, last = time.perf_counter(), None, None
    with progress(steps, "pretrain", unit="step", logger=log) as bar:  # a bar on a terminal, else a line per 10 %
        for _ in range(steps):
            batch = data[torch.randint(0, n_blocks, (batch_size,), generator=gen)]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            last = loss.item()
            first = last if first is None else first
            bar.update(1, loss=f"{last:.3f}")
    seconds = time.perf_counter() - start
    model.eval()
    tokens = steps * batch_size * block_size
    return {
        "pretrain_steps": steps, "pretrain_tokens": tokens, "pretrain_seconds": round(seconds, 2),
        "pretrain_tokens_per_s": round(tokens / max(seconds, 1e-9), 1),
        "pretrain_loss_first": round(first, 4), "pretrain_loss_last": round(last, 4),
        "corpus_tokens": len(ids),
    }
