"""Tokenizing preference pairs the way TRL's DPOTrainer does, plus a per-token loss mask.

`tokenize_pair` mirrors `DPOTrainer._prepare_dataset`'s conversational branch (prompt with the
generation prompt; prompt+completion; the completion starts where the two diverge) so static
Phase-1 pairs and pairs relabelled during training are tokenized identically. It adds
`chosen_loss_mask` / `rejected_loss_mask` (one 0/1 per completion token): with
`mask_user_turns`, the tokens of the simulated user's turns inside a multi-turn completion get 0,
so they stay out of the DPO log-probabilities.
"""

from __future__ import annotations

from typing import Any, Sequence

from act.chat import common_prefix
from act.records import Message


def _ids(tokenizer, messages: Sequence[Message], **kwargs) -> list[int]:
    from trl.data_utils import _tokenize

    return list(_tokenize(tokenizer, list(messages), **kwargs)["input_ids"])


def completion_loss_mask(tokenizer, prompt: Sequence[Message], completion: Sequence[Message],
                         prompt_len: int, n_tokens: int, *, mask_user_turns: bool) -> list[int]:
    """1 per completion token that counts in the loss; user turns get 0 when `mask_user_turns`.

    A message's tokens are located by tokenizing growing prefixes of the conversation, which works
    for any chat template (no `{% generation %}` markers needed)."""
    mask = [1] * n_tokens
    if not mask_user_turns or not any(m["role"] == "user" for m in completion):
        return mask
    prev = prompt_len
    for i, msg in enumerate(completion):
        end = common_prefix(_ids(tokenizer, list(prompt) + list(completion[: i + 1])),
                             _ids(tokenizer, list(prompt) + list(completion)))
        if msg["role"] == "user":
            # the user's turn plus the assistant header that follows it: neither is the policy's output
            nxt = i + 2 <= len(completion)
            stop = (common_prefix(_ids(tokenizer, list(prompt) + list(completion[: i + 1]), add_generation_prompt=True),
                                   _ids(tokenizer, list(prompt) + list(completion))) if nxt else end)
            for pos in range(max(prev, prompt_len), max(stop, end)):
                if 0 <= pos - prompt_len < n_tokens:
                    mask[pos - prompt_len] = 0
        prev = end
    return mask


def tokenize_pair(tokenizer, prompt: Sequence[Message], chosen: Sequence[Message], rejected: Sequence[Message],
                  *, mask_user_turns: bool = False) -> dict[str, Any]:
    """prompt_ids / chosen_ids / rejected_ids (as DPOTrainer makes them) and the two loss masks.

    The prompt is normalized for the template first (`act.chat.normalize`), as `train_dpo`
    does for the static pairs TRL tokenizes itself."""
    from act.chat import normalize

    prompt = normalize(tokenizer, prompt)
    prompt_ids = _ids(tokenizer, prompt, add_generation_prompt=True)
    full_chosen = _ids(tokenizer, list(prompt) + list(chosen))
    full_rejected = _ids(tokenizer, list(prompt) + list(rejected))
    plen = min(common_prefix(prompt_ids, full_chosen), common_prefix(prompt_ids, full_rejected))
    chosen_ids, rejected_ids = full_chosen[plen:], full_rejected[plen:]
    return {
        "prompt_ids": prompt_ids[:plen],
        "chosen_ids": chosen_ids,
        "rejected_ids": rejected_ids,
        "chosen_loss_mask": completion_loss_mask(tokenizer, prompt, chosen, plen, len(chosen_ids),
                                                 mask_user_turns=mask_user_turns),
        "rejected_loss_mask": completion_loss_mask(tokenizer, prompt, rejected, plen, len(rejected_ids),
                                                   mask_user_turns=mask_user_turns),
    }
