"""Long prompts, faithfully: `act.chat.fit_prompt` keeps the system header, the latest request and
the whole completion, cuts the middle of the context and then the oldest history, and every
consumer (DPO's pairs, on-policy sampling, evaluation) gets the same prompt for a budget.

Real tokenizers: the tiny Zephyr and Gemma families (Gemma folds the system message into the first
user turn and needs alternating roles), built offline by tests/chat_families.py."""

from __future__ import annotations

import pytest

from act.chat import CUT_MARK, chat_ids, render, completion_length, fit_pair_prompt, fit_prompt, prepare_tokenizer, prompt_length
from tests.chat_families import build_family

HEADER = "Answer the user's request from the context below. If the request is ambiguous, ask one clarifying question instead."
CONTEXT = " ".join(f"row{i}: singer {i} born {1900 + i} in city{i}." for i in range(120))
REQUEST = "How many singers were born after 1950 in FINALCITY?"


@pytest.fixture(scope="module", params=["zephyr", "gemma"])
def tok(request, tmp_path_factory):
    from transformers import AutoTokenizer

    path = build_family(request.param, tmp_path_factory.mktemp(request.param) / "m")
    return prepare_tokenizer(AutoTokenizer.from_pretrained(path))


def chat(history=()):
    return [{"role": "system", "content": f"{HEADER}\n\n{CONTEXT}"}, *history, {"role": "user", "content": REQUEST}]


HISTORY = [{"role": "user", "content": "OLDEST question about row 3?"}, {"role": "assistant", "content": "OLDEST answer."},
           {"role": "user", "content": "NEWER question about row 7?"}, {"role": "assistant", "content": "NEWER answer."}]


def test_short_prompt_is_untouched(tok):
    msgs = chat()
    fitted = fit_prompt(tok, msgs, 100_000)
    assert fitted.messages == msgs and not fitted.truncated and fitted.fits
    assert fitted.tokens == len(chat_ids(tok, msgs, add_generation_prompt=True))


def test_context_middle_is_cut_header_and_request_survive(tok):
    msgs = chat()
    full = prompt_length(tok, msgs)
    budget = full // 2
    fitted = fit_prompt(tok, msgs, budget)
    assert fitted.fits and fitted.tokens <= budget and fitted.context_cut > 0 and fitted.turns_dropped == 0
    system = fitted.messages[0]["content"]
    assert system.startswith(HEADER + "\n\n")  # the instruction stays whole
    assert CUT_MARK.strip() in system
    assert "row0:" in system and "row119:" in system  # both ends of the context stay: the middle goes
    assert "row60:" not in system
    assert fitted.messages[-1] == {"role": "user", "content": REQUEST}
    # the budget is used: one more context token would not fit
    assert fitted.tokens > budget - 8


def test_oldest_history_goes_before_the_context_shrinks_below_a_quarter(tok):
    long_history = [{"role": "user", "content": "OLDEST " + "question about some row " * 60},
                    {"role": "assistant", "content": "OLDEST answer."}, *HISTORY[2:]]
    msgs = chat(long_history)
    newer_only = prompt_length(tok, [{"role": "system", "content": HEADER + "\n\n[...]"}, *HISTORY[2:],
                                     {"role": "user", "content": REQUEST}])
    budget = 2 * newer_only  # the oldest exchange does not fit beside a quarter-budget context; the newer one does
    fitted = fit_prompt(tok, msgs, budget)
    assert fitted.fits and fitted.tokens <= budget
    text = " ".join(m["content"] for m in fitted.messages)
    assert "OLDEST" not in text and "NEWER question" in text
    assert fitted.turns_dropped == 2  # a whole exchange: roles keep alternating
    n = len(tok(CONTEXT, add_special_tokens=False)["input_ids"])
    assert n - fitted.context_cut >= budget // 4  # the context kept at least its quarter of the budget
    assert fitted.messages[0]["content"].startswith(HEADER)
    assert fitted.messages[-1]["content"] == REQUEST
    assert REQUEST in render(tok, fitted.messages)  # the template takes it (Gemma: roles must alternate)


def test_budget_too_small_for_header_and_request_is_reported(tok):
    fitted = fit_prompt(tok, chat(HISTORY), 10)
    assert not fitted.fits and fitted.tokens > 10
    assert fitted.messages[0]["content"].startswith(HEADER) and fitted.messages[-1]["content"] == REQUEST


def test_pair_prompt_is_the_sampling_prompt_and_the_completion_stays_whole(tok):
    msgs = chat()
    completion = [{"role": "assistant", "content": "Which year do you mean?"},
                  {"role": "user", "content": "After 1950."},
                  {"role": "assistant", "content": "SELECT count(*) FROM singer WHERE Birth_Year > 1950 -- END"}]
    budget = prompt_length(tok, msgs) // 2
    room = budget + completion_length(tok, msgs, completion)
    same = fit_pair_prompt(tok, msgs, [completion], prompt_budget=budget, max_length=room + 5)
    assert same.messages == fit_prompt(tok, msgs, budget).messages  # exactly what sampling sees
    tighter = fit_pair_prompt(tok, msgs, [completion], prompt_budget=budget, max_length=room - 30)
    assert tighter.fits and tighter.context_cut > same.context_cut
    ids = chat_ids(tok, tighter.messages + completion)
    assert len(ids) <= room - 30
    decoded = tok.decode(ids)
    assert decoded.rstrip().endswith(("-- END</s>", "-- END<end_of_turn>")) or "-- END" in decoded[-40:]
    assert "After 1950." in decoded and REQUEST in decoded


def test_policy_sampling_sees_the_fitted_prompt(tmp_path):
    """HFPolicy feeds the model exactly the fitted prompt's tokens and counts the cut."""
    import torch

    from act.model.loading import HFPolicy, load_model

    path = build_family("zephyr", tmp_path / "m")
    model, tok = load_model(path)
    seen = []
    original = model.generate

    def spy(*args, **kwargs):  # records the ids the model gets; generation itself is the real one
        seen.append(kwargs["input_ids"].clone())
        return original(*args, **kwargs)

    model.generate = spy
    budget = prompt_length(tok, chat()) // 2
    policy = HFPolicy(model, tok, max_new_tokens=2, max_prompt_tokens=budget)
    policy.generate([chat()])
    expected = fit_prompt(tok, chat(), budget)
    assert seen[0][0].tolist() == chat_ids(tok, expected.messages, add_generation_prompt=True)
    assert policy.prompt_stats["prompts"] == 1 and policy.prompt_stats["truncated"] == 1
    assert policy.prompt_stats["context_tokens_cut"] == expected.context_cut
    assert isinstance(seen[0], torch.Tensor)


def test_sft_keeps_the_gold_turns_whole_and_cuts_the_context(tmp_path, monkeypatch):
    """SFT on conversations longer than sft.max_length: every row keeps the system instruction, the
    request, the user's reply and the whole gold answer (labelled); the context's middle is cut."""
    import dataclasses

    import trl

    from act.params import SftParams
    from act.training.sft import train_sft
    from tests.test_train import SQL, make_records

    records = [dataclasses.replace(r, context=CONTEXT) for r in make_records(4)]
    path = build_family("zephyr", tmp_path / "m")
    seen = {}
    original = trl.SFTTrainer.__init__

    def spy(self, *args, **kwargs):  # records the rows the real trainer gets
        seen["rows"] = kwargs["train_dataset"]
        original(self, *args, **kwargs)

    monkeypatch.setattr(trl.SFTTrainer, "__init__", spy)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    metrics = train_sft(path, records, tmp_path / "sft", SftParams(epochs=1, batch_size=4, max_length=200), seed=0)
    assert metrics["examples_truncated"] == 4 and metrics["examples_dropped_too_long"] == 0
    for row, rec in zip(seen["rows"], records):
        assert len(row["input_ids"]) <= 200
        text = tok.decode(row["input_ids"])
        labelled = tok.decode([t for t in row["labels"] if t != -100])
        assert "Answer the user's request" in text and rec.messages[-1]["content"] in text and "[...]" in text
        assert labelled.rstrip().endswith(SQL + "</s>") or labelled.rstrip().endswith(SQL)
        if rec.gold_action == "clarify":
            assert "After 1950." in text and "Born after which year?" in labelled
