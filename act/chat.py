"""Chat templates, for any model family: choosing one, system messages, pad tokens, loss masks.

Every place that turns messages into tokens (SFT, DPO, on-policy sampling, evaluation, local
roles) goes through `prepare_tokenizer` once and `normalize` per chat, so all of them see the
same prompt:

- `base.chat_template` sets a template: a family name (`KNOWN_TEMPLATES`: chatml, zephyr,
  llama3, qwen2.5, gemma, mistral) or a Jinja file. A tokenizer with no template and no
  `base.chat_template` is an error that names the param.
- Templates that reject a system message (Gemma, Mistral-Instruct v0.1) or silently drop it get
  the system text folded into the first user turn.
- A tokenizer with no pad token pads with its EOS (or UNK) token; all padding is masked.

`tokenize_chat` builds SFT's input ids and labels with the loss on assistant turns only. It finds
each assistant turn by rendering growing prefixes of the conversation, so it needs no
`{% generation %}` markers and gives the same mask on every family: the assistant's text and its
end-of-turn tokens are trained; the system message, the user turns and the assistant header are not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from act.errors import ParamsError
from act.roles.base import Message

TEMPLATE_DIR = Path(__file__).with_name("templates")
KNOWN_TEMPLATES = tuple(sorted(p.stem for p in TEMPLATE_DIR.glob("*.jinja")))
"""Family names `base.chat_template` accepts (files in act/templates/)."""

_PROBE = "ACT-SYSTEM-PROBE"


class ChatTemplateError(ParamsError):
    """The model's tokenizer cannot render chats (no template, or a template that fails)."""


def resolve_chat_template(value: str) -> str:
    """Template text for `base.chat_template`: a known family name or a path to a Jinja file."""
    if value in KNOWN_TEMPLATES:
        return (TEMPLATE_DIR / f"{value}.jinja").read_text(encoding="utf-8")
    path = Path(value)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise ChatTemplateError(
        f"base.chat_template: {value!r} is neither a file nor a known family ({', '.join(KNOWN_TEMPLATES)})")


def accepts_system(tokenizer) -> bool:
    """True when the template renders a system message (it neither raises nor drops it)."""
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "system", "content": _PROBE}, {"role": "user", "content": "hi"}],
            tokenize=False, add_generation_prompt=True)
    except Exception:  # jinja's raise_exception -> TemplateError; some templates fail otherwise
        return False
    return _PROBE in text


def fold_system(messages: Sequence[Message]) -> list[Message]:
    """The system message's text moved to the start of the first user turn."""
    msgs = [dict(m) for m in messages]
    if not msgs or msgs[0]["role"] != "system":
        return msgs
    system = msgs.pop(0)["content"]
    if msgs and msgs[0]["role"] == "user":
        msgs[0]["content"] = f"{system}\n\n{msgs[0]['content']}" if system else msgs[0]["content"]
    elif system:
        msgs.insert(0, {"role": "user", "content": system})
    return msgs


def prepare_tokenizer(tokenizer, *, chat_template: str | None = None, source: str = "the base model"):
    """Set the template (when given), check one exists, pick a pad token, decide system folding.

    Returns the same tokenizer; `tokenizer.act_fold_system` records whether chats need folding."""
    if chat_template:
        tokenizer.chat_template = resolve_chat_template(chat_template)
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            f"{source}: the tokenizer has no chat template; set base.chat_template to a Jinja file or one of "
            f"{', '.join(KNOWN_TEMPLATES)} (e.g. -S base.chat_template=chatml)")
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ChatTemplateError(f"{source}: the tokenizer has no pad, EOS or UNK token to pad with")
        tokenizer.pad_token = fallback
    tokenizer.act_fold_system = not accepts_system(tokenizer)
    try:
        render(tokenizer, [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                           {"role": "assistant", "content": "a"}, {"role": "user", "content": "u"}],
               add_generation_prompt=True)
    except Exception as e:
        raise ChatTemplateError(f"{source}: the chat template cannot render a conversation: {e}") from e
    return tokenizer


def normalize(tokenizer, messages: Sequence[Message]) -> list[Message]:
    """The messages as this tokenizer's template takes them (system folded where it must be)."""
    if getattr(tokenizer, "act_fold_system", False):
        return fold_system(messages)
    return [dict(m) for m in messages]


def render(tokenizer, messages: Sequence[Message], *, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(normalize(tokenizer, messages), tokenize=False,
                                         add_generation_prompt=add_generation_prompt)


def chat_ids(tokenizer, messages: Sequence[Message], *, add_generation_prompt: bool = False) -> list[int]:
    """Token ids of the rendered chat (the template writes BOS itself: no special tokens added)."""
    text = render(tokenizer, messages, add_generation_prompt=add_generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def assistant_mask(tokenizer, messages: Sequence[Message]) -> tuple[list[int], list[int]]:
    """(input_ids, mask): mask is 1 on the tokens each assistant turn adds after its header.

    A turn's tokens run from the end of the chat rendered up to it with the generation prompt, to
    the end of the chat rendered through it; both are measured as common prefixes with the whole
    chat, so a template whose generation prompt differs slightly from its rendered header
    (Zephyr's `<|assistant|>` vs `<|assistant|>\\n`) still gets the right span."""
    msgs = normalize(tokenizer, messages)
    full = chat_ids(tokenizer, msgs)
    mask = [0] * len(full)
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        start = common_prefix(chat_ids(tokenizer, msgs[:i], add_generation_prompt=True), full)
        end = common_prefix(chat_ids(tokenizer, msgs[: i + 1]), full) if i + 1 < len(msgs) else len(full)
        for pos in range(start, end):
            mask[pos] = 1
    return full, mask


def tokenize_chat(tokenizer, messages: Sequence[Message]) -> dict[str, Any]:
    """SFT row: `input_ids` and `labels` (-100 outside assistant turns), as TRL's SFTTrainer takes."""
    ids, mask = assistant_mask(tokenizer, messages)
    return {"input_ids": ids, "labels": [t if keep else -100 for t, keep in zip(ids, mask)]}
