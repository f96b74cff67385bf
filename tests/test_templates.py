"""Every common chat template trains and evaluates: the template matrix.

Tiny random models in the formats of Zephyr/Mistral, plain ChatML, Qwen2.5, Llama-3, Gemma (no
system role) and a model with no template (tests/chat_families.py) go through the stages
base -> sft -> train (2 on-policy steps) -> evaluate on CPU. The SFT loss mask is checked on token
ids: exactly the tokens each assistant turn adds after its generation prompt count in the loss.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from act.actions import Action
from act.params import RolesParams
from act.records import Branch, TurnRecord
from tests.chat_families import build_family

ROOT = Path(__file__).resolve().parents[1]
DB = ROOT / "data/raw/spider/database"
PARAMS = ROOT / "params.yaml"
SQL = "SELECT count(*) FROM singer WHERE Birth_Year > 1950"


def records(split: str, n: int) -> list[TurnRecord]:
    out = []
    for i in range(n):
        clarify = i % 2 == 1
        out.append(TurnRecord(
            id=f"{split}{i}", dataset="ambigsql", conversation_id=f"{split}c{i}", split=split,
            context="singer(Singer_ID, Name, Birth_Year, Citizenship)",
            messages=[{"role": "user", "content": f"How many singers are there {i}?"}],
            gold_response="Born after which year?" if clarify else SQL,
            gold_action="clarify" if clarify else "answer",
            branches=[Branch("How many singers were born after 1950?", "After 1950." if clarify else None, SQL, [SQL])],
            meta={"db_id": "singer"},
        ))
    return out


def clarify_chat() -> list[dict]:
    from act.training.sft import gold_conversation

    rec = records("train", 2)[1]
    assert rec.action is Action.CLARIFY
    return gold_conversation(rec)


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return lambda family: build_family(family, root / family) if not (root / family).exists() else root / family


def _tokenizer(path):
    from transformers import AutoTokenizer

    from act.chat import prepare_tokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(path))


@pytest.mark.parametrize("family", ["zephyr", "chatml", "qwen2.5", "llama3", "gemma", "mistral"])
def test_sft_labels_are_exactly_the_assistant_turns(families, family):
    """Labels (token ids) == the tokens of what each assistant turn adds after its generation
    prompt; the system text, the user turns and the headers are never labelled."""
    from act.chat import normalize, render, tokenize_chat

    tok = _tokenizer(families(family))
    chat = clarify_chat()
    row = tokenize_chat(tok, chat)
    labelled = [t for t, lab in zip(row["input_ids"], row["labels"]) if lab != -100]
    assert [lab for lab in row["labels"] if lab != -100] == labelled

    msgs = normalize(tok, chat)
    expected: list[int] = []
    for i, m in enumerate(msgs):
        if m["role"] == "assistant":
            before = render(tok, msgs[:i], add_generation_prompt=True)
            through = render(tok, msgs[: i + 1])
            assert through.startswith(before.rstrip("\n")) or through.startswith(before)
            added = through[len(before):] if through.startswith(before) else through[len(before.rstrip("\n")):]
            assert m["content"] in added
            expected += tok(added, add_special_tokens=False)["input_ids"]
    assert labelled == expected
    text = tok.decode(labelled)
    assert "How many singers" not in text and "After 1950" not in text and "singer(Singer_ID" not in text


def test_zephyr_loss_covers_question_answer_and_their_eos(families):
    from act.chat import tokenize_chat

    tok = _tokenizer(families("zephyr"))
    row = tokenize_chat(tok, clarify_chat())
    labelled = [t for t, lab in zip(row["input_ids"], row["labels"]) if lab != -100]
    # Zephyr's generation prompt is "<|assistant|>\n": the loss starts at the turn's text and ends
    # with its EOS and the newline the template writes after it
    turns = ["Born after which year?</s>\n", SQL + "</s>\n"]
    assert labelled == [t for turn in turns for t in tok(turn, add_special_tokens=False)["input_ids"]]
    assert labelled.count(tok.eos_token_id) == 2


@pytest.mark.parametrize("family,folds", [("gemma", True), ("mistral", True), ("zephyr", False), ("chatml", False)])
def test_system_message_is_folded_only_where_the_template_rejects_it(families, family, folds):
    from act.chat import render

    tok = _tokenizer(families(family))
    assert tok.act_fold_system is folds
    text = render(tok, [{"role": "system", "content": "SYSTEM TEXT"}, {"role": "user", "content": "hi"}],
                  add_generation_prompt=True)
    assert "SYSTEM TEXT" in text
    if folds:
        assert "SYSTEM TEXT\n\nhi" in text


def test_pad_token_falls_back_to_eos(families):
    from transformers import AutoTokenizer

    path = families("zephyr")
    assert AutoTokenizer.from_pretrained(path).pad_token is None
    assert _tokenizer(path).pad_token == "</s>"


def test_model_without_template_fails_naming_the_param(families, tmp_path):
    from act.io import save_dataset
    from act.chat import ChatTemplateError
    from act.params import load_params
    from stages import base

    save_dataset(tmp_path / "annotate", {"train": [r.to_row() for r in records("train", 2)]})
    params = load_params(PARAMS, {"base.model": str(families("none"))})
    with pytest.raises(ChatTemplateError, match="base.chat_template"):
        base.run(params, data=tmp_path / "annotate", out=tmp_path / "base", metrics_path=tmp_path / "m.json")
    assert not (tmp_path / "base").exists()  # nothing half-written
    # ... and naming a family fixes it
    params = load_params(PARAMS, {"base.model": str(families("none")), "base.chat_template": "zephyr"})
    m = base.run(params, data=tmp_path / "annotate", out=tmp_path / "base", metrics_path=tmp_path / "m.json")
    assert m["source"] == "local" and not m["fold_system"]


def test_unknown_template_name_is_a_params_error():
    from act.errors import ParamsError
    from act.chat import resolve_chat_template

    with pytest.raises(ParamsError, match="base.chat_template: 'vicuna'"):
        resolve_chat_template("vicuna")


@pytest.mark.parametrize("family", ["zephyr", "chatml", "qwen2.5", "llama3", "gemma", "mistral"])
def test_family_runs_base_sft_train_evaluate(families, family, tmp_path):
    from act.io import read_json, save_dataset
    from act.pairs import build_pairs
    from act.params import load_params
    from act.roles import build_role
    from stages import base, evaluate, sft, train

    train_recs, eval_recs = records("train", 8), records("eval", 3)
    save_dataset(tmp_path / "annotate", {"train": [r.to_row() for r in train_recs],
                                         "eval": [r.to_row() for r in eval_recs]})
    pairs, _ = build_pairs(train_recs, build_role("rejecter", RolesParams()))
    save_dataset(tmp_path / "pairs", {"train": pairs})
    params = load_params(PARAMS, {
        "base.model": str(families(family)), "sft.epochs": 1, "sft.batch_size": 4, "sft.max_length": 512,
        "simulate.max_new_tokens": 8, "train.max_steps": 2, "train.batch_size": 4, "train.max_length": 512,
        "evaluate.max_new_tokens": 8, "evaluate.limit": 3,
    })
    m = tmp_path / "m"
    b = base.run(params, data=tmp_path / "annotate", out=tmp_path / "base", metrics_path=m / "base.json")
    assert b["source"] == "local" and b["fold_system"] == (family in ("gemma", "mistral"))
    s = sft.run(params, base=tmp_path / "base", data=tmp_path / "annotate", out=tmp_path / "sft",
                metrics_path=m / "sft.json")
    assert s["steps"] == 2 and s["examples_dropped_too_long"] == 0 and s["loss_first"] > 0
    t = train.run(params, base=tmp_path / "base", sft=tmp_path / "sft", pairs_dir=tmp_path / "pairs",
                  simulated=tmp_path / "unused", databases=DB, out=tmp_path / "act", log_dir=tmp_path / "log",
                  metrics_path=m / "train.json")
    assert t["steps"] == 2 and t["sampling_rounds"] == 2 and t["pairs_dropped_too_long"] == 0
    metrics = evaluate.run(params, data=tmp_path / "annotate", base=tmp_path / "base",
                           adapters={"sft": str(tmp_path / "sft"), "act": str(tmp_path / "act")},
                           databases=DB, train_log=tmp_path / "log" / "log.jsonl", out=tmp_path / "pred",
                           metrics_path=m / "evaluate.json", plots_dir=tmp_path / "plots",
                           report=tmp_path / "report.html")
    assert set(metrics) == {"base", "sft", "act"} and read_json(m / "evaluate.json") == metrics
    assert all(metrics[p]["action"]["n"] == 3 for p in metrics)


def test_gradient_checkpointing_and_accumulation_train_the_same_steps(families, tmp_path):
    from act.io import save_dataset
    from act.params import load_params
    from stages import base, sft

    save_dataset(tmp_path / "annotate", {"train": [r.to_row() for r in records("train", 8)]})
    params = load_params(PARAMS, {"base.model": str(families("chatml")), "sft.epochs": 1, "sft.batch_size": 2,
                                  "sft.gradient_accumulation_steps": 2, "sft.gradient_checkpointing": True})
    base.run(params, data=tmp_path / "annotate", out=tmp_path / "base", metrics_path=tmp_path / "b.json")
    s = sft.run(params, base=tmp_path / "base", data=tmp_path / "annotate", out=tmp_path / "sft",
                metrics_path=tmp_path / "s.json")
    assert s["steps"] == 2 and s["loss_first"] > 0  # 8 chats / (2 x 2) per optimizer step
