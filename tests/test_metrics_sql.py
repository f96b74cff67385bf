"""SQL execution match (AmbigSQL) on a small database built in each test."""

import os
import sqlite3
import time

import pytest

from act.metrics.sql import _SANDBOX, DatabaseUnavailable, execute, execution_match, extract_sql, same_rows


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "shop" / "shop.sqlite"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE item(id INTEGER, name TEXT, price REAL);
        INSERT INTO item VALUES (1, 'pen', 1.5), (2, 'ink', 3.0), (3, 'pad', 1.5);
        """
    )
    conn.commit()
    conn.close()
    return path


def test_same_rows_in_other_order_match_without_order_by(db):
    """Gold has no ORDER BY, so {pen, ink, pad} as a multiset equals {pad, pen, ink}."""
    r = execution_match("SELECT name FROM item ORDER BY name", "SELECT name FROM item", db)
    assert (r.status, r.score) == ("ok", 1.0)


def test_order_matters_when_gold_orders(db):
    """Gold ORDER BY price DESC: ink first. Ascending puts ink last -> same multiset, wrong order."""
    r = execution_match("SELECT name FROM item ORDER BY price", "SELECT name FROM item ORDER BY price DESC, id", db)
    assert (r.status, r.score) == ("mismatch", 0.0)
    r = execution_match("SELECT name FROM item ORDER BY price DESC, id", "SELECT name FROM item ORDER BY price DESC, id", db)
    assert r.score == 1.0


def test_multiset_counts_duplicates(db):
    """price column has 1.5 twice; DISTINCT returns it once -> {1.5, 3.0} != {1.5, 1.5, 3.0}."""
    r = execution_match("SELECT DISTINCT price FROM item", "SELECT price FROM item", db)
    assert r.status == "mismatch"


def test_float_rounding_and_int_float_equality(db):
    """AVG(price) = 2.0 as a float; the literal 2 is an int; equal after comparison."""
    assert execution_match("SELECT 2", "SELECT avg(price) FROM item", db).score == 1.0


def test_sql_error_is_counted_not_raised(db):
    r = execution_match("SELECT nme FROM item", "SELECT name FROM item", db)
    assert r.status == "error" and r.score == 0.0 and "no such column" in r.message


def test_write_is_refused_read_only(db):
    r = execution_match("DELETE FROM item", "SELECT 1", db)
    assert r.status == "error" and "not authorized" in r.message
    assert execute(db, "SELECT count(*) FROM item").rows == ((3,),)


def test_looping_recursive_cte_times_out(db):
    loop = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    start = time.monotonic()
    r = execution_match(loop, "SELECT 1", db, timeout_s=0.3)
    assert r.status == "timeout" and r.score == 0.0
    assert time.monotonic() - start < 3


def test_row_limit(db):
    r = execute(db, "SELECT * FROM item", row_limit=2)
    assert r.status == "error" and "more than 2 rows" in r.message


def test_empty_prediction(db):
    assert execution_match("", "SELECT 1", db).status == "error"
    assert execution_match("I am not sure what you mean.", "SELECT 1", db).status == "error"


def test_extract_sql_from_response():
    assert extract_sql("Here you go:\n```sql\nSELECT name FROM item;\n```") == "SELECT name FROM item"
    assert extract_sql("The query is SELECT 1;") == "SELECT 1"
    assert extract_sql("with t as (select 1) select * from t") == "with t as (select 1) select * from t"


def test_real_spider_database(root):
    db = root / "data/raw/spider/database/concert_singer/concert_singer.sqlite"
    r = execution_match("select count(*) from singer", "SELECT count(*) FROM singer", db)
    assert r.status == "ok"


# ---------------------------------------------------------------- the database must be there
def test_missing_database_is_a_stage_error_naming_the_path(tmp_path):
    missing = tmp_path / "gone" / "gone.sqlite"
    with pytest.raises(DatabaseUnavailable, match=str(missing)):
        execution_match("SELECT 1", "SELECT 1", missing)


def test_corrupt_database_is_a_stage_error_naming_the_path(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(DatabaseUnavailable, match=r"bad\.sqlite.*cannot be read"):
        execute(bad, "SELECT 1")


# ---------------------------------------------------------------- sandbox: nothing but reading
ATTACKS = {
    "vacuum_into": "VACUUM INTO '{out}'",
    "attach_new_file": "ATTACH '{out}' AS other",
    "attach_via_select": "SELECT 1 FROM item; ATTACH '{out}' AS x",
    "pragma_write": "PRAGMA journal_mode = WAL",
    "pragma_read_function": "SELECT * FROM pragma_table_info('item')",
    "load_extension": "SELECT load_extension('{out}')",
    "writefile": "SELECT writefile('{out}', 'x')",
    "create_table": "CREATE TABLE t2(x)",
    "insert": "INSERT INTO item VALUES (9, 'x', 1.0)",
    "update": "UPDATE item SET price = 0",
    "drop": "DROP TABLE item",
    "begin": "BEGIN IMMEDIATE",
    "create_temp_trigger": "CREATE TEMP TRIGGER t AFTER INSERT ON item BEGIN SELECT 1; END",
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_is_denied_and_touches_no_file(db, tmp_path, name):
    out = tmp_path / "stolen.db"
    before = db.read_bytes()
    r = execution_match(ATTACKS[name].format(out=out), "SELECT name FROM item", db)
    assert r.score == 0.0 and r.status in ("error", "mismatch")  # a mismatch: only the SELECT ran
    assert not out.exists()
    assert sorted(os.listdir(db.parent)) == ["shop.sqlite"]  # no journal, no WAL, no copy
    assert db.read_bytes() == before


@pytest.mark.parametrize("sql", [
    "SELECT randomblob(900000000)",
    "SELECT length(replace(hex(zeroblob(1e8)),'0','00'))",
    "SELECT length(group_concat(hex(randomblob(1000)))) FROM "
    "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100000) SELECT x FROM c)",
])
def test_huge_values_are_refused_at_once(db, sql):
    """Refused by the size cap ("too big" errors), not by the generous time limit (a "timeout"
    status; the issue's randomblob(900000000) ran 25-29 s and took 1.7 GB). How fast the cap
    answers is a benchmark's question, not a test's: on a loaded machine it took 15 s."""
    r = execute(db, sql, timeout_s=20.0)
    assert r.status == "error" and "too big" in r.message


def test_time_limit_holds_inside_one_expensive_call(db):
    """instr() of two long strings is quadratic inside one SQLite function call, where neither the
    progress handler nor interrupt() can act: the worker is killed just past the limit."""
    quadratic = "SELECT instr(printf('%.*c', 999000, 'a'), printf('%.*c', 499000, 'a') || 'b')"
    kills = _SANDBOX.kills
    start = time.monotonic()
    r = execute(db, quadratic, timeout_s=0.5)
    took = time.monotonic() - start
    assert r.status == "timeout" and took < 3.0, took  # the call alone runs ~5 s unloaded
    assert _SANDBOX.kills == kills + 1
    # the next query gets a fresh worker and works
    assert execute(db, "SELECT count(*) FROM item").rows == ((3,),)


# ---------------------------------------------------------------- scoring as Spider's test suite
def test_column_order_is_ignored_by_default(db):
    r = execution_match("SELECT price, name FROM item", "SELECT name, price FROM item", db)
    assert (r.status, r.score) == ("ok", 1.0)
    strict = execution_match("SELECT price, name FROM item", "SELECT name, price FROM item", db,
                             column_order_matters=True)
    assert (strict.status, strict.score) == ("mismatch", 0.0)


def test_column_permutation_must_hold_row_by_row():
    """Same column multisets, but the pairs differ: (1,a),(2,b) vs (b,1),(a,2) is no match."""
    assert same_rows([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], ordered=False, column_order_matters=False)
    assert not same_rows([(1, "a"), (2, "b")], [("b", 1), ("a", 2)], ordered=False, column_order_matters=False)
    assert not same_rows([(1, 1)], [(1,)], ordered=False, column_order_matters=False)
    # two identical columns: any mapping works
    assert same_rows([(1, 1, 2)], [(2, 1, 1)], ordered=True, column_order_matters=False)


def test_distinct_is_kept(db):
    r = execution_match("SELECT DISTINCT price FROM item", "SELECT price FROM item", db)
    assert r.status == "mismatch"


def test_extract_sql_takes_the_whole_statement():
    both = "SELECT name FROM item WHERE price > 2 INTERSECT SELECT name FROM item WHERE id < 3"
    assert extract_sql(both) == both
    assert extract_sql(f"Sure:\n{both};") == both
    # a misspelt first SELECT: the statement is the whole line, never its second half
    broken = "SELEC name FROM item WHERE price > 2 INTERSECT SELECT name FROM item WHERE id = 2"
    assert extract_sql(broken) == broken
    assert extract_sql("SELECT 1; DROP TABLE item") == "SELECT 1"
    assert extract_sql("SELECT ';' AS x; SELECT 2") == "SELECT ';' AS x"


def test_intersect_runs_whole(db):
    gold = "SELECT name FROM item WHERE price > 2 INTERSECT SELECT name FROM item WHERE id < 3"  # ink
    assert execution_match(gold, gold, db).score == 1.0
    # only the second half would return {pen, ink}: a mismatch
    assert execution_match("SELECT name FROM item WHERE id < 3", gold, db).status == "mismatch"
    broken = "SELEC name FROM item WHERE price > 2 INTERSECT SELECT name FROM item WHERE id = 2"
    assert execution_match(broken, "SELECT name FROM item WHERE id = 2", db).status == "error"


# ---------------------------------------------------------------- a vacuous gold is no evidence
@pytest.mark.parametrize("gold", [
    "SELECT name FROM item WHERE price > 100",      # no rows
    "SELECT count(*) FROM item WHERE price > 100",  # a lone 0
    "SELECT max(price) FROM item WHERE id > 100",   # a lone NULL
])
def test_vacuous_gold_never_scores_a_success(db, gold):
    r = execution_match(gold, gold, db)  # even the gold query itself
    assert (r.status, r.score) == ("vacuous", 0.0)
    assert execution_match("SELECT name FROM item WHERE id = 99", gold, db).score == 0.0
