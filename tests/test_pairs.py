"""Phase 1 pairs: the core on hand-made records, the schema check, and the stage end to end."""

import copy
import json

import pytest

from act.errors import RecordError
from act.io import save_dataset
from act.pairs import build_pairs, pair_to_record, render_sample, validate_pair
from act.params import Params, PairsParams
from act.records import Branch, TurnRecord
from act.roles.base import UsageCounter
from act.roles.offline import TemplateRejecter

SCHEMA = "CREATE TABLE singer (Singer_ID number, Name text, Age number)"


def _rec(i, action, *, dataset="ambigsql", split="train"):
    if action == "clarify":
        return TurnRecord(
            id=f"{dataset}/{i}", dataset=dataset, conversation_id=f"c{i}", split=split, context=SCHEMA,
            messages=[{"role": "user", "content": "Show the singers older than some age."}],
            gold_response="What age should I compare against?", gold_action="clarify",
            branches=[Branch("Show the singers older than 30.", "30.", "SELECT Name FROM singer WHERE Age > 30", ["SELECT Name FROM singer WHERE Age > 30"])],
            meta={"db_id": "singer", "ambiguity_type": "filter_value"},
        )
    return TurnRecord(
        id=f"{dataset}/{i}", dataset=dataset, conversation_id=f"c{i}", split=split, context=SCHEMA,
        messages=[{"role": "user", "content": "How many singers are there?"}],
        gold_response="SELECT count(*) FROM singer", gold_action=action,
        branches=[Branch("How many singers are there?", None, "SELECT count(*) FROM singer", ["SELECT count(*) FROM singer"])],
        meta={"db_id": "singer"},
    )


RECORDS = [_rec(0, "clarify"), _rec(1, "answer"), _rec(2, None)]


def test_gold_wins_and_clarify_winner_is_the_continuation():
    rows, counts = build_pairs(RECORDS, TemplateRejecter())
    assert counts == {"records": 3, "skipped_unlabeled": 1, "skipped_empty_response": 0, "pairs": 2, "gold_wins": 2}
    clar, ans = rows
    assert clar["chosen"] == [
        {"role": "assistant", "content": "What age should I compare against?"},
        {"role": "user", "content": "30."},
        {"role": "assistant", "content": "SELECT Name FROM singer WHERE Age > 30"},
    ]
    # the losing side of a CLARIFY turn answers at once with the gold final answer
    assert clar["rejected"] == [{"role": "assistant", "content": "SELECT Name FROM singer WHERE Age > 30"}]
    assert (clar["chosen_action"], clar["rejected_action"], clar["gold_action"]) == ("clarify", "answer", "clarify")
    assert ans["chosen"] == [{"role": "assistant", "content": "SELECT count(*) FROM singer"}]
    assert "singer" in ans["rejected"][0]["content"] and ans["rejected"][0]["content"].endswith("?")
    assert (ans["chosen_action"], ans["rejected_action"]) == ("answer", "clarify")
    # prompt: system message carrying the schema, then the history, ending in the user turn
    assert ans["prompt"][0]["role"] == "system" and SCHEMA in ans["prompt"][0]["content"]
    assert ans["prompt"][1:] == RECORDS[1].messages
    for i, row in enumerate(rows):
        assert pair_to_record(row) == RECORDS[i]
        validate_pair(row, "pairs", i)


def test_question_only_winner():
    rows, _ = build_pairs(RECORDS, TemplateRejecter(), clarify_winner="question")
    assert rows[0]["chosen"] == [{"role": "assistant", "content": "What age should I compare against?"}]


def test_random_actions_flip_some_pairs_seeded():
    recs = [_rec(i, "clarify" if i % 2 else "answer") for i in range(40)]
    rows, counts = build_pairs(recs, TemplateRejecter(), random_actions=True, seed=3)
    again, _ = build_pairs(recs, TemplateRejecter(), random_actions=True, seed=3)
    assert rows == again
    flipped = [r for r in rows if r["chosen_action"] != r["gold_action"]]
    assert 5 < len(flipped) < 35 and counts["gold_wins"] == 40 - len(flipped)
    for r in flipped:  # the gold turn is now the loser, a single turn
        assert len(r["rejected"]) == 1 and r["rejected"][0]["content"] == r["gold_response"]
        validate_pair(r)


def _good():
    rows, _ = build_pairs(RECORDS[:2], TemplateRejecter())
    return rows[1]


@pytest.mark.parametrize(
    "mutate, field, problem",
    [
        (lambda r: r["prompt"].append({"role": "assistant", "content": "hi"}), "prompt", "must end with a user turn"),
        (lambda r: r.update(chosen=[]), "chosen", "empty side"),
        (lambda r: r["rejected"][0].update(content="  "), "rejected[0].content", "empty message"),
        (lambda r: r.update(rejected=copy.deepcopy(r["chosen"])), "rejected", "same response"),
        (lambda r: r["chosen"][0].update(role="robot"), "chosen[0].role", "unknown role"),
        (lambda r: r.update(chosen_action="maybe"), "chosen_action", "unknown action"),
        (lambda r: r.update(rejected_action=r["chosen_action"]), "rejected_action", "same action"),
        (lambda r: r.update(chosen=[{"role": "user", "content": "x"}]), "chosen", "start and end with an assistant"),
        (lambda r: r.pop("gold_action"), "gold_action", "expected an action label"),
        (lambda r: r.update(meta="{oops"), "meta", "invalid JSON"),
    ],
)
def test_validate_pair_names_file_record_field(mutate, field, problem):
    row = copy.deepcopy(_good())
    mutate(row)
    with pytest.raises(RecordError) as err:
        validate_pair(row, "data/pairs/ambigsql/train", 7)
    msg = str(err.value)
    assert "file data/pairs/ambigsql/train" in msg and "record ambigsql/1" in msg
    assert f"field '{field}'" in msg and problem in msg


def test_sample_is_readable_markdown_across_actions():
    rows, _ = build_pairs([_rec(i, "clarify" if i < 3 else "answer") for i in range(10)], TemplateRejecter())
    text = render_sample(rows, 4, title="Pairs")
    assert text.startswith("# Pairs\n") and "4 of 10 pairs" in text
    assert text.count("### chosen (clarify)") == 2 and text.count("### chosen (answer)") == 2
    assert "> What age should I compare against?" in text


class _CountingRejecter(TemplateRejecter):
    def __init__(self):
        super().__init__(UsageCounter())

    def generate(self, items):
        self.usage.calls += len(items)
        return super().generate(items)


def test_stage_writes_dataset_sample_metrics(tmp_path):
    from datasets import load_from_disk

    from stages import pairs as stage

    recs = [_rec(i, "clarify" if i % 3 == 0 else "answer") for i in range(9)] + [_rec(9, None)]
    recs[1] = TurnRecord(**{**recs[1].__dict__, "action_source": "annotator:offline"})
    save_dataset(tmp_path / "ann", {"train": [r.to_row() for r in recs],
                                     "eval": [_rec(50, "answer", split="eval").to_row()]})
    params = Params(pairs=PairsParams(samples=3))
    metrics = stage.run(params, dataset="ambigsql", inp=tmp_path / "ann", out=tmp_path / "pairs",
                        sample=tmp_path / "sample.md", metrics_path=tmp_path / "m.json")
    ds = load_from_disk(str(tmp_path / "pairs"))["train"]
    assert len(ds) == 9 and set(ds.column_names) >= {
        "prompt", "chosen", "rejected", "chosen_action", "rejected_action", "gold_action", "id", "dataset",
        "conversation_id", "context", "messages", "gold_response", "branches", "meta"}
    for i, row in enumerate(ds):
        validate_pair(row, "reloaded", i)
    assert json.loads(ds[0]["meta"])["db_id"] == "singer"
    assert json.loads((tmp_path / "m.json").read_text()) == {k: v for k, v in metrics.items() if k != "seconds"}
    assert metrics["pairs"] == 9 and metrics["skipped_unlabeled"] == 1
    assert metrics["gold_action"] == {"answer": 6, "clarify": 3} and metrics["multi_turn_chosen"] == 3
    # classifier figures only over the 8 gold-labelled turns (one label came from an annotator)
    assert metrics["classifier"]["gold_turns"]["n"] == 8
    assert metrics["classifier"]["gold_turns"]["accuracy"] == 1.0
    assert metrics["classifier"]["rejected_takes_intended_action"] == 1.0
    assert (tmp_path / "sample.md").read_text().count("### chosen") == 3


def test_stage_refuses_a_malformed_pair(tmp_path):
    from stages import pairs as stage

    class Parrot:  # "rejects" with the gold answer itself: chosen == rejected
        def generate(self, items):
            return [it.gold_response for it in items]

    save_dataset(tmp_path / "ann", {"train": [_rec(1, "answer").to_row()]})
    with pytest.raises(RecordError, match="same response"):
        stage.run(Params(), dataset="ambigsql", inp=tmp_path / "ann", out=tmp_path / "pairs", sample=tmp_path / "s.md",
                  metrics_path=tmp_path / "m.json", rejecter=Parrot())
    assert not (tmp_path / "pairs").exists() and not (tmp_path / "m.json").exists()


def test_stage_help_is_fast_and_names_paths():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "stages.pairs", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "--sample" in out.stdout and "--metrics" in out.stdout
