"""PACIFIC mapping on a hand-checked fixture dialogue."""

import json
from pathlib import Path

import pytest

from act.data import pacific
from act.data.bad_records import BadRecords
from act.errors import RecordError

FIXTURE = Path(__file__).parent / "fixtures" / "pacific"


def _load(raw=FIXTURE, mode="raise"):
    bad = BadRecords(mode)
    return {r.id: r for _, r in pacific.load(raw, bad=bad, max_context_chars=6000)}, bad


def test_clarification_turn_and_its_branch():
    recs, _ = _load()
    r = recs["pacific/q2"]
    assert r.gold_action == "clarify"
    assert r.gold_response == "Whose amount are you asking about?"
    # turns are ordered by `order`, not file order: q1 comes first in the history
    assert r.messages == [
        {"role": "user", "content": "What are the segments?"},
        {"role": "assistant", "content": "Sensors, Appliances"},
        {"role": "user", "content": "In which year was the amount the largest?"},
    ]
    (b,) = r.branches
    assert b.reply == "The amount for Sensors."
    assert b.intent == "In which year was the amount for Sensors the largest?"
    assert b.target == "2018"  # a span answer: the derivation is shown only for arithmetic
    assert b.answers == ["2018"]
    assert r.meta["answer_type"] == "span" and r.meta["turn_answer_type"] == "question"


def test_resolved_turn_is_an_answer_record_after_the_clarification():
    recs, _ = _load()
    r = recs["pacific/q3"]
    assert r.gold_action == "answer"
    assert r.messages[-3:] == [
        {"role": "user", "content": "In which year was the amount the largest?"},
        {"role": "assistant", "content": "Whose amount are you asking about?"},
        {"role": "user", "content": "The amount for Sensors."},
    ]
    assert r.branches[0].reply is None


def test_arithmetic_answer_rendered_with_derivation_and_scale_kept():
    recs, _ = _load()
    r = recs["pacific/q4"]
    assert r.gold_response == "680-774 = -94"
    assert r.branches[0].answers == ["-94"]
    assert r.branches[0].scale == "million"
    assert r.meta["answer_type"] == "arithmetic"


def test_context_is_paragraphs_then_table_rows():
    recs, _ = _load()
    assert recs["pacific/q1"].context == (
        "[context]\nNet sales by segment were as follows:\nAmounts are in millions.\n"
        "[data]\nrow0 :  | 2019 | 2018\nrow1 : Sensors | 914 | 918\nrow2 : Appliances | 680 | 774"
    )


def test_unlabeled_file_gives_unlabeled_records():
    recs, _ = _load()
    u = recs["pacific/u1"]
    assert u.split == "unlabeled" and u.gold_action is None and u.gold_response == ""
    assert u.branches[0].intent == "What was the cost in 2019?" and u.branches[0].answers == []
    assert len([r for r in recs.values() if r.split != "unlabeled"]) == 5


def _broken(tmp_path, mutate):
    data = json.loads((FIXTURE / "validation_dev_split.json").read_text())
    mutate(data)
    (tmp_path / "validation_dev_split.json").write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize("mutate, record, field", [
    (lambda d: d[0]["questions"][1].pop("answer"), "q1", "answer"),
    (lambda d: d[0]["questions"][0].__setitem__("question", 5), "q2", "question"),
    (lambda d: d[1].__setitem__("questions", []), "dlg-2", "questions"),
    (lambda d: d[0].__setitem__("questions", d[0]["questions"][:2]), "q2", "req_clari"),  # nothing after it
])
def test_bad_record_names_file_record_and_field(tmp_path, mutate, record, field):
    raw = _broken(tmp_path, mutate)
    with pytest.raises(RecordError) as e:
        _load(raw)
    assert e.value.file.endswith("validation_dev_split.json")
    assert e.value.record == record and e.value.field == field


def test_skip_mode_drops_the_dialogue_and_counts_it(tmp_path):
    raw = _broken(tmp_path, lambda d: d[0]["questions"][1].pop("answer"))
    recs, bad = _load(raw, "skip")
    assert bad.skipped == 1 and bad.by_field == {"answer": 1}
    assert sorted(recs) == ["pacific/q5"]


def test_duplicate_dialogue_is_refused_or_skipped_and_counted(tmp_path):
    raw = _broken(tmp_path, lambda d: d.append(json.loads(json.dumps(d[1]))))  # dlg-2 twice
    with pytest.raises(RecordError) as e:
        _load(raw)
    assert e.value.file.endswith("validation_dev_split.json") and e.value.field == "uid"
    assert e.value.record == "2 (dlg-2)" and "duplicate id 'q5'" in str(e.value)
    recs, bad = _load(raw, "skip")
    assert bad.skipped == 1 and bad.by_field == {"uid": 1}
    assert len([r for r in recs.values() if r.split != "unlabeled"]) == 5  # the first copy only


def test_duplicate_question_uid_within_a_dialogue_is_refused(tmp_path):
    raw = _broken(tmp_path, lambda d: d[1]["questions"].append({**d[1]["questions"][0], "order": 99}))
    with pytest.raises(RecordError, match="duplicate id 'q5'"):
        _load(raw)


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d[0].__setitem__("paragraphs", "text"), "paragraphs"),
    (lambda d: d[0]["table"].__setitem__("table", "a|b"), "table.table"),
    (lambda d: d[1].__setitem__("questions", "q?"), "questions"),
])
def test_a_string_where_a_list_is_expected_names_the_field(tmp_path, mutate, field):
    with pytest.raises(RecordError) as e:
        _load(_broken(tmp_path, mutate))
    assert e.value.field == field


def test_non_utf8_bytes_name_the_file_and_byte(tmp_path):
    text = (FIXTURE / "validation_dev_split.json").read_bytes()
    (tmp_path / "validation_dev_split.json").write_bytes(text.replace(b"segments", b"segm\xe9nts", 1))
    with pytest.raises(RecordError, match=r"validation_dev_split.json: not valid UTF-8 at byte \d+"):
        _load(tmp_path)
