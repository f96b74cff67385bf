"""The task heuristic dispatch: each dataset's metric, and failures scored 0 with a status."""

import sqlite3

import pytest

from act.metrics.task import record_scorer, score, score_detail
from act.records import Branch, TurnRecord


def _branch(answers, target="", scale=""):
    return Branch(intent="", reply=None, target=target, answers=answers, scale=scale)


def test_pacific_uses_tatqa_f1():
    assert score("pacific", "a - b = 26.71", _branch(["26.71"], scale="percent"), {"answer_type": "arithmetic"}) == 1.0


def test_pacific_clarify_record_scores_final_answer_as_span():
    """A CLARIFY record's answer_type is "question"; its final answer is scored as a span, so
    partial overlap counts: "net sales" vs "net sales 2019" -> P 1, R 2/3 -> F1 0.8."""
    assert score("pacific", "net sales", _branch(["net sales 2019"]), {"answer_type": "question"}) == 0.8


def test_abg_coqa_best_alternative():
    assert score("abg_coqa", "ropes", _branch(["Rope.", "ropes"]), {}) == 1.0


@pytest.fixture
def db_dir(tmp_path):
    (tmp_path / "pets").mkdir()
    conn = sqlite3.connect(tmp_path / "pets" / "pets.sqlite")
    conn.executescript("CREATE TABLE pet(name TEXT); INSERT INTO pet VALUES ('rex'), ('tom');")
    conn.commit()
    conn.close()
    return tmp_path


def test_ambigsql_execution_match(db_dir):
    b = _branch(["SELECT name FROM pet"], target="SELECT name FROM pet")
    assert score("ambigsql", "```sql\nSELECT name FROM pet ORDER BY name\n```", b, {"db_id": "pets"}, db_dir=db_dir) == 1.0
    d = score_detail("ambigsql", "SELECT nope FROM pet", b, {"db_id": "pets"}, db_dir=db_dir)
    assert (d.score, d.status) == (0.0, "error")


@pytest.mark.parametrize("pred", [None, "", "   "])
@pytest.mark.parametrize("dataset", ["pacific", "abg_coqa", "ambigsql"])
def test_empty_prediction_scores_zero(dataset, pred, db_dir):
    d = score_detail(dataset, pred, _branch(["x"], target="SELECT 1"), {"db_id": "pets"}, db_dir=db_dir)
    assert (d.score, d.status) == (0.0, "empty")


def test_missing_database_is_an_error_naming_it(db_dir):
    """A database that is not there is no score of 0 for the policy: the stage must stop."""
    from act.metrics.sql import DatabaseUnavailable

    with pytest.raises(DatabaseUnavailable, match="nowhere.sqlite"):
        score_detail("ambigsql", "SELECT 1", _branch([], target="SELECT 1"), {"db_id": "nowhere"}, db_dir=db_dir)
    assert score("ambigsql", "SELECT 1", _branch([], target="SELECT 1"), {}, db_dir=None) == 0.0


def test_unknown_dataset_is_a_programming_error():
    with pytest.raises(ValueError, match="no task metric"):
        score("mnist", "x", _branch(["x"]), {})


def test_record_scorer_for_rollout():
    rec = TurnRecord(id="r1", dataset="abg_coqa", conversation_id="c", split="eval", context="",
                     messages=[{"role": "user", "content": "q"}], gold_response="rope",
                     gold_action="answer", branches=[_branch(["rope"])])
    assert record_scorer()(rec, rec.branches[0], "the rope") == 1.0


@pytest.mark.parametrize("dataset, raw", [("pacific", "data/raw/pacific"), ("ambigsql", "data/raw/spider")])
def test_every_gold_target_scores_one_against_its_own_branch(root, dataset, raw):
    """The reference answers the policy is trained to write must score 1 (PACIFIC: numbers with
    scales, multi-span lists, derivations; AmbigSQL: every gold query executes and matches)."""
    from act.data import ambigsql, pacific
    from act.data.bad_records import BadRecords

    if dataset == "pacific":
        grouped = pacific.load(root / raw, bad=BadRecords("raise"), max_context_chars=100)
    else:
        grouped = ambigsql.build(root / raw, seed=0, ambiguity_types=("filter_value", "ambiguous_column", "order_limit", "aggregation"),
                                 ambiguous_fraction=0.5, query_timeout_s=5.0, bad=BadRecords("raise"), max_context_chars=100)
    records = [r for _, r in grouped if r.gold_action is not None]
    assert len(records) > 100
    db_dir = root / "data/raw/spider/database"
    below = [(r.id, b.target) for r in records for b in r.branches
             if score(dataset, b.target, b, r.meta, db_dir=db_dir) < 1.0]
    assert below == []
