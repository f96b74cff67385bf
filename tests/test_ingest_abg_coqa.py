"""Abg-CoQA mapping on a hand-checked fixture."""

import json
from pathlib import Path

import pytest

from act.data import abg_coqa
from act.data.bad_records import BadRecords
from act.errors import RecordError

FIXTURE = Path(__file__).parent / "fixtures" / "abg_coqa"


def _load(raw=FIXTURE, mode="raise"):
    bad = BadRecords(mode)
    return abg_coqa.load(raw, bad=bad, max_context_chars=6000), bad


def test_ambiguous_example_is_clarify_with_one_branch_per_answer():
    grouped, _ = _load()
    group, r = grouped[0]
    assert group == "story1"
    assert r.gold_action == "clarify"
    assert r.gold_response == "Do you mean what did they remove before heading for the path?"
    assert r.messages == [
        {"role": "user", "content": "where did the path lead?"},
        {"role": "assistant", "content": "dense thicket"},
        {"role": "user", "content": "What did they remove?"},
    ]
    assert [b.reply for b in r.branches] == ["Yes.", "No, I mean after heading for the path."]
    assert r.branches[0].target == "Rope."
    assert r.branches[0].answers == ["Rope.", "the ropes", "ropes"]
    assert r.branches[1].answers == ["The dense brush-wood."]  # "Unknown" is no reference answer
    assert "Yes." in r.branches[0].intent and "What did they remove?" in r.branches[0].intent
    assert r.context.startswith("They removed the ropes")


def test_non_ambiguous_example_is_answer_and_stories_are_groups():
    grouped, _ = _load()
    _, r = grouped[1]
    assert r.gold_action == "answer" and r.gold_response == "the dense brush-wood"
    assert r.branches[0].reply is None and r.branches[0].answers == ["the dense brush-wood"]
    assert [g for g, _ in grouped] == ["story1", "story1", "story2"]


@pytest.mark.parametrize("mutate, field", [
    (lambda ex: ex["target_turn"].pop("question"), "target_turn.question"),
    (lambda ex: ex.__setitem__("ambiguity", "maybe"), "ambiguity"),
    (lambda ex: ex["clarification_turn"]["answers"][1].__setitem__("clr_ans", None), "clarification_turn.answers[1].clr_ans"),
    (lambda ex: ex.__setitem__("history_turns", "none"), "history_turns"),
])
def test_bad_record_names_file_record_and_field(tmp_path, mutate, field):
    data = json.loads((FIXTURE / "coqa_abg_val.json").read_text())
    mutate(data["data"][0])
    (tmp_path / "coqa_abg_val.json").write_text(json.dumps(data))
    with pytest.raises(RecordError) as e:
        _load(tmp_path)
    assert e.value.file.endswith("coqa_abg_val.json")
    assert e.value.record == "story1|9|2" and e.value.field == field
    grouped, bad = _load(tmp_path, "skip")
    assert bad.skipped == 1 and len(grouped) == 2


def test_duplicate_id_is_refused_or_skipped_and_counted(tmp_path):
    data = json.loads((FIXTURE / "coqa_abg_val.json").read_text())
    data["data"].append(json.loads(json.dumps(data["data"][0])))
    (tmp_path / "coqa_abg_val.json").write_text(json.dumps(data))
    with pytest.raises(RecordError) as e:
        _load(tmp_path)
    assert e.value.field == "id" and e.value.record == "3 (story1|9|2)" and "first seen at record 0" in str(e.value)
    grouped, bad = _load(tmp_path, "skip")
    assert bad.skipped == 1 and bad.by_field == {"id": 1} and len(grouped) == 3


def test_non_utf8_bytes_name_the_file(tmp_path):
    raw = (FIXTURE / "coqa_abg_val.json").read_bytes()
    (tmp_path / "coqa_abg_val.json").write_bytes(raw.replace(b"ropes", b"rop\xff\xfes", 1))
    with pytest.raises(RecordError, match=r"coqa_abg_val.json: not valid UTF-8 at byte \d+"):
        _load(tmp_path)
