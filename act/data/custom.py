"""Your own corpus: a JSONL conversation format, validated strictly.

One conversation per line:

    {"id": "conv-1",                        # unique, required
     "context": "text the assistant may use", # optional grounding context (default "")
     "group": "doc-7",                       # optional split unit (default: the id); conversations
                                             #   sharing a group never straddle train and eval
     "meta": {...},                          # optional, copied to every record
     "messages": [                           # alternating user/assistant turns, user first
       {"role": "user", "content": "How much did sales grow?"},
       {"role": "assistant", "content": "Which segment do you mean?", "action": "clarify"},
       {"role": "user", "content": "Sensors.", "intent": "How much did Sensors sales grow?"},
       {"role": "assistant", "content": "4%", "action": "answer", "answers": ["4%", "4 percent"]}]}

Every assistant turn becomes one record (the conversation up to the user turn before it).
`action` ("clarify" | "answer") is optional: without it the turn is unlabeled and
`annotate` labels it with the annotator role. A user turn may carry `intent`, the fully specified
request (default: its content). An assistant turn may carry `answers`, the reference answers
(default: its content). A CLARIFY turn must be followed by the user's reply and an assistant
turn: that pair is the record's Branch (reply, target, intent of the reply turn).

Each line is decoded (UTF-8; a BOM on the first line is allowed) and parsed inside the
`ingest.on_error` guard, so every problem, whatever the bytes, is a `RecordError` naming the file,
the line and the field, and `skip` skips just that line. Refused as well as malformed structure:
bytes that are not UTF-8, nesting deeper than `MAX_DEPTH`, lone surrogates (`"\\ud800"`),
integers outside 64 bits, NaN / Infinity / floats that overflow, a key given twice in one object,
and a non-string `meta` field the pipeline reads (`ambiguity_type`, `db_id`, `answer_type`, ...).
Conversation ids (and groups) are compared after Unicode NFC normalization and stripping, so
"caf\u00e9" and "cafe\u0301 " are one id, and one group never straddles the splits.
"""

from __future__ import annotations

import json
import math
import unicodedata
from pathlib import Path
from typing import Any

from act.actions import Action
from act.data.bad_records import BadRecords
from act.errors import RecordError
from act.records import Branch, TurnRecord

_KEYS = {"id", "context", "group", "meta", "messages"}
_TURN_KEYS = {"user": {"role", "content", "intent"}, "assistant": {"role", "content", "action", "answers"}}
_META_STR = ("ambiguity_type", "db_id", "answer_type", "final_answer_type", "alt_clarification")
"""`meta` fields the pipeline reads (counts, scoring): when present they must be strings."""
MAX_DEPTH = 64
"""Deepest nesting of objects and lists accepted in one line (a record needs 4)."""
_INT_RANGE = (-(2 ** 63), 2 ** 63)


def same_id(value: str) -> str:
    """The form in which ids and groups are compared: NFC-normalized and stripped."""
    return unicodedata.normalize("NFC", value).strip()


def _short(value: Any, n: int = 60) -> str:
    """`value` for an error message, never longer than about `n` characters."""
    text = value if isinstance(value, str) else repr(value)
    text = text if len(text) <= n else text[:n] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")  # a lone surrogate stays printable


# -- one line: bytes -> a checked JSON value ------------------------------------------------------
class _Bad:
    """A JSON value the parser met but the format refuses (NaN, an overflowing number); replaced
    in place so `_check_tree` can name the field it sits in."""

    def __init__(self, why: str):
        self.why = why


class _Pairs(dict):
    """An object whose members were given with a key twice (`twice` names it)."""

    twice: str = ""


def _object(pairs: list[tuple[str, Any]]) -> dict:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    twice = next(k for k, _ in pairs if k in seen or seen.add(k))
    out = _Pairs(obj)
    out.twice = twice
    return out


def _integer(text: str) -> Any:
    value = int(text) if len(text) <= 20 else None
    if value is None or not _INT_RANGE[0] <= value < _INT_RANGE[1]:
        return _Bad(f"integer of {len(text.lstrip('-'))} digits is outside the 64-bit range")
    return value


def _float(text: str) -> Any:
    value = float(text)
    return value if math.isfinite(value) else _Bad(f"number {_short(text, 30)} overflows a float")


def _constant(name: str) -> Any:
    return _Bad(f"{name} is not a JSON number")


def decode_line(raw: bytes, *, file: str, line: int) -> Any:
    """The JSON value of one line of bytes, or a `RecordError` naming the file, line and field."""
    where = f"line {line}"
    try:
        text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(file, where, None, f"not UTF-8: byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line "
                          "(save the file as UTF-8)") from None
    try:
        obj = json.loads(text, object_pairs_hook=_object, parse_int=_integer, parse_float=_float,
                         parse_constant=_constant)
    except json.JSONDecodeError as e:
        raise RecordError(file, where, None, f"invalid JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise RecordError(file, where, None, f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
    _check_tree(obj, file=file, where=where)
    return obj


def _check_tree(obj: Any, *, file: str, where: str) -> None:
    """Walks the parsed line (iteratively, in document order) for what `json` lets through: a
    refused value, a duplicated key, a lone surrogate, nesting deeper than `MAX_DEPTH`."""
    if isinstance(obj, dict) and isinstance(obj.get("id"), str):
        where = f"{where} ({_short(obj['id'])})"
    stack: list[tuple[Any, str, int]] = [(obj, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        field = path or None
        if isinstance(value, _Bad):
            raise RecordError(file, where, field, value.why)
        if isinstance(value, str):
            if not _encodable(value):
                raise RecordError(file, where, field, "lone surrogate (a \\ud800-\\udfff escape that is not "
                                  "half of a pair): not valid Unicode")
            continue
        if not isinstance(value, (dict, list)):
            continue
        if depth >= MAX_DEPTH:
            raise RecordError(file, where, _short(path, 60), f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, _Pairs):
            raise RecordError(file, where, _join(path, value.twice), "key given twice in one object")
        if isinstance(value, dict):
            children = []
            for k, v in value.items():
                if not _encodable(k):
                    raise RecordError(file, where, path or None, "a key has a lone surrogate: not valid Unicode")
                children.append((v, _join(path, k), depth + 1))
        else:
            children = [(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        stack.extend(reversed(children))


def _join(path: str, key: str) -> str:
    key = _short(key, 40)
    return f"{path}.{key}" if path else key


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def conversation_records(obj: Any, *, file: str, line: int, max_chars: int) -> tuple[str, list[TurnRecord]]:
    where = f"line {line}"
    if not isinstance(obj, dict):
        raise RecordError(file, where, None, f"expected an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise RecordError(file, where, _short(unknown[0], 40), f"unknown field; expected {sorted(_KEYS)}")
    cid = obj.get("id")
    if not isinstance(cid, str) or not cid.strip():
        raise RecordError(file, where, "id", "missing field" if "id" not in obj else "expected a non-empty str")
    rid = f"{where} ({_short(cid)})"
    context = obj.get("context", "")
    if not isinstance(context, str):
        raise RecordError(file, rid, "context", "expected str")
    group = obj.get("group", cid)
    if not isinstance(group, str) or not group.strip():
        raise RecordError(file, rid, "group", "expected a non-empty str")
    group = same_id(group)
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise RecordError(file, rid, "meta", "expected object")
    for k in _META_STR:
        if k in meta and not isinstance(meta[k], str):
            raise RecordError(file, rid, f"meta.{k}", f"expected str, got {type(meta[k]).__name__}")
    turns = obj.get("messages")
    if not isinstance(turns, list):
        raise RecordError(file, rid, "messages", "missing field" if turns is None else "expected a list")
    if not turns:
        raise RecordError(file, rid, "messages", "empty conversation")
    for i, t in enumerate(turns):
        f = f"messages[{i}]"
        if not isinstance(t, dict):
            raise RecordError(file, rid, f, "expected object")
        role = t.get("role")
        if not isinstance(role, str) or role not in _TURN_KEYS:
            raise RecordError(file, rid, f"{f}.role", f"unknown role {_short(repr(role))}; expected 'user' or 'assistant'")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise RecordError(file, rid, f"{f}.role", f"expected {expected!r}: turns alternate, user first")
        extra = sorted(set(t) - _TURN_KEYS[role])
        if extra:
            raise RecordError(file, rid, f"{f}.{_short(extra[0], 40)}", f"unknown field for a {role} turn")
        if not isinstance(t.get("content"), str) or not t["content"].strip():
            raise RecordError(file, rid, f"{f}.content", "expected a non-empty str")
        if "intent" in t and not isinstance(t["intent"], str):
            raise RecordError(file, rid, f"{f}.intent", "expected str")
        if "answers" in t and (not isinstance(t["answers"], list) or not all(isinstance(a, str) for a in t["answers"])):
            raise RecordError(file, rid, f"{f}.answers", "expected a list of str")
        if t.get("action") is not None:
            try:
                Action.parse(t["action"])
            except ValueError as e:
                said = str(e) if len(str(e)) <= 200 else f"unknown action {_short(repr(t['action']))}"
                raise RecordError(file, rid, f"{f}.action", said) from None
    if len(turns) < 2:
        raise RecordError(file, rid, "messages", "no assistant turn to learn from")
    records = []
    for i in range(1, len(turns), 2):
        user, reply_turn = turns[i - 1], turns[i]
        action = Action.parse(reply_turn["action"]) if reply_turn.get("action") is not None else None
        if action is Action.CLARIFY:
            if i + 2 >= len(turns):
                raise RecordError(file, rid, f"messages[{i}].action",
                                  "a clarify turn must be followed by the user's reply and an assistant turn")
            reply, final = turns[i + 1], turns[i + 2]
            branch = Branch(intent=reply.get("intent", reply["content"]), reply=reply["content"],
                            target=final["content"], answers=list(final.get("answers", [final["content"]])))
        else:
            branch = Branch(intent=user.get("intent", user["content"]), reply=None, target=reply_turn["content"],
                            answers=list(reply_turn.get("answers", [reply_turn["content"]])))
        records.append(TurnRecord(
            id=f"custom/{cid}/{i}", dataset="custom", conversation_id=cid, split="train",
            context=context[:max_chars],
            messages=[{"role": t["role"], "content": t["content"]} for t in turns[:i]],
            gold_response=reply_turn["content"], gold_action=action.value if action else None,
            branches=[branch], meta=dict(meta), action_source="gold" if action else "none",
        ))
    return group, records


def load(path: str | Path, *, bad: BadRecords, max_context_chars: int) -> list[tuple[str, TurnRecord]]:
    p = Path(path)
    if p.is_dir():
        raise RecordError(str(p), None, None, "expected a JSONL file, got a directory")
    if not p.exists():
        raise FileNotFoundError(f"{p}: custom corpus not found (ingest.custom.path)")
    out: list[tuple[str, TurnRecord]] = []
    seen: dict[str, int] = {}  # same_id(id) -> line where it first appeared
    # Bytes are decoded line by line inside the guard (rather than by act.io.read_jsonl) so that
    # skip mode goes on after a line that is not UTF-8 or not JSON.
    with p.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            with bad.guard():
                obj = decode_line(raw, file=str(p), line=lineno)
                group, records = conversation_records(obj, file=str(p), line=lineno, max_chars=max_context_chars)
                key = same_id(obj["id"])
                if key in seen:
                    raise RecordError(str(p), f"line {lineno} ({_short(obj['id'])})", "id",
                                      f"duplicate conversation id (line {seen[key]} has the same id after "
                                      "Unicode NFC normalization and stripping)")
                seen[key] = lineno
                out.extend((group, r) for r in records)
    return out
