"""Property-based: no input crashes the parsers or the three task scorers, and scores stay in [0, 1].

Parsers get valid fixture records with 1-3 values anywhere in them replaced by arbitrary JSON (a
string where a list is expected, a list where a string is, nulls, numbers, nesting), plus raw
bytes; the only failure allowed is a RecordError. Scorers get arbitrary text. Small budgets
(`EXAMPLES` each) keep the file at a few seconds.
"""

from __future__ import annotations

import copy
import os
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from act.data import abg_coqa, custom, pacific
from act.errors import RecordError
from act.io import read_jsonl
from act.metrics.sql import extract_sql, same_rows
from act.metrics.task import score_detail
from act.records import Branch, validate_row

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLES = int(os.environ.get("ACT_PROPERTY_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
TEXT = st.text(max_size=80) | st.sampled_from(["", " ", "2019", "$ 5", "1,234.5", "-3 %", "a | b", "SELECT"])


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _set(obj, path, value):
    if not path:
        return value
    node = obj
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return obj


@st.composite
def mutated(draw, original):
    """`original` with 1-3 values (anywhere, the root included) replaced by arbitrary JSON."""
    obj = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(obj))
        obj = _set(obj, draw(st.sampled_from(paths)), draw(JSON))
    return obj


PACIFIC_DIALOGUE = json.loads((FIXTURES / "pacific" / "validation_dev_split.json").read_text())[0]
ABG_EXAMPLE = json.loads((FIXTURES / "abg_coqa" / "coqa_abg_val.json").read_text())["data"][0]
CUSTOM_LINE = json.loads((FIXTURES / "custom.jsonl").read_text().splitlines()[0])


def _only_record_errors(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except RecordError as e:
        assert e.file and str(e)


@SETTINGS
@given(mutated(PACIFIC_DIALOGUE))
def test_pacific_parser_never_crashes(d):
    _only_record_errors(pacific.dialogue_records, d, file="f.json", index=0, max_chars=500)
    _only_record_errors(pacific.unlabeled_records, d, file="f.json", index=0, max_chars=500)


@SETTINGS
@given(mutated(ABG_EXAMPLE))
def test_abg_coqa_parser_never_crashes(ex):
    _only_record_errors(abg_coqa.example_record, ex, file="f.json", index=0, max_chars=500)


@SETTINGS
@given(mutated(CUSTOM_LINE))
def test_custom_parser_never_crashes(obj):
    _only_record_errors(custom.conversation_records, obj, file="f.jsonl", line=1, max_chars=500)


@SETTINGS
@given(st.binary(max_size=200))
def test_jsonl_reader_never_crashes_on_bytes(tmp_path, data):
    f = tmp_path / "x.jsonl"
    f.write_bytes(data)
    _only_record_errors(lambda: list(read_jsonl(f)))


ROW = custom.conversation_records(CUSTOM_LINE, file="f", line=1, max_chars=500)[1][0].to_row()


@SETTINGS
@given(mutated(ROW))
def test_stored_row_validation_never_crashes(row):
    _only_record_errors(validate_row, row, file="rows", index=0)


# ------------------------------------------------------------------------------------ scorers
def _branch(answers, target=""):
    return Branch(intent="", reply=None, target=target, answers=answers)


@SETTINGS
@given(TEXT, st.lists(TEXT, min_size=1, max_size=3), st.sampled_from(["", "thousand", "million", "percent"]),
       st.sampled_from(["span", "multi-span", "arithmetic", "count", "question", "bogus"]))
def test_pacific_score_in_unit_interval(prediction, answers, scale, kind):
    b = Branch(intent="", reply=None, target=answers[0], answers=answers, scale=scale)
    d = score_detail("pacific", prediction, b, {"answer_type": kind})
    assert 0.0 <= d.score <= 1.0 and (d.em is None or 0.0 <= d.em <= 1.0)


@SETTINGS
@given(TEXT, st.lists(TEXT, min_size=0, max_size=3), TEXT)
def test_abg_coqa_score_in_unit_interval(prediction, answers, target):
    d = score_detail("abg_coqa", prediction, _branch(answers, target), {})
    assert 0.0 <= d.score <= 1.0


@pytest.fixture(scope="module")
def db_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dbs")
    (root / "shop").mkdir()
    conn = sqlite3.connect(root / "shop" / "shop.sqlite")
    conn.executescript("CREATE TABLE item(id INTEGER, name TEXT, price REAL);"
                       "INSERT INTO item VALUES (1, 'pen', 1.5), (2, 'ink', 3.0), (3, 'pad', 1.5);")
    conn.commit()
    conn.close()
    return root


SQL_PIECES = st.lists(st.sampled_from([
    "SELECT", "name", "price", "id", "*", "FROM", "item", "WHERE", ">", "1", "'pen'", ",", "(", ")", "ORDER BY",
    "DESC", "INTERSECT", "UNION", "count(*)", "DISTINCT", ";", "```sql", "```", "LIMIT", "ATTACH", "VACUUM",
    "randomblob(99999999)", "WITH", "x", "AS", "\n", "SELEC", "'", '"',
]), max_size=14).map(" ".join)


@SETTINGS
@given(SQL_PIECES | TEXT, st.sampled_from(["SELECT name FROM item", "SELECT price, name FROM item ORDER BY price",
                                           "SELECT count(*) FROM item", "SELECT name FROM item WHERE id > 9"]))
def test_sql_score_in_unit_interval(db_dir, prediction, gold):
    d = score_detail("ambigsql", prediction, _branch([gold], gold), {"db_id": "shop"}, db_dir=db_dir, timeout_s=1.0)
    assert 0.0 <= d.score <= 1.0
    assert d.status in ("ok", "mismatch", "error", "timeout", "vacuous", "empty")
    assert isinstance(extract_sql(prediction), str)


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from("ab")), max_size=5), st.randoms())
def test_column_order_free_match_is_permutation_invariant(rows, rnd):
    swapped = [(b, a) for a, b in rows]
    assert same_rows(rows, swapped, ordered=False, column_order_matters=False)
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    assert same_rows(rows, shuffled, ordered=False, column_order_matters=False)
