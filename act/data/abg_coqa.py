"""Abg-CoQA (ambiguity in conversational reading comprehension) -> TurnRecords.

One record per example. The story is the context; `history_turns` become prior user/assistant
messages; `target_turn.question` is the user's request. An `ambiguous` example is CLARIFY with
the human clarifying question as gold response, and one Branch per entry of
`clarification_turn.answers`: the user's reply (`clr_ans`) and the resolved answer (`org_ans`,
with `org_ans_2`/`org_ans_3` as alternates). Any other example is ANSWER with
`target_turn.answer`. Examples of one story share a split (the story is the split group).
An id seen twice is a bad record (`ingest.on_error`: stop, or skip the later one and count it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from act.actions import Action
from act.data.bad_records import BadRecords
from act.errors import RecordError
from act.io import read_json
from act.records import Branch, TurnRecord

FILE = "coqa_abg_val.json"
_NO_ANSWER = {"", "unknown"}


def _str(obj: Any, key: str, file: str, rid: Any, where: str) -> str:
    if not isinstance(obj, dict):
        raise RecordError(file, rid, where, "expected object")
    if key not in obj:
        raise RecordError(file, rid, f"{where}.{key}" if where else key, "missing field")
    value = obj[key]
    if not isinstance(value, str):
        raise RecordError(file, rid, f"{where}.{key}" if where else key, f"expected str, got {type(value).__name__}")
    return value.strip()


def intent_of(question: str, clarification: str, reply: str) -> str:
    """What the simulated user means, spelled out from the recorded exchange."""
    return f'{question} (Asked "{clarification}", I would answer: "{reply}")'


def example_record(ex: dict, *, file: str, index: int, max_chars: int) -> tuple[str, TurnRecord]:
    if not isinstance(ex, dict):
        raise RecordError(file, index, None, "expected an object")
    rid = ex.get("id") if isinstance(ex.get("id"), str) else index
    _str(ex, "id", file, rid, "")
    story = _str(ex, "story", file, rid, "")
    history = ex.get("history_turns")
    if not isinstance(history, list):
        raise RecordError(file, rid, "history_turns", "expected a list")
    messages = []
    for i, h in enumerate(history):
        messages.append({"role": "user", "content": _str(h, "question", file, rid, f"history_turns[{i}]")})
        messages.append({"role": "assistant", "content": _str(h, "answer", file, rid, f"history_turns[{i}]")})
    question = _str(ex.get("target_turn"), "question", file, rid, "target_turn")
    if not question:
        raise RecordError(file, rid, "target_turn.question", "empty question")
    answer = _str(ex["target_turn"], "answer", file, rid, "target_turn")
    messages.append({"role": "user", "content": question})
    ambiguity = ex.get("ambiguity")
    if ambiguity not in ("ambiguous", "non_ambiguous"):
        raise RecordError(file, rid, "ambiguity", f"expected 'ambiguous' or 'non_ambiguous', got {ambiguity!r}")
    meta: dict[str, Any] = {"source": str(ex.get("source") or ""), "ambiguity": ambiguity}
    if ambiguity == "ambiguous":
        clar = ex.get("clarification_turn")
        clar_q = _str(clar, "question", file, rid, "clarification_turn")
        answers = clar.get("answers")
        if not isinstance(answers, list) or not answers:
            raise RecordError(file, rid, "clarification_turn.answers", "expected a non-empty list")
        branches = []
        for k, a in enumerate(answers):
            where = f"clarification_turn.answers[{k}]"
            reply = _str(a, "clr_ans", file, rid, where)
            org = _str(a, "org_ans", file, rid, where)
            alts = [org] + [str(a[key]).strip() for key in ("org_ans_2", "org_ans_3") if isinstance(a.get(key), str)]
            # "Unknown" marks an annotator who could not answer; it is no reference answer.
            kept = list(dict.fromkeys(x for x in alts if x.lower() not in _NO_ANSWER)) or [org]
            branches.append(Branch(intent=intent_of(question, clar_q, reply), reply=reply, target=org, answers=kept))
        gold, action = clar_q, Action.CLARIFY
        second = ex.get("clarification_turn_2")
        if isinstance(second, dict) and isinstance(second.get("question"), str):
            meta["alt_clarification"] = second["question"].strip()
    else:
        branches = [Branch(intent=question, reply=None, target=answer, answers=[answer])]
        gold, action = answer, Action.ANSWER
    story_id = rid.split("|")[0]
    record = TurnRecord(
        id=f"abg_coqa/{rid}", dataset="abg_coqa", conversation_id=rid, split="train",
        context=story[:max_chars], messages=messages, gold_response=gold, gold_action=action.value,
        branches=branches, meta=meta,
    )
    return story_id, record


def load(raw: str | Path, *, bad: BadRecords, max_context_chars: int) -> list[tuple[str, TurnRecord]]:
    path = Path(raw) / FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: Abg-CoQA file missing")
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise RecordError(str(path), None, "data", "expected {\"data\": [examples]}")
    out = []
    first_at: dict[str, int] = {}
    for i, ex in enumerate(data["data"]):
        with bad.guard():
            story_id, record = example_record(ex, file=str(path), index=i, max_chars=max_context_chars)
            if record.id in first_at:  # a duplicate would be trained and scored twice
                raise RecordError(str(path), f"{i} ({record.conversation_id})", "id",
                                  f"duplicate id, first seen at record {first_at[record.id]}")
            first_at[record.id] = i
            out.append((story_id, record))
    return out
