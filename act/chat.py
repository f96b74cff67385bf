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

`fit_prompt` fits a prompt into a token budget, the same way for DPO's prompts, on-policy
sampling and evaluation: the system header and the latest request stay whole, the middle of the
grounding context is cut, then the oldest history exchanges are dropped.

`tokenize_chat` builds SFT's input ids and labels with the loss on assistant turns only. It finds
each assistant turn by rendering growing prefixes of the conversation, so it needs no
`{% generation %}` markers and gives the same mask on every family: the assistant's text and its
end-of-turn tokens are trained; the system message, the user turns and the assistant header are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from act.errors import ParamsError
from act.records import Message

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


# ------------------------------------------------------------------------------- prompt budgets
CUT_MARK = "\n[...]\n"
"""Stands where the middle of a cut context was."""


@dataclass(frozen=True)
class FittedPrompt:
    messages: list[Message]
    """The prompt to use (not normalized: callers normalize as for any chat)."""
    tokens: int
    """Its length, rendered with the generation prompt."""
    context_cut: int = 0
    """Context tokens cut from the middle of the system message (0 = whole)."""
    turns_dropped: int = 0
    """History messages dropped, oldest first."""
    fits: bool = True
    """False: even the system header and the latest request alone pass the budget (returned as
    short as it gets: no context, no history)."""

    @property
    def truncated(self) -> bool:
        return bool(self.context_cut or self.turns_dropped)


_FIT_CACHE: dict[tuple, FittedPrompt] = {}
"""fit_prompt results by (tokenizer, template, prompt, budget, reserve); bounded, cleared when full."""


def prompt_length(tokenizer, messages: Sequence[Message]) -> int:
    """Tokens of the prompt as the policy sees it (rendered with the generation prompt)."""
    return len(chat_ids(tokenizer, messages, add_generation_prompt=True))


def completion_length(tokenizer, prompt: Sequence[Message], completion: Sequence[Message]) -> int:
    """Tokens a completion adds after the prompt's generation prompt (as DPO counts them)."""
    full = chat_ids(tokenizer, list(prompt) + list(completion))
    start = common_prefix(chat_ids(tokenizer, prompt, add_generation_prompt=True), full)
    return len(full) - start


def _split_prompt(messages: list[Message]):
    """(system message or None, history exchanges, kept tail from the latest user message on)."""
    system = messages[0] if messages and messages[0]["role"] == "system" else None
    rest = messages[1:] if system else messages
    last_user = max((i for i, m in enumerate(rest) if m["role"] == "user"), default=0)
    history, tail = rest[:last_user], rest[last_user:]
    exchanges: list[list[Message]] = []
    for m in history:  # an exchange starts at a user message: dropping whole ones keeps roles alternating
        if m["role"] == "user" or not exchanges:
            exchanges.append([])
        exchanges[-1].append(m)
    return system, exchanges, tail


def fit_prompt(tokenizer, messages: Sequence[Message], budget: int | None, *, reserve: int = 0) -> FittedPrompt:
    """The prompt cut to at most `budget - reserve` tokens (`reserve`: a completion kept whole after it).

    The system message's first paragraph (the instruction) and everything from the latest user
    message on are kept. What gives way, in order: the middle of the grounding context (the system
    message after its first paragraph), down to a quarter of the budget; then the oldest history
    exchanges (a user turn and the replies up to the next user turn), one at a time; then the rest
    of the context. Deterministic: simulate, train and evaluate get the same prompt for a budget.
    Results are memoized per tokenizer (the same prompts come back every sampling round and seed)."""
    import json

    key = (id(tokenizer), getattr(tokenizer, "name_or_path", ""), len(tokenizer), hash(tokenizer.chat_template),
           getattr(tokenizer, "act_fold_system", False), json.dumps(list(messages), sort_keys=True), budget, reserve)
    if key not in _FIT_CACHE:
        if len(_FIT_CACHE) >= 4096:
            _FIT_CACHE.clear()
        _FIT_CACHE[key] = _fit_prompt(tokenizer, messages, budget, reserve)
    hit = _FIT_CACHE[key]
    return FittedPrompt([dict(m) for m in hit.messages], hit.tokens, hit.context_cut, hit.turns_dropped, hit.fits)


def _fit_prompt(tokenizer, messages: Sequence[Message], budget: int | None, reserve: int) -> FittedPrompt:
    messages = [dict(m) for m in messages]
    full = prompt_length(tokenizer, messages)
    if budget is None or full <= budget - reserve:
        return FittedPrompt(messages, full)
    limit = budget - reserve
    system, exchanges, tail = _split_prompt(messages)
    head, sep, context = (system["content"].partition("\n\n") if system else ("", "", ""))
    if system and not sep:
        head, context = "", system["content"]  # one paragraph: all of it is context
    ctx_ids = list(tokenizer(context, add_special_tokens=False)["input_ids"]) if context else []
    n = len(ctx_ids)

    def build(keep: int, drop: int) -> list[Message]:
        out: list[Message] = []
        if system is not None:
            if keep >= n:
                body = context
            else:
                front, back = ctx_ids[: keep - keep // 2], ctx_ids[n - keep // 2:] if keep // 2 else []
                body = (_decode(tokenizer, front) + CUT_MARK + _decode(tokenizer, back)).strip()
            out.append({**system, "content": f"{head}{sep}{body}" if head else body})
        return out + [m for ex in exchanges[drop:] for m in ex] + tail

    def length(keep: int, drop: int) -> int:
        return prompt_length(tokenizer, build(keep, drop))

    floor = min(n, max(0, limit // 4))
    for drop in range(len(exchanges) + 1):
        lo = floor if drop < len(exchanges) else 0  # once no history is left, the context may shrink further
        if length(lo, drop) > limit:
            continue
        hi = n  # largest keep in [lo, n] that fits (the length grows with keep)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if length(mid, drop) <= limit:
                lo = mid
            else:
                hi = mid - 1
        kept = build(lo, drop)
        return FittedPrompt(kept, prompt_length(tokenizer, kept), n - lo,
                            sum(len(ex) for ex in exchanges[:drop]))
    kept = build(0, len(exchanges))
    return FittedPrompt(kept, prompt_length(tokenizer, kept), n, sum(len(ex) for ex in exchanges), fits=False)


def _decode(tokenizer, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False) if ids else ""


def fit_pair_prompt(tokenizer, prompt: Sequence[Message], completions: Sequence[Sequence[Message]], *,
                    prompt_budget: int | None, max_length: int | None) -> FittedPrompt:
    """The prompt DPO trains a pair on: the sampling prompt (`prompt_budget`, as `fit_prompt`) when
    it leaves room for the longest completion within `max_length`, else cut further so the whole
    completion fits (`fits` False when even that fails: the pair cannot be trained without a cut)."""
    fitted = fit_prompt(tokenizer, prompt, prompt_budget)
    if max_length is None:
        return fitted
    longest = max((completion_length(tokenizer, prompt, c) for c in completions), default=0)
    if fitted.tokens + longest <= max_length:
        return fitted
    return fit_prompt(tokenizer, prompt, max_length, reserve=longest)
