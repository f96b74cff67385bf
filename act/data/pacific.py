"""PACIFIC (conversational QA over financial tables and text) -> TurnRecords.

One record per question of a dialogue. A `req_clari` turn is CLARIFY: its gold response is the
clarifying question, and its one Branch comes from the next turn (the user's reply, its
`original_question` as the hidden intent, its answer as the final target). Every other turn is
ANSWER, including the resolved turn after a clarification. Arithmetic answers are rendered
`"<derivation> = <answer>"`; the context is `[context]` paragraphs then `[data]` table rows
`row0 : c1 | c2 | ...`. The unlabeled test file gives split `unlabeled` records: context and the
user's request only (no answers, no action). A record id seen twice is a bad record
(`ingest.on_error`): the dialogue holding the repeat is refused, or skipped and counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from act.actions import Action
from act.data.bad_records import BadRecords
from act.errors import RecordError
from act.io import read_json
from act.records import Branch, TurnRecord

LABELED_FILE = "validation_dev_split.json"
UNLABELED_FILE = "test_unlabeled.json"


def render_context(dialogue: dict, *, file: str, rid: Any, max_chars: int) -> str:
    table = dialogue.get("table")
    if not isinstance(table, dict) or not isinstance(table.get("table"), list):
        raise RecordError(file, rid, "table.table", "expected a list of rows")
    paragraphs = dialogue.get("paragraphs")
    if not isinstance(paragraphs, list):
        raise RecordError(file, rid, "paragraphs", "expected a list")
    for i, p in enumerate(paragraphs):
        if not isinstance(p, dict) or not isinstance(p.get("text"), str):
            raise RecordError(file, rid, f"paragraphs[{i}].text", "expected str")
        if not isinstance(p.get("order", 0), int):
            raise RecordError(file, rid, f"paragraphs[{i}].order", "expected int")
    texts = [p["text"].strip() for p in sorted(paragraphs, key=lambda p: p.get("order", 0))]
    rows = []
    for i, row in enumerate(table["table"]):
        if not isinstance(row, list):
            raise RecordError(file, rid, f"table.table[{i}]", "expected a list of cells")
        rows.append(f"row{i} : " + " | ".join(str(c).strip() for c in row))
    return ("[context]\n" + "\n".join(texts) + "\n[data]\n" + "\n".join(rows))[:max_chars]


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def answers_of(q: dict, *, file: str, rid: Any) -> list[str]:
    if "answer" not in q:
        raise RecordError(file, rid, "answer", "missing field")
    a = q["answer"]
    if isinstance(a, list):
        if not a or not all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in a):
            raise RecordError(file, rid, "answer", "expected a non-empty list of str/number")
        return [_fmt(x) for x in a]
    if isinstance(a, (str, int, float)) and not isinstance(a, bool):
        return [_fmt(a)]
    raise RecordError(file, rid, "answer", f"expected str, number or list, got {type(a).__name__}")


def render_answer(q: dict, *, file: str, rid: Any) -> str:
    """The assistant's gold text: spans joined by ", "; arithmetic as "<derivation> = <answer>"."""
    answers = answers_of(q, file=file, rid=rid)
    text = ", ".join(answers)
    derivation = q.get("derivation") or ""
    if not isinstance(derivation, str):
        raise RecordError(file, rid, "derivation", "expected str")
    if q.get("answer_type") == "arithmetic" and derivation.strip():
        return f"{derivation.strip()} = {text}"
    return text


def _str(q: dict, key: str, file: str, rid: Any) -> str:
    if key not in q:
        raise RecordError(file, rid, key, "missing field")
    if not isinstance(q[key], str):
        raise RecordError(file, rid, key, f"expected str, got {type(q[key]).__name__}")
    return q[key]


def _questions(d: dict, file: str, did: Any) -> list[dict]:
    qs = d.get("questions")
    if not isinstance(qs, list):
        raise RecordError(file, did, "questions", "expected a list")
    if not qs:
        raise RecordError(file, did, "questions", "empty conversation")
    for i, q in enumerate(qs):
        if not isinstance(q, dict):
            raise RecordError(file, did, f"questions[{i}]", "expected object")
        if not isinstance(q.get("order"), int):
            raise RecordError(file, f"{did}/questions[{i}]", "order", "expected int")
    return sorted(qs, key=lambda q: q["order"])


def dialogue_records(d: dict, *, file: str, index: int, max_chars: int) -> list[TurnRecord]:
    """All ANSWER/CLARIFY records of one labeled dialogue."""
    if not isinstance(d, dict):
        raise RecordError(file, index, None, "expected an object")
    did = (d.get("table") or {}).get("uid") if isinstance(d.get("table"), dict) else None
    did = did if isinstance(did, str) else f"dialogue{index}"
    context = render_context(d, file=file, rid=did, max_chars=max_chars)
    qs = _questions(d, file, did)
    records, history = [], []
    for i, q in enumerate(qs):
        rid = q.get("uid") if isinstance(q.get("uid"), str) else f"{did}/{q['order']}"
        question = _str(q, "question", file, rid)
        if not question.strip():
            raise RecordError(file, rid, "question", "empty question")
        clarify = q.get("req_clari")
        if not isinstance(clarify, bool):
            raise RecordError(file, rid, "req_clari", "expected true/false")
        response = render_answer(q, file=file, rid=rid)
        resolved = q
        if clarify:
            if i + 1 >= len(qs) or qs[i + 1].get("req_clari"):
                raise RecordError(file, rid, "req_clari", "a clarification turn must be followed by the user's reply turn")
            resolved = qs[i + 1]
            response = answers_of(q, file=file, rid=rid)[0]
        res_id = resolved.get("uid", rid)
        branch = Branch(
            intent=_str(resolved, "original_question", file, res_id),
            reply=_str(resolved, "question", file, res_id) if clarify else None,
            target=render_answer(resolved, file=file, rid=res_id),
            answers=answers_of(resolved, file=file, rid=res_id),
            scale=str(resolved.get("scale") or ""),
        )
        messages = history + [{"role": "user", "content": question}]
        records.append(TurnRecord(
            id=f"pacific/{rid}",
            dataset="pacific",
            conversation_id=did,
            split="train",
            context=context,
            messages=messages,
            gold_response=response,
            gold_action=(Action.CLARIFY if clarify else Action.ANSWER).value,
            branches=[branch],
            meta={
                # The answer type of the answer this record is scored against: for a CLARIFY
                # turn that is the resolved turn's, since its own is always "question".
                "answer_type": str(resolved.get("answer_type") or ""),
                "turn_answer_type": str(q.get("answer_type") or ""),
                "derivation": str(resolved.get("derivation") or ""),
                "order": q["order"],
            },
        ))
        history = messages + [{"role": "assistant", "content": response}]
    return records


def unlabeled_records(d: dict, *, file: str, index: int, max_chars: int) -> list[TurnRecord]:
    """Requests of an unlabeled dialogue: the file has no assistant turns, so each record holds
    the single user turn; `original_question` (the fully specified request) is the intent."""
    if not isinstance(d, dict):
        raise RecordError(file, index, None, "expected an object")
    did = (d.get("table") or {}).get("uid") if isinstance(d.get("table"), dict) else None
    did = did if isinstance(did, str) else f"dialogue{index}"
    context = render_context(d, file=file, rid=did, max_chars=max_chars)
    out = []
    for q in _questions(d, file, did):
        rid = q.get("uid") if isinstance(q.get("uid"), str) else f"{did}/{q['order']}"
        question = _str(q, "question", file, rid)
        out.append(TurnRecord(
            id=f"pacific/{rid}", dataset="pacific", conversation_id=did, split="unlabeled",
            context=context, messages=[{"role": "user", "content": question}], gold_response="",
            gold_action=None,
            branches=[Branch(intent=_str(q, "original_question", file, rid), reply=None, target="", answers=[])],
            meta={"order": q["order"]}, action_source="none",
        ))
    return out


def load(raw: str | Path, *, bad: BadRecords, max_context_chars: int) -> list[tuple[str, TurnRecord]]:
    """(group, record) pairs; the group (the dialogue) is the unit of the train/eval split."""
    raw = Path(raw)
    out: list[tuple[str, TurnRecord]] = []
    first_at: dict[str, str] = {}
    for name, build in ((LABELED_FILE, dialogue_records), (UNLABELED_FILE, unlabeled_records)):
        path = raw / name
        if not path.exists():
            if name == LABELED_FILE:
                raise FileNotFoundError(f"{path}: PACIFIC file missing")
            continue
        data = read_json(path)
        if not isinstance(data, list):
            raise RecordError(str(path), None, None, "expected a list of dialogues")
        for i, d in enumerate(data):
            with bad.guard():
                records = build(d, file=str(path), index=i, max_chars=max_context_chars)
                _check_unique(records, first_at, str(path), i)
                out.extend((r.conversation_id, r) for r in records)
    return out


def _check_unique(records: list[TurnRecord], first_at: dict[str, str], file: str, index: int) -> None:
    """A record id seen before (a repeated dialogue or question uid) is a bad record: a duplicate
    would be trained and scored twice. The whole dialogue is refused (or skipped) with it."""
    where = f"{file} dialogue {index}"
    ids = [r.id for r in records]
    for k, rid in enumerate(ids):
        if rid in first_at or rid in ids[:k]:
            first = first_at.get(rid, where)
            raise RecordError(file, f"{index} ({records[k].conversation_id})", "uid",
                              f"duplicate id {rid.split('/', 1)[1]!r}, first seen in {first}")
    first_at.update((rid, where) for rid in ids)
