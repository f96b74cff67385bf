"""AmbigSQL: each perturbation on a hand-checked Spider request, and the built dataset's SQL."""

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from act.data import ambigsql
from act.data.bad_records import BadRecords
from act.data.sqldb import QueryError, db_path, execute, render_schema, same_result
from act.errors import RecordError
from act.metrics.sql import DatabaseUnavailable, is_vacuous

ROOT = Path(__file__).resolve().parents[1]
SPIDER = ROOT / "data" / "raw" / "spider"
TABLES = {t["db_id"]: t for t in json.loads((SPIDER / "tables.json").read_text())}
DB = db_path(SPIDER / "database", "concert_singer")


def _src(question, sql):
    return ambigsql.Source(question, sql, TABLES["concert_singer"])


def _check_executes(p):
    results = [execute(DB, sql) for _, sql in p.resolutions]
    for i in range(1, len(results)):
        assert not same_result(results[0], results[i]), "an alternative must answer differently"
    return results


def test_filter_value_removes_the_value_and_the_reply_restores_it():
    sql = 'SELECT count(*) FROM singer WHERE Country = "France"'
    p = ambigsql.filter_value(_src("How many singers are from France?", sql), random.Random(0))
    assert p.type == "filter_value"
    assert p.question == "How many singers are from a certain country?"
    assert p.clarification == "Which country do you mean?"
    assert p.resolutions == [("I mean France.", sql)]
    assert execute(DB, sql) == [(4,)]


def test_ambiguous_column_offers_columns_of_the_same_table():
    sql = "SELECT Name FROM singer"
    p = ambigsql.ambiguous_column(_src("What are the names of all singers?", sql), random.Random(0))
    assert p.question == "What are the details of all singers?"
    assert p.clarification.startswith("Which information about the singer do you want:")
    assert "name" in p.clarification
    assert p.resolutions[0] == ("The name.", sql)
    assert len(p.resolutions) == 3
    assert all(alt.startswith("SELECT ") and alt.endswith(" FROM singer") and alt != sql for _, alt in p.resolutions[1:])
    _check_executes(p)


def test_order_limit_superlative_becomes_extreme_and_the_alternative_flips_the_order():
    sql = "SELECT Name FROM singer ORDER BY Age DESC LIMIT 1"
    p = ambigsql.order_limit(_src("What is the name of the oldest singer?", sql), random.Random(0))
    assert p.question == "What is the name of the most extreme singer?"
    assert p.clarification == "Do you mean the oldest or the youngest?"
    assert p.resolutions == [("The oldest.", sql), ("The youngest.", "SELECT Name FROM singer ORDER BY Age ASC LIMIT 1")]
    gold, alt = _check_executes(p)
    assert gold == [("Joe Sharp",)] and alt == [("Tribal King",)]


def test_order_limit_drops_an_explicit_direction():
    sql = "SELECT Name FROM singer ORDER BY Age DESC"
    p = ambigsql.order_limit(_src("List singer names in descending order of age.", sql), random.Random(0))
    assert p.question == "List singer names of age."
    assert p.clarification == "Should the results be in ascending or descending order?"
    assert p.resolutions[1] == ("In ascending order.", "SELECT Name FROM singer ORDER BY Age ASC")


def test_aggregation_drops_the_aggregate_word_and_alternatives_apply_others():
    sql = "SELECT avg(Age) FROM singer"
    p = ambigsql.aggregation(_src("What is the average age of all singers?", sql), random.Random(0))
    assert p.question == "What is the age of all singers?"
    assert p.clarification == "Which statistic of the age do you want: the average, minimum, maximum or total?"
    assert p.resolutions[0] == ("The average.", sql)
    assert {r for r, _ in p.resolutions[1:]} <= {"The maximum.", "The minimum.", "The total."}
    assert len(p.resolutions) == 3
    _check_executes(p)


def test_perturbations_decline_requests_they_cannot_make_ambiguous():
    rng = random.Random(0)
    src = _src("How many singers do we have?", "SELECT count(*) FROM singer")
    assert all(f(src, rng) is None for f in ambigsql.PERTURBATIONS.values())


def test_schema_rendering_is_create_like_with_keys():
    text = render_schema(TABLES["concert_singer"])
    lines = text.splitlines()
    assert lines[0].startswith("CREATE TABLE stadium (Stadium_ID number PRIMARY KEY, Location text")
    assert any("FOREIGN KEY (Stadium_ID) REFERENCES stadium(Stadium_ID)" in line for line in lines)
    assert len(lines) == len(TABLES["concert_singer"]["table_names_original"])


def test_query_time_limit_and_read_only():
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    with pytest.raises(QueryError, match="timed out"):
        execute(DB, slow, timeout_s=0.2)
    with pytest.raises(QueryError, match="not authorized"):
        execute(DB, "DELETE FROM singer")


@pytest.fixture(scope="module")
def built():
    stats = ambigsql.BuildStats()
    return ambigsql.build(SPIDER, seed=0, bad=BadRecords(), stats=stats), stats


def test_build_every_gold_sql_executes_and_every_type_occurs(built):
    grouped, stats = built
    assert len(grouped) == 662 - 69 and stats.vacuous_gold == 69  # 45 empty results, 24 a lone 0/NULL
    types = Counter(r.meta["ambiguity_type"] for _, r in grouped)
    assert set(types) == {"none", *ambigsql.TYPES}
    assert types["none"] == 593 - round(0.5 * 593)  # ambiguous_fraction 0.5 of the usable 593
    for db, r in grouped:
        assert r.meta["db_id"] == db
        assert (r.gold_action == "answer") == (r.meta["ambiguity_type"] == "none")
        if r.gold_action == "clarify":
            assert r.branches[0].reply and r.messages[0]["content"] != r.meta["source_question"]
            assert r.branches[0].intent == r.meta["source_question"]
        for b in r.branches:
            assert not is_vacuous(execute(db_path(SPIDER / "database", db), b.target))
    assert stats.alternatives_kept > 0


def test_build_is_seeded(built):
    again = ambigsql.build(SPIDER, seed=0, bad=BadRecords())
    assert [r.to_row() for _, r in again] == [r.to_row() for _, r in built[0]]
    other = ambigsql.build(SPIDER, seed=1, bad=BadRecords())
    assert [r.gold_action for _, r in other] != [r.gold_action for _, r in built[0]]


def test_gold_sql_that_does_not_execute_is_a_bad_record(tmp_path):
    questions = [
        {"db_id": "singer", "question": "How many singers are there?", "query": "SELECT count(*) FROM singer"},
        {"db_id": "singer", "question": "Broken?", "query": "SELECT nope FROM singer"},
        {"db_id": "no_such_db", "question": "Where?", "query": "SELECT 1"},
    ]
    (tmp_path / "dev_subset.json").write_text(json.dumps(questions))
    (tmp_path / "tables.json").write_text((SPIDER / "tables.json").read_text())
    kw = dict(seed=0, databases=SPIDER / "database", ambiguous_fraction=0.0)
    with pytest.raises(RecordError) as e:
        ambigsql.build(tmp_path, bad=BadRecords(), **kw)
    assert e.value.field in ("query", "db_id") and e.value.file.endswith("dev_subset.json")
    bad = BadRecords("skip")
    grouped = ambigsql.build(tmp_path, bad=bad, **kw)
    assert [r.id for _, r in grouped] == ["ambigsql/0"]
    assert bad.skipped == 2 and bad.by_field == {"query": 1, "db_id": 1}
    assert any("record 1" in m and "no such column" in m for m in bad.examples)


def _mini(tmp_path, questions, tables=None):
    (tmp_path / "dev_subset.json").write_text(json.dumps(questions))
    if tables is None:
        (tmp_path / "tables.json").write_text((SPIDER / "tables.json").read_text())
    else:
        (tmp_path / "tables.json").write_text(json.dumps(tables))
    return dict(seed=0, databases=SPIDER / "database", ambiguous_fraction=0.0)


def test_vacuous_gold_is_dropped_and_counted(tmp_path):
    questions = [
        {"db_id": "singer", "question": "How many singers are there?", "query": "SELECT count(*) FROM singer"},
        {"db_id": "singer", "question": "Singers born in 1066?", "query": "SELECT name FROM singer WHERE birth_year = 1066"},
        {"db_id": "singer", "question": "How many born in 1066?", "query": "SELECT count(*) FROM singer WHERE birth_year = 1066"},
    ]
    kw = _mini(tmp_path, questions)
    stats = ambigsql.BuildStats()
    grouped = ambigsql.build(tmp_path, bad=BadRecords(), stats=stats, **kw)
    assert [r.id for _, r in grouped] == ["ambigsql/0"] and stats.vacuous_gold == 2


def test_missing_database_stops_ingest_naming_the_path(tmp_path):
    kw = _mini(tmp_path, [{"db_id": "singer", "question": "How many?", "query": "SELECT count(*) FROM singer"}])
    kw["databases"] = tmp_path / "nonexistent"
    with pytest.raises(DatabaseUnavailable, match="nonexistent/singer/singer.sqlite"):
        ambigsql.build(tmp_path, bad=BadRecords("skip"), **kw)  # even under skip: no record is at fault


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.pop("column_types"), "column_types"),
    (lambda t: t["column_types"].pop(), "column_types"),
    (lambda t: t["column_names"].append([0, "extra"]), "column_names"),
    (lambda t: t.__setitem__("column_names_original", "oops"), "column_names_original"),
    (lambda t: t["column_names_original"].__setitem__(1, [99, "x"]), "column_names_original[1]"),
    (lambda t: t.__setitem__("foreign_keys", [[1]]), "foreign_keys"),
])
def test_bad_tables_json_names_file_database_and_field(tmp_path, edit, field):
    tables = json.loads((SPIDER / "tables.json").read_text())
    singer = next(t for t in tables if t["db_id"] == "singer")
    edit(singer)
    kw = _mini(tmp_path, [{"db_id": "singer", "question": "How many?", "query": "SELECT count(*) FROM singer"}],
               tables=tables)
    with pytest.raises(RecordError) as e:
        ambigsql.build(tmp_path, bad=BadRecords(), **kw)
    assert e.value.file.endswith("tables.json") and e.value.field == field and "singer" in str(e.value.record)


def test_non_utf8_questions_file_is_a_record_error(tmp_path):
    _mini(tmp_path, [])
    (tmp_path / "dev_subset.json").write_bytes(b'[{"db_id": "singer", "question": "caf\xe9", "query": "SELECT 1"}]')
    with pytest.raises(RecordError, match=r"dev_subset.json.*not valid UTF-8 at byte"):
        ambigsql.build(tmp_path, bad=BadRecords(), seed=0)
