"""Roles driven by an LLM: prompts rendered from `act/prompts/<name>.yaml`, replies parsed.

Any backend with `complete(chats) -> list[str]` serves (`act.roles.http.HttpChat`,
`act.roles.local.LocalChat`). A reply that cannot be used (a classifier reply naming no action,
a blank reply) is replaced by the offline backend's answer for that item and counted in
`usage.fallbacks`, so one odd reply never stops a stage and never goes unnoticed.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, Sequence

from act.actions import Action
from act.roles import offline
from act.records import Message
from act.roles.base import ClassifyItem, RejectItem, SimulateItem, UsageCounter

log = logging.getLogger("act.roles")

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"
CONTEXT_CHARS = 3000
"""Grounding context is cut to this many characters in role prompts (cost, and short windows)."""


class ChatModel(Protocol):
    def complete(self, chats: Sequence[Sequence[Message]]) -> list[str]: ...


@lru_cache(maxsize=None)
def load_prompt(name: str) -> dict[str, Any]:
    import yaml

    path = PROMPTS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PROMPTS_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"prompt file {path} not found; known prompts: {known}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping")
    return data


class PromptTemplate:
    """system + few-shot user/assistant exchanges + the item's user message."""

    def __init__(self, spec: dict[str, Any], source: str):
        for key in ("system", "user"):
            if not isinstance(spec.get(key), str):
                raise ValueError(f"{source}: missing text field '{key}'")
        self.system, self.user, self.source = spec["system"].strip(), spec["user"].strip(), source
        self.examples = list(spec.get("examples") or [])
        for i, ex in enumerate(self.examples):
            if not isinstance(ex, dict) or "reply" not in ex or not isinstance(ex.get("vars"), dict):
                raise ValueError(f"{source}: examples[{i}] needs 'vars' (mapping) and 'reply'")

    def shots(self, dataset: str, action: str | None = None) -> list[dict]:
        """Examples for `dataset` (else the `any` ones), and of `action` when given."""
        def fits(ex, ds):
            return ex.get("dataset", "any") == ds and (action is None or ex.get("action") in (None, action))

        chosen = [ex for ex in self.examples if fits(ex, dataset)]
        return chosen or [ex for ex in self.examples if fits(ex, "any")]

    def render(self, values: dict[str, Any], shots: Sequence[dict] = ()) -> list[Message]:
        chat = [{"role": "system", "content": self.system}]
        for ex in shots:
            chat.append({"role": "user", "content": self._fill(ex["vars"])})
            chat.append({"role": "assistant", "content": str(ex["reply"]).strip()})
        chat.append({"role": "user", "content": self._fill(values)})
        return chat

    def _fill(self, values: dict[str, Any]) -> str:
        try:
            return self.user.format_map(_Blank(values))
        except (ValueError, IndexError) as e:
            raise ValueError(f"{self.source}: bad template: {e}") from None


class _Blank(dict):
    """Placeholders a few-shot example does not set render empty."""

    def __missing__(self, key):
        return ""


def render_conversation(messages: Sequence[Message]) -> str:
    names = {"user": "User", "assistant": "Assistant"}
    return "\n".join(f"{names[m['role']]}: {m['content']}" for m in messages if m["role"] in names)


_LABEL = re.compile(r"\b(clarif\w*|answer\w*)\b", re.IGNORECASE)
_PREFIX = re.compile(r"^\s*(assistant|user|reply|response|label|action)\s*:\s*", re.IGNORECASE)


def parse_action(reply: str) -> Action | None:
    """The first action word in the reply ("CLARIFY", "Answer.", "clarifying question"), or None."""
    m = _LABEL.search(reply or "")
    if not m:
        return None
    return Action.CLARIFY if m.group(1).lower().startswith("clarif") else Action.ANSWER


def clean_turn(reply: str) -> str:
    """A generated turn without a speaker label or wrapping quotes."""
    text = _PREFIX.sub("", (reply or "").strip()).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


class PromptedClassifier:
    """ActionClassifier (and annotator) over an LLM."""

    def __init__(self, chat: ChatModel, template: PromptTemplate, usage: UsageCounter, *, with_context: bool = False):
        self.chat, self.template, self.usage, self.with_context = chat, template, usage, with_context
        self.fallback = offline.SurfaceClassifier()

    def classify(self, items: Sequence[ClassifyItem]) -> list[Action]:
        chats = []
        for it in items:
            values = {"dataset": it.dataset, "conversation": render_conversation(it.messages), "response": it.response}
            if self.with_context:
                values["context"] = it.context[:CONTEXT_CHARS]
            chats.append(self.template.render(values, self.template.shots(it.dataset)))
        out = []
        for it, reply in zip(items, self.chat.complete(chats)):
            action = parse_action(reply)
            if action is None:
                self.usage.fallbacks += 1
                action = self.fallback.classify([it])[0]
                log.warning("classifier reply names no action (%r); surface form says %s", reply[:60], action)
            out.append(action)
        return out


class PromptedSimulator:
    """UserSimulator over an LLM: summarize the hidden intent, then answer from the summary."""

    def __init__(self, chat: ChatModel, summarize: PromptTemplate, answer: PromptTemplate, usage: UsageCounter):
        self.chat, self.summarize, self.answer, self.usage = chat, summarize, answer, usage
        self.fallback = offline.OracleSimulator()

    def reply(self, items: Sequence[SimulateItem]) -> list[str]:
        summaries = self.chat.complete([
            self.summarize.render(
                {"dataset": it.dataset, "request": offline.last_user(it.messages), "intent": it.intent,
                 "gold_reply": it.gold_reply or "(none)"},
                self.summarize.shots(it.dataset),
            )
            for it in items
        ])
        chats = []
        for it, summary in zip(items, summaries):
            question = next((m["content"] for m in reversed(list(it.messages)) if m["role"] == "assistant"), "")
            chats.append(self.answer.render(
                {"dataset": it.dataset, "intent_summary": clean_turn(summary) or it.intent,
                 "conversation": render_conversation(it.messages), "question": question},
                self.answer.shots(it.dataset),
            ))
        out = []
        for it, reply in zip(items, self.chat.complete(chats)):
            text = clean_turn(reply)
            if not text:
                self.usage.fallbacks += 1
                text = self.fallback.reply([it])[0]
            out.append(text)
        return out


class PromptedRejecter:
    """RejectedGenerator over an LLM, shown examples of the target action only."""

    def __init__(self, chat: ChatModel, template: PromptTemplate, instructions: dict[str, str], usage: UsageCounter):
        self.chat, self.template, self.instructions, self.usage = chat, template, instructions, usage
        self.fallback = offline.TemplateRejecter()

    def generate(self, items: Sequence[RejectItem]) -> list[str]:
        chats = []
        for it in items:
            action = Action.parse(it.target_action).value
            chats.append(self.template.render(
                {"dataset": it.dataset, "context": it.context[:CONTEXT_CHARS],
                 "conversation": render_conversation(it.messages), "gold_response": it.gold_response,
                 "final_answer": it.final_answer, "instruction": self.instructions[action]},
                self.template.shots(it.dataset, action),
            ))
        out = []
        for it, reply in zip(items, self.chat.complete(chats)):
            text = clean_turn(reply)
            if not text or text == it.gold_response.strip():
                self.usage.fallbacks += 1
                text = self.fallback.generate([it])[0]
            out.append(text)
        return out


def build_prompted(name: str, chat: ChatModel, *, prompt: str = "", usage: UsageCounter):
    """The LLM-backed role `name` over `chat`, with prompts from `act/prompts/<prompt or name>.yaml`."""
    source = prompt or name
    spec = load_prompt(source)
    where = str(PROMPTS_DIR / f"{source}.yaml")
    if name in ("classifier", "annotator"):
        return PromptedClassifier(chat, PromptTemplate(spec, where), usage, with_context=name == "annotator")
    if name == "simulator":
        for part in ("summarize", "reply"):
            if not isinstance(spec.get(part), dict):
                raise ValueError(f"{where}: missing section '{part}'")
        return PromptedSimulator(chat, PromptTemplate(spec["summarize"], f"{where}:summarize"),
                                 PromptTemplate(spec["reply"], f"{where}:reply"), usage)
    if name == "rejecter":
        instructions = spec.get("instructions") or {}
        missing = [a.value for a in Action if not isinstance(instructions.get(a.value), str)]
        if missing:
            raise ValueError(f"{where}: instructions missing for {missing}")
        return PromptedRejecter(chat, PromptTemplate(spec, where), instructions, usage)
    raise ValueError(f"unknown role {name!r}")
