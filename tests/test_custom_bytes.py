"""Issue 23, item 9: the custom JSONL loader driven from raw bytes. Every line, whatever its
bytes, ends as a valid record or as a `RecordError` naming the file, the line and (where there is
one) the field; `on_error: skip` skips exactly that line and goes on."""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from act.data import custom
from act.data.bad_records import BadRecords
from act.errors import RecordError
from act.records import validate_row

FIXTURE = Path(__file__).parent / "fixtures" / "custom.jsonl"
GOOD = {"id": "good", "messages": [{"role": "user", "content": "hi?"},
                                   {"role": "assistant", "content": "hello", "action": "answer"}]}
HOLE = "\u0000HOLE\u0000"


def _with(path: str, raw: bytes, base: dict | None = None) -> bytes:
    """A JSON line of `base` (default: a valid record with id "x") whose value at `path` (dots and
    [i]) is the raw bytes `raw`, spliced in after serializing."""
    obj = json.loads(json.dumps(base or {**GOOD, "id": "x"}))
    parts = path.replace("[", ".[").split(".")
    node = obj
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node.setdefault(part, {})
    last = parts[-1]
    if last.startswith("["):
        node[int(last[1:-1])] = HOLE
    else:
        node[last] = HOLE
    return json.dumps(obj).encode().replace(json.dumps(HOLE).encode(), raw)


def _load(path: Path, mode: str = "raise"):
    bad = BadRecords(mode)
    return custom.load(path, bad=bad, max_context_chars=1000), bad


BAD_LINES = [
    ("non-UTF-8 byte", _with("messages[0].content", b'"caf\xe9?"'), None, "not UTF-8"),
    ("truncated UTF-8", _with("context", b'"\xe2\x82"'), None, "not UTF-8"),
    ("UTF-8-encoded surrogate", _with("context", b'"\xed\xa0\x80"'), None, "not UTF-8"),
    ("deep nesting in meta", _with("meta.deep", b"[" * 100 + b"]" * 100), "meta.deep[0][0]...", "nested deeper"),
    ("nesting past the parser", _with("meta.deep", b"[" * 50_000 + b"]" * 50_000), None, "nested deeper"),
    ("lone surrogate", _with("messages[0].content", b'"hi \\ud800?"'), "messages[0].content", "lone surrogate"),
    ("lone low surrogate in meta", _with("meta.note", b'"\\udc00"'), "meta.note", "lone surrogate"),
    ("huge integer", _with("meta.n", b"9" * 5000), "meta.n", "64-bit"),
    ("2**63", _with("meta.n", str(2 ** 63).encode()), "meta.n", "64-bit"),
    ("NaN", _with("meta.score", b"NaN"), "meta.score", "NaN"),
    ("Infinity", _with("meta.score", b"-Infinity"), "meta.score", "Infinity"),
    ("float overflow", _with("meta.score", b"1e400"), "meta.score", "overflows"),
    ("duplicate top-level key", b'{"id": "x", "id": "y", "messages": []}', "id", "twice"),
    ("duplicate key in a turn", _with("messages[1]", b'{"role": "assistant", "content": "a", "content": "b"}'),
     "messages[1].content", "twice"),
    ("list-valued ambiguity_type", _with("meta.ambiguity_type", b'["x", "y"]'), "meta.ambiguity_type", "expected str"),
    ("non-string db_id", _with("meta.db_id", b"7"), "meta.db_id", "expected str"),
]


@pytest.mark.parametrize("line, field, problem", [b[1:] for b in BAD_LINES], ids=[b[0] for b in BAD_LINES])
def test_bad_bytes_name_file_line_and_field_and_skip_goes_on(tmp_path, line, field, problem):
    path = tmp_path / "corpus.jsonl"
    third = json.dumps({**GOOD, "id": "after"}).encode()
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + line + b"\n" + third + b"\n")
    with pytest.raises(RecordError, match=problem) as err:
        _load(path)
    e = err.value
    assert e.file == str(path) and str(e.record).startswith("line 2")
    assert e.field == field or (field.endswith("...") and e.field.startswith(field[:-3]) and e.field.endswith("..."))
    assert len(str(e)) < 500
    records, bad = _load(path, "skip")
    assert [r.conversation_id for _, r in records] == ["good", "after"] and bad.skipped == 1


def test_ids_equal_after_nfc_and_stripping_are_duplicates(tmp_path):
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({**GOOD, "id": nfc}) + "\n" + json.dumps({**GOOD, "id": nfd + " "}) + "\n")
    with pytest.raises(RecordError, match="duplicate conversation id.*line 1") as err:
        _load(path)
    assert str(err.value.record).startswith("line 2") and err.value.field == "id"


def test_groups_equal_after_nfc_and_stripping_are_one_group(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({**GOOD, "id": "a", "group": "Doc-\u00e9"}) + "\n"
                    + json.dumps({**GOOD, "id": "b", "group": " Doc-e\u0301\t"}) + "\n")
    records, _ = _load(path)
    assert len({g for g, _ in records}) == 1


def test_utf8_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\r\n" + json.dumps({**GOOD, "id": "b"}).encode()
                     + b"\r\n")
    records, _ = _load(path)
    assert [r.conversation_id for _, r in records] == ["good", "b"]


# ------------------------------------------------------------------ property: from raw bytes
VALID_LINES = [line.encode() for line in FIXTURE.read_text().splitlines() if line.strip()]
ATOMS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-" + b"9" * 30, b"9" * 5000, b'"\\ud800"', b'"a\\udfffb"',
         b"[" * 70 + b"]" * 70, b"[" * 3000 + b"]" * 3000, b'{"a": 1, "a": 2}', b'"\xff"', b"\xc3", b'"\xed\xa0\x80"',
         b'"', b"{", b"}", b"null", b"[]", b"{}", b'"clarify"', b'"answer"', b'["x"]', b"0", b'""', b'"  "',
         b"\x00", b"\\", b'"\\u0000"', b"\r", b"\xef\xbb\xbf", b'"caf\\u00e9"', b'"cafe\\u0301 "']
SETTINGS = settings(max_examples=int(os.environ.get("ACT_PROPERTY_EXAMPLES", "150")), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


def _paths(obj, prefix=""):
    """Every value's path in `_with`'s notation."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{prefix}.{k}" if prefix else k
            yield p
            yield from _paths(v, p)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            p = f"{prefix}[{i}]"
            yield p
            yield from _paths(v, p)


@st.composite
def spliced_line(draw):
    """A valid line with one value replaced by a raw atom (structure kept, value hostile)."""
    base = json.loads(draw(st.sampled_from(VALID_LINES)))
    path = draw(st.sampled_from(list(_paths(base))))
    return _with(path, draw(st.sampled_from(ATOMS)), base)


@st.composite
def mangled_line(draw):
    """A valid line cut, or with atoms or random bytes written over it at random places."""
    line = bytearray(draw(st.sampled_from(VALID_LINES)))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(line)))
        new = draw(st.one_of(st.sampled_from(ATOMS), st.binary(min_size=1, max_size=4)))
        cut = draw(st.integers(0, 3))
        line[at:at + cut] = new
    if draw(st.booleans()):
        line = line[: draw(st.integers(0, len(line)))]
    return bytes(line)


LINE = st.one_of(st.sampled_from(VALID_LINES), spliced_line(), mangled_line(),
                 st.binary(max_size=60), st.sampled_from(ATOMS)).map(lambda b: b.replace(b"\n", b" "))


@SETTINGS
@given(st.lists(LINE, min_size=1, max_size=5))
def test_any_bytes_give_valid_records_or_errors_naming_file_and_line(tmp_path, lines):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    counted = [i for i, b in enumerate(lines, 1) if b.strip()]
    # raise mode: records, or one error naming this file and a non-blank line
    try:
        records, _ = _load(path)
    except RecordError as e:
        assert e.file == str(path) and len(str(e)) < 1000
        line = int(str(e.record).split()[1])
        assert str(e.record).startswith("line ") and line in counted
    else:
        assert len({r.conversation_id for _, r in records}) == len(counted)
    # skip mode: each non-blank line is either loaded or skipped, and what is loaded is valid
    records, bad = _load(path, "skip")
    loaded = {custom.same_id(r.conversation_id) for _, r in records}
    assert len(loaded) + bad.skipped == len(counted)
    for _, r in records:
        row = r.to_row()
        json.dumps(row, allow_nan=False, ensure_ascii=False).encode("utf-8")  # storable as is
        assert validate_row(row, file="rows", index=0) == r


# ------------------------------------------------------------------ the ingest stage end to end
def test_ingest_stage_names_the_line_and_skip_keeps_the_rest(tmp_path):
    from act.params import load_params
    from stages import ingest

    root = Path(__file__).resolve().parents[1]
    good = [json.dumps({**GOOD, "id": f"g{i}", "group": g, "meta": {"ambiguity_type": "none"}}).encode()
            for i, g in enumerate(["doc-a", " doc-a", "doc-b", "doc-b\t"])]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b"\n".join([good[0], good[1], b'{"id": "bad\xff"}',
                                   _with("meta.ambiguity_type", b'["x"]', {**GOOD, "id": "lst"}), good[2], good[3]]) + b"\n")

    def run(**over):
        params = load_params(root / "params.yaml", {"tracking.enabled": False, "ingest.custom.eval_fraction": 0.5, **over})
        return ingest.run(params, dataset="custom", raw=corpus, out=tmp_path / "out", metrics_path=tmp_path / "m.json")

    with pytest.raises(RecordError, match="not UTF-8") as err:
        run()
    assert err.value.file == str(corpus) and err.value.record == "line 3"
    m = run(**{"ingest.on_error": "skip"})
    assert m["skipped"] == 2 and m["records"] == 4
    assert set(m["skipped_by_field"]) == {"record", "meta.ambiguity_type"}
    assert sum(m["splits"][s]["groups"] for s in ("train", "eval")) == 2  # "doc-a" and " doc-a" are one group
