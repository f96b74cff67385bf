"""The model boundary: Protocols every role backend (offline, HTTP, local) implements.

All calls are batched: a list of items in, a list of results out, same order. Items carry
everything a backend may need, so the offline backends need no model and the LLM backends can
render their prompts from the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

from act.actions import Action
from act.records import Message


@dataclass(frozen=True)
class ClassifyItem:
    """Is `response`, said after `messages`, a clarifying question or an answer?"""

    dataset: str
    messages: Sequence[Message]
    response: str
    context: str = ""
    """The grounding context; the LLM annotator reads it (ambiguity depends on it)."""


@dataclass(frozen=True)
class SimulateItem:
    """The simulated user answers the assistant's last (clarifying) turn in `messages`.

    `intent` is the user's hidden, fully specified request; `gold_reply` the reply the dataset
    records (None when the request was not ambiguous)."""

    dataset: str
    context: str
    messages: Sequence[Message]
    intent: str
    gold_reply: str | None


@dataclass(frozen=True)
class RejectItem:
    """Write an assistant turn after `messages` that takes `target_action` (the losing side)."""

    dataset: str
    context: str
    messages: Sequence[Message]
    target_action: Action
    gold_response: str
    final_answer: str
    """The gold final answer of the conversation (a direct answer for a CLARIFY turn)."""
    meta: dict = field(default_factory=dict)


@runtime_checkable
class ActionClassifier(Protocol):
    def classify(self, items: Sequence[ClassifyItem]) -> list[Action]: ...


@runtime_checkable
class UserSimulator(Protocol):
    def reply(self, items: Sequence[SimulateItem]) -> list[str]: ...


@runtime_checkable
class RejectedGenerator(Protocol):
    def generate(self, items: Sequence[RejectItem]) -> list[str]: ...


@runtime_checkable
class Policy(Protocol):
    """The model being trained: continues each chat with one assistant turn."""

    def generate(self, chats: Sequence[Sequence[Message]]) -> list[str]: ...


@dataclass
class UsageCounter:
    """Calls and tokens a role spent; reported per stage."""

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    fallbacks: int = 0
    """Replies that could not be parsed (e.g. a classifier reply naming no action) and were
    replaced by the offline backend's answer."""

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)
