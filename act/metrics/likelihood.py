"""`action_auc`: does the policy know when to ask? A threshold-free measure from log-likelihoods.

Greedy Action Macro F1 stays flat as long as a small model never flips its first token, however
much training moved its preference. This measure needs no generation: per eval record,

    s = mean per-token log-prob of a clarifying turn - mean per-token log-prob of the direct answer

under the policy, both given the record's prompt exactly as evaluation renders it (`with_system`,
then `act.chat.fit_prompt` to `simulate.max_prompt_tokens`, the model's chat template). A policy
that knows when to ask puts s higher on ambiguous (CLARIFY) turns than on clear ones;
`action_auc` is the ROC AUC of s against the gold action (CLARIFY = positive; `act.metrics.auc`):
0.5 = blind, 1.0 = every ambiguous turn ranked above every clear one.

Where the two turns come from (the same source for every record, else s measures the source):
- the clarifying turn is ONE fixed question per dataset (`evaluate.auc_questions`; the defaults
  in `act.params.AUC_QUESTIONS` are content-free, in the register of each corpus's human
  questions, naming nothing from any request). Its wording is
  then identical on every record, so only the prompt moves its likelihood, i.e. how fitting the
  policy finds asking *here*. The human question exists on ambiguous records only (its wording
  would give the label away), and the Phase-1 template/rejecter question copies the request's
  words, so it wins on wording rather than on ambiguity (issue 19 measured 0.38 on Abg-CoQA with
  that mix). A generic question fits some ambiguities worse than a tailored one would; that cost
  is the same on both classes, and AUC only reads the ranking.
- the direct answer is the gold one: `act.pairs.final_answer` (an ANSWER turn's gold response; for
  a CLARIFY turn the gold answer of its kept branch, `act.pairs.gold_branch`, the one SFT and the
  Phase-1 winner use). A record with an empty direct answer is left out and counted.

Both turns are scored as DPO scores a completion: the tokens the assistant turn adds after the
generation prompt, its end-of-turn tokens included. The record's prompt runs once for both turns
(its KV cache reused: `shared_prompt_logprobs`), no grad, the model in eval mode; `mean_logprobs`
scores whole sequences in left-padded batches instead (the LM head on the completion tail only,
via `logits_to_keep`, explicit position ids).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from act.records import SYSTEM_TEMPLATE, TurnRecord, with_system
from act.roles.base import Message

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Scored:
    """One tokenized (prompt, completion): `ids` the whole chat, the completion its last `n` ids."""

    ids: list[int]
    n: int


def encode(tokenizer, prompt: Sequence[Message], completion: str, *, max_prompt_tokens: int | None,
           max_length: int | None = None) -> Scored:
    """The prompt fitted as evaluation fits it, then one assistant turn holding `completion`. The
    completion's tokens run from the end of the prompt rendered with the generation prompt (as a
    common prefix: templates differ slightly between that header and a rendered turn) to the end.
    Over `max_length` (the model's positions), the oldest prompt tokens are dropped."""
    from act.chat import chat_ids, common_prefix, fit_prompt

    fitted = fit_prompt(tokenizer, prompt, max_prompt_tokens).messages
    full = chat_ids(tokenizer, fitted + [{"role": "assistant", "content": completion}])
    start = common_prefix(chat_ids(tokenizer, fitted, add_generation_prompt=True), full)
    if start >= len(full):
        raise ValueError(f"completion {completion[:40]!r} adds no tokens after the prompt")
    if max_length and len(full) > max_length:
        cut = len(full) - max_length
        full, start = full[cut:], max(1, start - cut)
    return Scored(full, len(full) - start)


def mean_logprobs(model, tokenizer, items: Sequence[Scored], *, batch_size: int = 16) -> list[float]:
    """Mean per-token log-prob of each item's completion under `model`, in the order given.

    Batches of similar length, padded on the left with position ids counted from each row's first
    real token, so a batch scores each item as it would alone (up to float rounding)."""
    import torch

    if not items:
        return []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    order = sorted(range(len(items)), key=lambda i: len(items[i].ids))
    out = [0.0] * len(items)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for begin in range(0, len(order), batch_size):
                idx = order[begin:begin + batch_size]
                for i, value in zip(idx, _score_batch(model, [items[i] for i in idx], pad, device, torch)):
                    out[i] = value
    finally:
        if was_training:
            model.train()
    return out


def _score_batch(model, batch: Sequence[Scored], pad: int, device, torch) -> list[float]:
    width = max(len(it.ids) for it in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, it in enumerate(batch):
        ids[row, width - len(it.ids):] = torch.tensor(it.ids, dtype=torch.long)
        mask[row, width - len(it.ids):] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    keep = max(it.n for it in batch) + 1  # logits at position t predict token t + 1
    inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device)}
    try:
        logits = model(**inputs, logits_to_keep=keep, use_cache=False).logits
    except TypeError:  # a model class without logits_to_keep: the full logits, then the tail
        logits = model(**inputs, use_cache=False).logits
    logits = logits[:, -keep:-1].float()
    targets = ids[:, width - keep + 1:].to(logits.device)
    token_lp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    span = torch.arange(keep - 1, device=logits.device)[None, :]
    lengths = torch.tensor([it.n for it in batch], device=logits.device)[:, None]
    in_completion = span >= (keep - 1 - lengths)
    sums = (token_lp * in_completion).sum(-1)
    return [float(s) / it.n for s, it in zip(sums.tolist(), batch)]


def shared_prompt_logprobs(model, pairs: Sequence[tuple[Scored, Scored]]) -> list[tuple[float, float]]:
    """`mean_logprobs` of both items of each pair, running the tokens the two share (the record's
    prompt) once: the prompt with the KV cache on, then both completions on top of that cache
    (batch 2). About half the work of scoring the two sequences apart, whose prompt is nearly all
    of their length; equal to `mean_logprobs` up to float rounding. A pair that shares no token
    is scored apart."""
    import torch
    from transformers import DynamicCache

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[tuple[float, float]] = []
    try:
        with torch.inference_mode():
            for a, b in pairs:
                limit = min(len(a.ids) - a.n, len(b.ids) - b.n)  # both completions start after the shared part
                p = 0
                while p < limit and a.ids[p] == b.ids[p]:
                    p += 1
                if p == 0:
                    out.append((_score_batch(model, [a], 0, device, torch)[0], _score_batch(model, [b], 0, device, torch)[0]))
                    continue
                head = model(input_ids=torch.tensor([a.ids[:p]], device=device), use_cache=True, logits_to_keep=1)
                cache = head.cache if getattr(head, "cache", None) is not None else head.past_key_values
                layers = [(torch.cat([la.keys, la.keys]), torch.cat([la.values, la.values])) for la in cache.layers]
                tails = [a.ids[p:], b.ids[p:]]
                width = max(len(t) for t in tails)
                # right-padded: causal attention keeps every real token from seeing the padding after it
                ids = torch.tensor([t + [t[-1]] * (width - len(t)) for t in tails], device=device)
                positions = torch.arange(p, p + width, device=device)[None].expand(2, width)
                logits = model(input_ids=ids, position_ids=positions, cache=DynamicCache(ddp_cache_data=layers),
                               use_cache=False).logits.float()
                # row logits predicting tail token k: k = 0 -> the prompt's last position, else tail position k - 1
                pred = torch.cat([head.logits[:, -1:].float().expand(2, -1, -1), logits[:, :-1]], 1)
                token_lp = pred.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(pred, dim=-1)
                pair = []
                for row, (it, tail) in enumerate(zip((a, b), tails)):
                    pair.append(float(token_lp[row, len(tail) - it.n:len(tail)].sum()) / it.n)
                out.append((pair[0], pair[1]))
    finally:
        if was_training:
            model.train()
    return out


def question_for(dataset: str, questions: Mapping[str, str]) -> str:
    """The fixed clarifying question of `dataset`; a clear error naming the param when it has none."""
    from act.errors import ParamsError

    question = (questions.get(dataset) or "").strip()
    if not question:
        raise ParamsError(f"evaluate.auc_questions: no question for dataset {dataset!r} "
                          f"(has {sorted(questions)}); add one, e.g. -S evaluate.auc_questions.{dataset}='Which one do you mean?'")
    return question


def ask_answer_margins(records: Sequence[TurnRecord], model, tokenizer, questions: Mapping[str, str], *,
                       max_prompt_tokens: int | None, batch_size: int = 16,
                       system_template: str = SYSTEM_TEMPLATE, shared_prompt: bool = True) -> list[float | None]:
    """s per record (None where the record has no direct answer to score): the fixed question's mean
    log-prob minus the gold direct answer's, both given the record's evaluation prompt. The prompt
    runs once for both turns (`shared_prompt_logprobs`); `shared_prompt=False` scores the two
    sequences apart in left-padded batches (`mean_logprobs`)."""
    from act.pairs import final_answer

    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    items: list[Scored] = []
    kept: list[int] = []
    for i, rec in enumerate(records):
        answer = final_answer(rec).strip()
        if not answer:
            continue
        prompt = with_system(rec, system_template)
        items += [encode(tokenizer, prompt, question_for(rec.dataset, questions), max_prompt_tokens=max_prompt_tokens,
                         max_length=limit),
                  encode(tokenizer, prompt, answer, max_prompt_tokens=max_prompt_tokens, max_length=limit)]
        kept.append(i)
    if shared_prompt:
        scored = shared_prompt_logprobs(model, [(items[2 * k], items[2 * k + 1]) for k in range(len(kept))])
    else:
        lps = mean_logprobs(model, tokenizer, items, batch_size=batch_size)
        scored = [(lps[2 * k], lps[2 * k + 1]) for k in range(len(kept))]
    margins: list[float | None] = [None] * len(records)
    for (ask, answer), i in zip(scored, kept):
        margins[i] = ask - answer
    return margins


def action_auc(records: Sequence[TurnRecord], margins: Sequence[float | None], *, resamples: int = 1000,
               seed: int = 0) -> dict[str, Any]:
    """The action-level figures: `action_auc` with `action_auc_lo` / `action_auc_hi` (stratified
    bootstrap, 95%), `action_auc_n_clarify` / `action_auc_n_answer` (the records ranked), and
    `action_auc_skipped` (records without a direct answer). Without both actions among the scored
    records there is no AUC: only the counts are returned."""
    from act.actions import Action
    from act.metrics.auc import auc_with_interval

    scored = [(m, rec.action is Action.CLARIFY) for rec, m in zip(records, margins) if m is not None]
    n_clarify = sum(1 for _, pos in scored if pos)
    out: dict[str, Any] = {"action_auc_n_clarify": n_clarify, "action_auc_n_answer": len(scored) - n_clarify,
                           "action_auc_skipped": len(records) - len(scored)}
    if not n_clarify or n_clarify == len(scored):
        log.warning("action_auc: %d clarify and %d answer records scored; no AUC without both",
                    n_clarify, len(scored) - n_clarify)
        return out
    auc = auc_with_interval([m for m, _ in scored], [pos for _, pos in scored], resamples=resamples, seed=seed)
    return {"action_auc": auc["auc"], "action_auc_lo": auc["lo"], "action_auc_hi": auc["hi"], **out}


def policy_action_auc(records: Sequence[TurnRecord], policy, questions: Mapping[str, str], *, resamples: int = 1000,
                      seed: int = 0, name: str = "policy") -> dict[str, Any]:
    """`action_auc` figures of an evaluation policy (`act.model.HFPolicy`: its model, tokenizer,
    prompt budget and batch size); {} for a policy without a model to score with (a test double,
    an HTTP policy), which is logged."""
    model, tokenizer = getattr(policy, "model", None), getattr(policy, "tokenizer", None)
    if model is None or tokenizer is None:
        log.info("action_auc: %s has no local model to score log-likelihoods with; skipped", name)
        return {}
    started = time.monotonic()
    margins = ask_answer_margins(records, model, tokenizer, questions,
                                 max_prompt_tokens=getattr(policy, "max_prompt_tokens", None),
                                 batch_size=getattr(policy, "batch_size", 16))
    out = action_auc(records, margins, resamples=resamples, seed=seed)
    log.info("action_auc %s: %s over %d records (%d sequences scored) in %.1f s", name,
             f"{out['action_auc']:.3f} [{out['action_auc_lo']:.3f}, {out['action_auc_hi']:.3f}]"
             if "action_auc" in out else "n/a", len(records), 2 * sum(m is not None for m in margins),
             time.monotonic() - started)
    return out
