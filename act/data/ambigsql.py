"""AmbigSQL: under-specified text-to-SQL requests built from Spider, seeded and checked.

The paper's AmbigSQL was not released, so it is rebuilt here from Spider questions, each an
unambiguous (question, SQL, database) triple. A seeded share of them (`ambiguous_fraction`) is
made under-specified by one of these perturbations, chosen among those that apply to the
question so the types stay balanced:

- `filter_value`:  a WHERE value said in the question is replaced by "a certain <column>"
  ("singers from France" -> "singers from a certain country"); the user's reply names the value.
- `ambiguous_column`: the one column the query returns is replaced by "details"/"information"
  ("the names of singers" -> "the details of singers"); the clarifying question offers the
  column and other columns of the same table; alternatives return those columns.
- `order_limit`: the ordering direction is dropped, either an explicit "in descending order"
  or a superlative over ORDER BY ... LIMIT 1 ("the oldest singer" -> "the most extreme
  singer"); the alternative resolution flips ASC/DESC.
- `aggregation`: the aggregate word of AVG/MIN/MAX/SUM is dropped ("the average age" -> "the
  age"); alternatives apply the other aggregates.

Each ambiguous record is a CLARIFY turn: the gold clarifying question, and one Branch per
resolution (Branch 0: the user's reply restoring the original request, target = the original
SQL; further branches: another reasonable reply and the SQL that answers it, kept only when it
executes and returns a different result). Untouched questions are ANSWER turns with their SQL as
the gold response. Every gold SQL is executed at ingest on a read-only connection under a time
limit; one that fails is a bad record (`ingest.on_error`). A question whose gold result is empty
or a lone 0/NULL is dropped and counted (`BuildStats.vacuous_gold`): it cannot tell a right
query from one that finds nothing. `meta` carries `db_id`,
`ambiguity_type` ("none" for originals), `source_question` and `source_index`.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from act.actions import Action
from act.data.bad_records import BadRecords
from act.data.sqldb import QueryError, db_path, execute, render_schema, same_result
from act.errors import RecordError
from act.io import read_json
from act.metrics.sql import is_vacuous
from act.records import Branch, TurnRecord

QUESTIONS_FILE = "dev_subset.json"
TABLES_FILE = "tables.json"
TYPES = ("filter_value", "ambiguous_column", "order_limit", "aggregation")
MAX_ALTERNATIVES = 2


@dataclass
class Perturbation:
    type: str
    question: str
    """The under-specified request the user sends."""
    clarification: str
    """The gold clarifying question."""
    resolutions: list[tuple[str, str]] = field(default_factory=list)
    """(user reply, SQL) pairs; [0] restores the original request with the original SQL."""


@dataclass(frozen=True)
class Source:
    question: str
    sql: str
    table: dict
    """The database's `tables.json` entry."""


# ------------------------------------------------------------------------------ schema lookups
def _aliases(sql: str) -> dict[str, str]:
    return {a.lower(): t for t, a in re.findall(r"\b(\w+)\s+AS\s+(\w+)", sql, re.I)}


def _column_natural(table: dict, table_name: str, column: str) -> str | None:
    names = [t.lower() for t in table["table_names_original"]]
    if table_name.lower() not in names:
        return None
    ti = names.index(table_name.lower())
    for (t, orig), (_, natural) in zip(table["column_names_original"], table["column_names"]):
        if t == ti and orig.lower() == column.lower():
            return natural
    return None


def _table_of(sql: str, qualified: str, table: dict) -> str | None:
    """The table a (possibly alias-qualified) column of `sql` belongs to, when unambiguous."""
    if "." in qualified:
        alias = qualified.split(".")[0]
        return _aliases(sql).get(alias.lower(), alias)
    column = qualified.lower()
    named = {t.lower() for t in re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", sql, re.I)}
    having = {t for t in named if _column_natural(table, t, column)}
    return having.pop() if len(having) == 1 else None


def _word(text: str, phrase: str) -> re.Pattern:
    return re.compile(rf"(?<![\w.]){re.escape(phrase)}(?![\w])", re.I)


def _tidy(text: str) -> str:
    return re.sub(r"\s+([?.,])", r"\1", re.sub(r"\s{2,}", " ", text)).strip()


# ---------------------------------------------------------------------------- perturbations
_FILTER = re.compile(
    r"""\b(?:WHERE|AND|OR)\s+((?:\w+\.)?\w+)\s*(=|!=|>=|<=|>|<)\s*("([^"]*)"|'([^']*)'|(-?\d+(?:\.\d+)?))""",
    re.I,
)


def filter_value(src: Source, rng: random.Random) -> Perturbation | None:
    for m in _FILTER.finditer(src.sql):
        column, op = m.group(1), m.group(2)
        value = next(g for g in m.group(4, 5, 6) if g is not None)
        if len(value.strip()) < 2 and not value.isdigit():
            continue
        table = _table_of(src.sql, column, src.table)
        natural = table and _column_natural(src.table, table, column.split(".")[-1])
        if not natural:
            continue
        # The same column filtered twice ("grade 9 or 10") stays half-specified: skip it.
        if sum(1 for f in _FILTER.finditer(src.sql) if f.group(1).split(".")[-1].lower() == column.split(".")[-1].lower()) > 1:
            continue
        # Swallow a preceding article or the column's own name ("the city Anthony", "a dog").
        lead = rf"(?:\b(?:a|an|the)\s+)?(?:\b(?:{re.escape(natural)}|{re.escape(natural.split()[-1])})\s+)?"
        hits = list(re.finditer(rf"""{lead}["']?{_word(src.question, value).pattern}["']?""", src.question, re.I))
        if len(hits) != 1:
            continue
        h = hits[0]
        question = _tidy(src.question[: h.start()] + f"a certain {natural}" + src.question[h.end():])
        if _word(question, value).search(question):
            continue
        ask = f"Which {natural} do you mean?" if op == "=" else f"What {natural} should I compare against?"
        return Perturbation("filter_value", question, ask, [(f"I mean {value}.", src.sql)])
    return None


_SELECT_ONE = re.compile(r"^\s*SELECT\s+(DISTINCT\s+)?((?:\w+\.)?(\w+))\s+FROM\b", re.I)


def ambiguous_column(src: Source, rng: random.Random) -> Perturbation | None:
    m = _SELECT_ONE.match(src.sql)
    if not m or m.group(3) == "*":
        return None
    table = _table_of(src.sql, m.group(2), src.table)
    natural = table and _column_natural(src.table, table, m.group(3))
    if not natural:
        return None
    plural = _word(src.question, natural + "s")
    singular = _word(src.question, natural)
    hits_p, hits_s = plural.findall(src.question), singular.findall(src.question)
    if len(hits_p) + len(hits_s) != 1:
        return None
    question = _tidy(plural.sub("details", src.question) if hits_p else singular.sub("information", src.question))
    ti = [t.lower() for t in src.table["table_names_original"]].index(table.lower())
    others = [
        (orig, nat)
        for (t, orig), (_, nat) in zip(src.table["column_names_original"], src.table["column_names"])
        if t == ti and orig.lower() != m.group(3).lower() and not nat.lower().endswith(" id") and nat.lower() != "id"
    ]
    if not others:
        return None
    rng.shuffle(others)
    others = others[:MAX_ALTERNATIVES]
    options = [natural] + [nat for _, nat in others]
    rng.shuffle(options)
    table_natural = src.table["table_names"][ti]
    listed = ", ".join(options[:-1]) + f" or {options[-1]}"
    ask = f"Which information about the {table_natural} do you want: {listed}?"
    prefix = m.group(2)[: -len(m.group(3))]
    resolutions = [(f"The {natural}.", src.sql)]
    for orig, nat in others:
        alt = src.sql[: m.start(2)] + prefix + orig + src.sql[m.end(2):]
        resolutions.append((f"The {nat}.", alt))
    return Perturbation("ambiguous_column", question, ask, resolutions)


_DIRECTION = re.compile(
    r",?\s*\b(?:(?:sorted|ordered|listed|sort|order)\s+)?(?:in\s+)?(?:an?\s+)?(descending|ascending|decreasing|increasing)(?:\s+order)?\b",
    re.I,
)
_SUPERLATIVES = {
    "highest": "lowest", "lowest": "highest", "largest": "smallest", "smallest": "largest",
    "biggest": "smallest", "oldest": "youngest", "youngest": "oldest", "longest": "shortest",
    "shortest": "longest", "earliest": "latest", "latest": "earliest",
}


def _flip_order(sql: str) -> str | None:
    if len(re.findall(r"\bORDER\s+BY\b", sql, re.I)) != 1:
        return None
    head, tail = re.split(r"\bORDER\s+BY\b", sql, flags=re.I)
    dirs = re.findall(r"\b(ASC|DESC)\b", tail, re.I)
    if len(dirs) > 1:
        return None
    if dirs:
        flipped = re.sub(r"\b(ASC|DESC)\b", lambda d: "ASC" if d.group(1).upper() == "DESC" else "DESC", tail, flags=re.I)
    else:
        m = re.search(r"\bLIMIT\b", tail, re.I)
        flipped = tail[: m.start()].rstrip() + " DESC " + tail[m.start():] if m else tail.rstrip() + " DESC"
    return f"{head}ORDER BY{flipped}"


def order_limit(src: Source, rng: random.Random) -> Perturbation | None:
    flipped = _flip_order(src.sql)
    if flipped is None:
        return None
    words = _DIRECTION.findall(src.question)
    # "alphabetical order" already fixes the direction, so dropping "ascending" changes nothing.
    if len(words) == 1 and not re.search(r"alphabetic", src.question, re.I):
        word = words[0].lower()
        opposite = {"descending": "ascending", "ascending": "descending", "decreasing": "increasing", "increasing": "decreasing"}[word]
        question = _tidy(_DIRECTION.sub("", src.question))
        ask = f"Should the results be in {' or '.join(sorted([word, opposite]))} order?"
        return Perturbation("order_limit", question, ask, [(f"In {word} order.", src.sql), (f"In {opposite} order.", flipped)])
    if re.search(r"\bLIMIT\s+1\b", src.sql, re.I):
        found = [w for w in _SUPERLATIVES if _word(src.question, w).search(src.question)]
        if len(found) == 1 and len(_word(src.question, found[0]).findall(src.question)) == 1:
            word, opposite = found[0], _SUPERLATIVES[found[0]]
            question = _tidy(_word(src.question, word).sub("most extreme", src.question))
            a, b = sorted([word, opposite])
            return Perturbation("order_limit", question, f"Do you mean the {a} or the {b}?",
                                [(f"The {word}.", src.sql), (f"The {opposite}.", flipped)])
    return None


_AGG_WORDS = {"avg": ("average", "mean"), "max": ("maximum",), "min": ("minimum",), "sum": ("total", "sum")}
_AGG_NAMES = {"avg": "average", "max": "maximum", "min": "minimum", "sum": "total"}


def aggregation(src: Source, rng: random.Random) -> Perturbation | None:
    select = re.split(r"\bFROM\b", src.sql, maxsplit=1, flags=re.I)[0]
    funcs = re.findall(r"\b(avg|max|min|sum)\s*\(", select, re.I)
    if len(funcs) != 1 or len(re.findall(r"\b(avg|max|min|sum)\s*\(", src.sql, re.I)) != 1:
        return None
    f = funcs[0].lower()
    hits = [(w, m) for w in _AGG_WORDS[f] for m in _word(src.question, w).finditer(src.question)]
    if len(hits) != 1:
        return None
    w, m = hits[0]
    question = _tidy(src.question[: m.start()] + src.question[m.end():])
    question = re.sub(r"\ban\s+(?=[^aeiou\W])", "a ", question, flags=re.I)
    inner = re.search(rf"\b{f}\s*\(\s*((?:\w+\.)?(\w+))\s*\)", src.sql, re.I)
    table = inner and _table_of(src.sql, inner.group(1), src.table)
    natural = (table and _column_natural(src.table, table, inner.group(2))) or "value"
    ask = f"Which statistic of the {natural} do you want: the average, minimum, maximum or total?"
    resolutions = [(f"The {_AGG_NAMES[f]}.", src.sql)]
    others = [g for g in _AGG_NAMES if g != f]
    rng.shuffle(others)
    for g in others[:MAX_ALTERNATIVES]:
        alt = re.sub(rf"\b{f}\s*\(", f"{g.upper()}(", src.sql, count=1, flags=re.I)
        resolutions.append((f"The {_AGG_NAMES[g]}.", alt))
    return Perturbation("aggregation", question, ask, resolutions)


PERTURBATIONS: dict[str, Callable[[Source, random.Random], Perturbation | None]] = {
    "filter_value": filter_value,
    "ambiguous_column": ambiguous_column,
    "order_limit": order_limit,
    "aggregation": aggregation,
}


# ------------------------------------------------------------------------------------- build
@dataclass
class BuildStats:
    alternatives_kept: int = 0
    alternatives_dropped: int = 0
    not_applicable: int = 0
    """Questions drawn for perturbation to which no enabled type applied (kept as ANSWER)."""
    vacuous_gold: int = 0
    """Questions dropped because their gold SQL returns nothing or a lone 0/NULL: any query that
    finds nothing would match it, so a match proves nothing (`act.metrics.sql.is_vacuous`)."""


def _check_alternatives(p: Perturbation, gold_rows: list, path: Path, timeout_s: float, stats: BuildStats) -> None:
    kept = [p.resolutions[0]]
    results = [gold_rows]
    for reply, sql in p.resolutions[1:]:
        try:
            rows = execute(path, sql, timeout_s=timeout_s)
        except QueryError:
            rows = None
        # An alternative that fails, returns nothing, or returns what another resolution returns
        # is no real choice.
        if rows is None or is_vacuous(rows) or any(same_result(rows, r) for r in results):
            stats.alternatives_dropped += 1
            continue
        kept.append((reply, sql))
        results.append(rows)
        stats.alternatives_kept += 1
    p.resolutions = kept


def _load_tables(tfile: Path) -> dict[str, dict]:
    """`tables.json` by db_id, each entry checked: the schema lists must be lists of the right
    shape and the column lists must have one entry per column."""
    raw = read_json(tfile)
    if not isinstance(raw, list):
        raise RecordError(str(tfile), None, None, f"expected a list of databases, got {type(raw).__name__}")
    tables: dict[str, dict] = {}
    for i, t in enumerate(raw):
        if not isinstance(t, dict):
            raise RecordError(str(tfile), i, None, "expected an object")
        if not isinstance(t.get("db_id"), str):
            raise RecordError(str(tfile), i, "db_id", "missing field" if "db_id" not in t else "expected a str")
        where = f"{i} ({t['db_id']})"
        for key in ("table_names_original", "column_names_original", "column_names", "column_types"):
            if key not in t:
                raise RecordError(str(tfile), where, key, "missing field")
            if not isinstance(t[key], list):
                raise RecordError(str(tfile), where, key, f"expected a list, got {type(t[key]).__name__}")
        n_tables, n_cols = len(t["table_names_original"]), len(t["column_names_original"])
        for key in ("column_names", "column_types"):
            if len(t[key]) != n_cols:
                raise RecordError(str(tfile), where, key,
                                  f"{len(t[key])} entries for {n_cols} columns in column_names_original")
        for key in ("column_names_original", "column_names"):
            for j, c in enumerate(t[key]):
                if not (isinstance(c, list) and len(c) == 2 and isinstance(c[0], int) and isinstance(c[1], str)
                        and -1 <= c[0] < n_tables):
                    raise RecordError(str(tfile), where, f"{key}[{j}]",
                                      f"expected [table index < {n_tables}, name], got {c!r}")
        for key in ("primary_keys", "foreign_keys"):
            entries = t.get(key) or []
            if not isinstance(entries, list):
                raise RecordError(str(tfile), where, key, f"expected a list, got {type(entries).__name__}")
            for x in entries:
                flat = x if isinstance(x, list) else [x]
                if (key == "foreign_keys" and len(flat) != 2) or any(
                        isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < n_cols for v in flat):
                    raise RecordError(str(tfile), where, key,
                                      f"bad entry {x!r}: column indexes in [0, {n_cols})" +
                                      (", in pairs" if key == "foreign_keys" else ""))
        tables[t["db_id"]] = t
    return tables


def build(
    raw: str | Path,
    *,
    seed: int,
    ambiguity_types: tuple[str, ...] = TYPES,
    ambiguous_fraction: float = 0.5,
    query_timeout_s: float = 5.0,
    bad: BadRecords,
    max_context_chars: int = 6000,
    databases: str | Path | None = None,
    stats: BuildStats | None = None,
) -> list[tuple[str, TurnRecord]]:
    """(database, record) pairs: the database is the unit of the train/eval split."""
    raw = Path(raw)
    databases = Path(databases) if databases else raw / "database"
    stats = stats if stats is not None else BuildStats()
    unknown = sorted(set(ambiguity_types) - set(TYPES))
    if unknown:
        raise ValueError(f"unknown ambiguity type(s) {unknown}; known: {list(TYPES)}")
    qfile, tfile = raw / QUESTIONS_FILE, raw / TABLES_FILE
    questions = read_json(qfile)
    if not isinstance(questions, list):
        raise RecordError(str(qfile), None, None, "expected a list of questions")
    tables = _load_tables(tfile)
    rng = random.Random(f"{seed}:ambigsql:perturb")
    order = list(range(len(questions)))
    rng.shuffle(order)
    usable: list[tuple[int, str, Source, Path, list]] = []
    for idx in order:
        with bad.guard():
            x = questions[idx]
            if not isinstance(x, dict):
                raise RecordError(str(qfile), idx, None, "expected an object")
            for key in ("db_id", "question", "query"):
                if not isinstance(x.get(key), str) or not x[key].strip():
                    raise RecordError(str(qfile), idx, key, "missing field" if key not in x else "expected a non-empty str")
            db_id, question, sql = x["db_id"], x["question"].strip(), x["query"].strip()
            if db_id not in tables:
                raise RecordError(str(qfile), idx, "db_id", f"database {db_id!r} not in {tfile}")
            path = db_path(databases, db_id)
            try:
                gold_rows = execute(path, sql, timeout_s=query_timeout_s)
            except QueryError as e:
                raise RecordError(str(qfile), idx, "query", f"gold SQL does not execute on {path}: {e}") from None
            if is_vacuous(gold_rows):
                stats.vacuous_gold += 1
                continue
            usable.append((idx, db_id, Source(question, sql, tables[db_id]), path, gold_rows))
    target = round(ambiguous_fraction * len(usable))
    used: Counter[str] = Counter()
    out: list[tuple[int, str, TurnRecord]] = []
    for idx, db_id, src, path, gold_rows in usable:
        pert = None
        if sum(used.values()) < target:
            found = [p for t in ambiguity_types if (p := PERTURBATIONS[t](src, rng)) is not None]
            if found:
                least = min(used[p.type] for p in found)
                pert = rng.choice([p for p in found if used[p.type] == least])
                _check_alternatives(pert, gold_rows, path, query_timeout_s, stats)
                used[pert.type] += 1
            else:
                stats.not_applicable += 1
        out.append((idx, db_id, _record(idx, db_id, src, pert, max_context_chars)))
    out.sort(key=lambda t: t[0])
    return [(db, r) for _, db, r in out]


def _record(idx: int, db_id: str, src: Source, pert: Perturbation | None, max_chars: int) -> TurnRecord:
    meta = {"db_id": db_id, "ambiguity_type": pert.type if pert else "none",
            "source_question": src.question, "source_index": idx}
    common = dict(id=f"ambigsql/{idx}", dataset="ambigsql", conversation_id=f"spider-dev-{idx}", split="train",
                  context=render_schema(src.table)[:max_chars], meta=meta)
    if pert is None:
        return TurnRecord(**common, messages=[{"role": "user", "content": src.question}], gold_response=src.sql,
                          gold_action=Action.ANSWER.value,
                          branches=[Branch(intent=src.question, reply=None, target=src.sql, answers=[src.sql])])
    branches = [
        Branch(intent=src.question if k == 0 else f"{pert.question} {reply}", reply=reply, target=sql, answers=[sql])
        for k, (reply, sql) in enumerate(pert.resolutions)
    ]
    return TurnRecord(**common, messages=[{"role": "user", "content": pert.question}],
                      gold_response=pert.clarification, gold_action=Action.CLARIFY.value, branches=branches)
