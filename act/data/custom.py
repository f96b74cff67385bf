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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from act.actions import Action
from act.data.bad_records import BadRecords
from act.errors import RecordError
from act.records import Branch, TurnRecord

_KEYS = {"id", "context", "group", "meta", "messages"}
_TURN_KEYS = {"user": {"role", "content", "intent"}, "assistant": {"role", "content", "action", "answers"}}


def conversation_records(obj: Any, *, file: str, line: int, max_chars: int) -> tuple[str, list[TurnRecord]]:
    where = f"line {line}"
    if not isinstance(obj, dict):
        raise RecordError(file, where, None, f"expected an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise RecordError(file, where, unknown[0], f"unknown field; expected {sorted(_KEYS)}")
    cid = obj.get("id")
    if not isinstance(cid, str) or not cid.strip():
        raise RecordError(file, where, "id", "missing field" if "id" not in obj else "expected a non-empty str")
    rid = f"{where} ({cid})"
    context = obj.get("context", "")
    if not isinstance(context, str):
        raise RecordError(file, rid, "context", "expected str")
    group = obj.get("group", cid)
    if not isinstance(group, str):
        raise RecordError(file, rid, "group", "expected str")
    meta = obj.get("meta", {})
    if not isinstance(meta, dict):
        raise RecordError(file, rid, "meta", "expected object")
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
            raise RecordError(file, rid, f"{f}.role", f"unknown role {role!r}; expected 'user' or 'assistant'")
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            raise RecordError(file, rid, f"{f}.role", f"expected {expected!r}: turns alternate, user first")
        extra = sorted(set(t) - _TURN_KEYS[role])
        if extra:
            raise RecordError(file, rid, f"{f}.{extra[0]}", f"unknown field for a {role} turn")
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
                raise RecordError(file, rid, f"{f}.action", str(e)) from None
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
    seen: set[str] = set()
    # Lines are parsed here rather than by act.io.read_jsonl so that skip mode goes on after a
    # line of broken JSON.
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            with bad.guard():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise RecordError(str(p), f"line {lineno}", None, f"invalid JSON: {e.msg}") from None
                group, records = conversation_records(obj, file=str(p), line=lineno, max_chars=max_context_chars)
                if obj["id"] in seen:
                    raise RecordError(str(p), f"line {lineno} ({obj['id']})", "id", "duplicate conversation id")
                seen.add(obj["id"])
                out.extend((group, r) for r in records)
    return out
