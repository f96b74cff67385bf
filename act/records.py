"""The normalized record every stage after `ingest` reads.

One `TurnRecord` per assistant turn to be predicted: the conversation so far (ending in a user
turn), the grounding context, the gold response and action, and for the simulated user one or
more `Branch`es: the hidden intent, the reply the user gives to a clarifying question, and the
final answer a trajectory is scored against. Stored as a `datasets` DatasetDict (see
`act.io.save_dataset`), one split per `split` value.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from act.actions import Action
from act.datasets import DATASETS  # noqa: F401  (the known names, re-exported)
from act.errors import RecordError

ROLES = ("system", "user", "assistant")

Message = dict[str, str]
"""One chat turn, {"role": "system" | "user" | "assistant", "content": str}: the type every module
that handles conversations (chat templates, roles, policies, training) shares."""
SPLITS = ("train", "eval", "unlabeled")


@dataclass(frozen=True)
class Branch:
    """One way the user's under-specified request can be resolved.

    intent:  the fully specified request, known to the simulated user only.
    reply:   the user's gold answer to a clarifying question (None when the turn is unambiguous).
    target:  the gold final assistant response text (e.g. "derivation = answer", a SQL query).
    answers: the gold answer(s) the trajectory is scored against (several spans, alternates).
    scale:   PACIFIC/TAT-QA scale of a numeric answer ("", "thousand", "million", "percent", ...).
    """

    intent: str
    reply: str | None
    target: str
    answers: list[str]
    scale: str = ""


@dataclass(frozen=True)
class TurnRecord:
    id: str
    dataset: str
    conversation_id: str
    split: str
    context: str
    messages: list[dict[str, str]]
    gold_response: str
    gold_action: str | None
    branches: list[Branch]
    meta: dict[str, Any] = field(default_factory=dict)
    """Dataset-specific extras: db_id and ambiguity_type (AmbigSQL), answer_type (PACIFIC), ..."""
    action_source: str = "gold"
    """Where `gold_action` came from: "gold" (dataset label) or an annotator name."""

    @property
    def action(self) -> Action | None:
        return Action.parse(self.gold_action) if self.gold_action is not None else None

    def to_row(self) -> dict[str, Any]:
        """A flat row for Arrow: `meta` is JSON text so datasets with different extras fit."""
        row = asdict(self)
        row["meta"] = json.dumps(self.meta, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any], *, file: str = "<memory>", index: int | None = None) -> "TurnRecord":
        return validate_row(row, file=file, index=index)


def _need(row: dict, key: str, typ, file: str, rid, *, allow_none: bool = False):
    if key not in row:
        raise RecordError(file, rid, key, "missing field")
    value = row[key]
    if value is None and allow_none:
        return None
    if not isinstance(value, typ):
        raise RecordError(
            file, rid, key, f"expected {getattr(typ, '__name__', typ)}, got {type(value).__name__}"
        )
    return value


def validate_messages(messages: Any, file: str, rid, field_name: str = "messages") -> list[dict[str, str]]:
    """Check a chat: a non-empty list of {role, content} with known roles and string content."""
    if not isinstance(messages, list):
        raise RecordError(file, rid, field_name, f"expected list, got {type(messages).__name__}")
    if not messages:
        raise RecordError(file, rid, field_name, "empty conversation")
    out = []
    for i, m in enumerate(messages):
        where = f"{field_name}[{i}]"
        if not isinstance(m, dict):
            raise RecordError(file, rid, where, f"expected object, got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise RecordError(file, rid, f"{where}.role", f"unknown role {role!r}; expected one of {ROLES}")
        if not isinstance(content, str):
            raise RecordError(file, rid, f"{where}.content", f"expected str, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    return out


def validate_row(row: dict[str, Any], *, file: str = "<memory>", index: int | None = None) -> TurnRecord:
    """Build a TurnRecord from a stored row, raising RecordError naming file/record/field."""
    rid = row.get("id", index) if isinstance(row, dict) else index
    if not isinstance(row, dict):
        raise RecordError(file, index, None, f"expected an object, got {type(row).__name__}")
    rec_id = _need(row, "id", str, file, rid)
    dataset = _need(row, "dataset", str, file, rid)
    split = _need(row, "split", str, file, rid)
    if split not in SPLITS:
        raise RecordError(file, rid, "split", f"unknown split {split!r}; expected one of {SPLITS}")
    messages = validate_messages(row.get("messages"), file, rid) if "messages" in row else None
    if messages is None:
        raise RecordError(file, rid, "messages", "missing field")
    if messages[-1]["role"] != "user":
        raise RecordError(file, rid, "messages", "conversation must end with a user turn")
    gold_action = _need(row, "gold_action", str, file, rid, allow_none=True)
    if gold_action is not None:
        try:
            gold_action = Action.parse(gold_action).value
        except ValueError as e:
            raise RecordError(file, rid, "gold_action", str(e)) from None
    raw_branches = _need(row, "branches", list, file, rid)
    branches = []
    for j, b in enumerate(raw_branches):
        if not isinstance(b, dict):
            raise RecordError(file, rid, f"branches[{j}]", "expected object")
        answers = b.get("answers")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise RecordError(file, rid, f"branches[{j}].answers", "expected list of str")
        for key in ("intent", "target"):
            if not isinstance(b.get(key), str):
                raise RecordError(file, rid, f"branches[{j}].{key}", "expected str")
        if b.get("reply") is not None and not isinstance(b["reply"], str):
            raise RecordError(file, rid, f"branches[{j}].reply", "expected str or null")
        branches.append(
            Branch(b["intent"], b.get("reply"), b["target"], list(answers), str(b.get("scale") or ""))
        )
    action_source = str(row.get("action_source") or "gold")
    # An annotator may call a turn CLARIFY where the data recorded no reply; only a dataset's own
    # CLARIFY label promises one.
    if gold_action == Action.CLARIFY.value and action_source == "gold" and not any(b.reply for b in branches):
        raise RecordError(file, rid, "branches", "a CLARIFY turn needs a branch with the user's reply")
    meta = row.get("meta", {})
    if isinstance(meta, str):
        try:
            meta = json.loads(meta) if meta else {}
        except json.JSONDecodeError as e:
            raise RecordError(file, rid, "meta", f"invalid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise RecordError(file, rid, "meta", "expected object")
    return TurnRecord(
        id=rec_id,
        dataset=dataset,
        conversation_id=_need(row, "conversation_id", str, file, rid),
        split=split,
        context=_need(row, "context", str, file, rid),
        messages=messages,
        gold_response=_need(row, "gold_response", str, file, rid),
        gold_action=gold_action,
        branches=branches,
        meta=meta,
        action_source=action_source,
    )


SYSTEM_TEMPLATE = (
    "Answer the user's request from the context below. If the request is ambiguous, "
    "ask one clarifying question instead.\n\n{context}"
)
"""The policy's system message; `{context}` is the record's grounding context."""


def with_system(record: TurnRecord, system_template: str = SYSTEM_TEMPLATE) -> list[dict[str, str]]:
    """The chat a policy sees: a system message carrying the grounding context, then the turns."""
    system = system_template.format(context=record.context, dataset=record.dataset).strip()
    return ([{"role": "system", "content": system}] if system else []) + list(record.messages)
