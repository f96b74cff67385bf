"""Deterministic roles that need no model: the embedded default runs on these.

- `SurfaceClassifier`: the action a response takes, read from its surface form (SQL or a plain
  statement answers; a question, an opener such as "are you looking for" without "?", or a
  request such as "please specify ..." clarifies). Its error rate is measured on the labelled
  check set `data/checks/classifier.jsonl` (`act.metrics.checks`).
- `OracleSimulator`: the simulated user replies with the dataset's recorded clarification answer,
  or restates its hidden intent when the dataset has none.
- `TemplateRejecter`: writes the losing side by taking the opposite action: the gold final
  answer for a CLARIFY turn (as the reference implementation does), a clarifying question in the
  dataset's style for an ANSWER turn.

Every output is a pure function of the item, so `dvc repro` gives the same bytes each time.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

from act.actions import Action
from act.roles.base import ClassifyItem, RejectItem, SimulateItem, UsageCounter

_SQL_TERM = r"(?:\*|'[^']*'|[\w.\"`\[\]]+(?:\s*\([^()]*\))?)"
_SQL_ITEM = rf"{_SQL_TERM}(?:\s*[-+*/|]+\s*{_SQL_TERM})*(?:\s+as\s+\w+)?"
_SQL = re.compile(
    rf"\bselect\s+(?:distinct\s+)?{_SQL_ITEM}(?:\s*,\s*{_SQL_ITEM})*\s+from\s+[\w\"`\[(]"
    r"|^\s*with\s+\w+\s+as\s*\(",
    re.IGNORECASE,
)
"""A SELECT list of columns / expressions followed by FROM: "Should I select every column from
the singer table?" is a question, "select name, age from singer" a query."""

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_QUOTED = re.compile(r"\"[^\"]*\"|\u201c[^\u201d]*\u201d|\u2018[^\u2019]*\u2019|`[^`]*`|(?<!\w)'[^']*'(?!\w)")
_PAREN = re.compile(r"\([^()]*\)")
_ABBREV = re.compile(r"\b(e\.g|i\.e|etc|vs)\.", re.IGNORECASE)

# An interrogative opener that asks even without a "?" (ClariQ: "are you looking for ...").
_OPENER = re.compile(
    r"^(?:do|did) you (?:mean|want|need|prefer)(?![\w-])|^are you |^would you (?:like|prefer)\b|"
    r"^what (?!a\b|an\b)|^which (?!is why|means|meant|was why|makes)|^how (?:many|much|do you|would you|should)\b|"
    r"^should (?:i|we|the|it)\b|^is (?:it|this|that) (?:for|about)\b|^is it\b|^any\b.*\b(?:you|i should)\b|"
    r"^could you (?:clarify|specify|tell me|let me know)\b|^can you (?:clarify|specify|tell me|let me know)\b",
    re.IGNORECASE,
)
# A polite request for the missing detail ("Please specify which table you need.").
_REQUEST = re.compile(
    r"\b(?:please|kindly)\s+(?:\w+\s+)?(?:specify|clarify|confirm|indicate|tell me|let me know|say|choose|"
    r"select|pick|state|provide|share)\b|"
    r"^(?:let me know|tell me|i need to know|i'?m not sure|i am not sure|it'?s not clear|it is not clear|"
    r"it'?s unclear|it is unclear)\s+(?:\w+\s+)?(?:which|what|whether|who|when|where|how|your|if you (?:mean|want|prefer))\b|"
    r"\b(?:pick|choose|select) one\b|\bwhich one\b",
    re.IGNORECASE,
)
# After a question: text that goes on about asking (not an answer to a rhetorical question).
_GOES_ON_ASKING = re.compile(
    r"\b(?:i will|i'll|i can|i could|once you|once i know|let me know|tell me|then i|so i can|both|either|"
    r"depends|differ|differs|changes|one is|i see|there are|after that|before i)\b",
    re.IGNORECASE,
)
# A strong clarifying form: counts mid-turn unless the next sentence answers it (yes / no / a value).
_STRONG = re.compile(r"\b(?:do|did) you mean(?![\w-])|\bare you (?:asking|referring)\b|\bwhich one do you\b", re.IGNORECASE)
_ANSWERS_IT = re.compile(r"^(?:yes|no|yep|nope|if so|in that case|then)\b|\d", re.IGNORECASE)
_TAG = re.compile(r",\s*(?:right|correct|no|yes|isn't it|is that right|ok|okay)\s*\?$", re.IGNORECASE)
# After an answer, an offer of more ("Would you like the 2018 figure too?") does not make it a question.
_OFFER = re.compile(
    r"^(?:would you like|do you (?:also )?(?:want|need)|want|need|shall i|should i also|is there anything|"
    r"anything else|does (?:that|this)|can i help|may i help)\b",
    re.IGNORECASE,
)
_PREFACE = re.compile(
    r"^(?:sure(?: thing)?|of course|no problem|happy to help|i can do that|i can help(?: with that)?|good question|"
    r"ok|okay|certainly|absolutely|great|got it|thanks)\W*$|"
    r"\b(?:two|three|several|many|multiple|both|either|various|different|more than one|a few|unclear|not sure|depends)\b",
    re.IGNORECASE,
)
_EXAMPLES = re.compile(r"^(?:eg\b|ie\b|for example|for instance|such as|examples?\b|like\b)", re.IGNORECASE)


def looks_like_sql(text: str) -> bool:
    return bool(_SQL.search(text))


def _sentences(text: str) -> list[str]:
    """The turn's sentences, without quoted text (a quoted question is not asked), parentheticals
    (examples such as "(e.g., name, age)") and trailing example lists ("For example, A or B.")."""
    body = _QUOTED.sub(" ", text)
    body = _ABBREV.sub(lambda m: m.group(1).replace(".", ""), body)
    while _PAREN.search(body):
        body = _PAREN.sub(" ", body)
    body = re.sub(r"[ \t]+", " ", body)
    parts = [s.strip() for s in _SENTENCE_END.split(body.strip()) if s.strip(" .,;:-\n")]
    while len(parts) > 1 and _EXAMPLES.match(parts[-1]):
        parts.pop()
    return [re.split(r",\s*(?:eg|ie|for example|for instance|such as)\b", s, flags=re.IGNORECASE)[0].strip() or s
            for s in parts]


def _asks(sentence: str) -> bool:
    """A question or a request for the missing detail, with or without a "?"."""
    s = sentence.rstrip(" .,;:!")
    if s.endswith("?") and not _TAG.search(s):
        return True
    after_colon = s.rsplit(": ", 1)[-1]  # "Single, double or suite: which room type would you like"
    if len(s) < 200 and "=" not in s and (_OPENER.search(s) and ": " not in s or _OPENER.search(after_colon)):
        return True
    return bool(_REQUEST.search(s))


def _gives_answer(sentence: str) -> bool:
    return not _PREFACE.search(sentence.rstrip(" .!"))


def surface_action(dataset: str, response: str) -> Action:
    """CLARIFY when the response asks the user for a missing detail, ANSWER otherwise.

    It asks when its last sentence is a question ("?" outside quotes, parentheticals and trailing
    examples), opens like one without the "?" ("are you looking for ..."), or requests the detail
    ("please specify ..."), unless that question only offers more after an answer ("... $4.1
    million. Would you like the 2018 figure too?"); or when a question mid-turn is followed by text
    that goes on about asking ("Which year? Once you tell me, I will ...") rather than answering it
    (a rhetorical "Why did it fall? Mainly because ..."). Any SQL query makes it an answer attempt,
    since a policy may hedge with a question and still commit to a query."""
    text = response.strip()
    if not text or looks_like_sql(text):
        return Action.ANSWER
    sentences = _sentences(text)
    if not sentences:
        return Action.ANSWER
    *before, last = sentences
    if _asks(last):
        offer = _OFFER.search(last) and any(_gives_answer(s) and not _asks(s) for s in before)
        return Action.ANSWER if offer else Action.CLARIFY
    for i, s in enumerate(before):
        if not _asks(s):
            continue
        rest = sentences[i + 1:]
        if any(_GOES_ON_ASKING.search(r) for r in rest):
            return Action.CLARIFY
        if _STRONG.search(s) and not _ANSWERS_IT.search(rest[0]):
            return Action.CLARIFY
    return Action.ANSWER


class SurfaceClassifier:
    """ActionClassifier from surface form; also serves as the offline action annotator."""

    name = "offline"

    def __init__(self, usage: UsageCounter | None = None):
        self.usage = usage or UsageCounter()

    def classify(self, items: Sequence[ClassifyItem]) -> list[Action]:
        return [surface_action(it.dataset, it.response) for it in items]


def last_user(messages) -> str:
    for m in reversed(list(messages)):
        if m["role"] == "user":
            return m["content"]
    return ""


class OracleSimulator:
    """UserSimulator that knows the answer: the recorded reply the first time it is asked, then
    (or when the request was never ambiguous) the fully specified request itself."""

    name = "offline"

    def __init__(self, usage: UsageCounter | None = None):
        self.usage = usage or UsageCounter()

    def reply(self, items: Sequence[SimulateItem]) -> list[str]:
        out = []
        for it in items:
            said = {m["content"].strip() for m in it.messages if m["role"] == "user"}
            if it.gold_reply and it.gold_reply.strip() not in said:
                out.append(it.gold_reply.strip())
            else:
                out.append(f"I mean: {it.intent.strip()}")
        return out


def _pick(options: Sequence[str], *keys: str) -> str:
    """A stable choice among templates (varies across items, never across runs)."""
    h = hashlib.sha256("\x1f".join(keys).encode("utf-8")).digest()
    return options[int.from_bytes(h[:4], "big") % len(options)]


_TABLE_PATTERNS = (
    re.compile(r"create\s+table\s+[\"'`\[]?(\w+)", re.IGNORECASE),
    re.compile(r"^\s*(?:table\s*:?\s*)?(\w+)\s*\(", re.IGNORECASE | re.MULTILINE),
    re.compile(r"^\s*table\s+(\w+)\s*:", re.IGNORECASE | re.MULTILINE),
)
_STOPWORDS = frozenset(
    "a an the of in on at for to by with from and or is are was were be been do does did what which "
    "who whom whose when where why how many much show list give find return all each every me us "
    "that this these those there their its it have has had them they he she him her his we you".split()
)


def _tables(context: str) -> list[str]:
    for pattern in _TABLE_PATTERNS:
        names = [n for n in pattern.findall(context) if n.lower() not in {"create", "table", "primary", "foreign"}]
        if names:
            return list(dict.fromkeys(names))
    return []


_GENERIC_HEADS = frozenset(
    "change changes percentage percent difference average ratio value values proportion sum total "
    "amount amounts number increase decrease growth between about year years fiscal period".split()
)
_THE_PHRASE = re.compile(
    r"\bthe ((?:[A-Za-z][\w-]* ?){1,3}?)(?= (?:in|of|for|from|between|at|on|during|and|as|to|by|with|"
    r"that|which|over|under)\b|[?.,;]|$)"
)


def _topic(request: str) -> str:
    """What the request is about, e.g. 'What was the change in the total revenue?' ->
    'total revenue' (the last "the ..." phrase that is not a generic measure)."""
    for phrase in reversed(_THE_PHRASE.findall(request)):
        words = phrase.strip().split()
        if words and words[-1].lower() not in _GENERIC_HEADS and words[-1].lower() not in _STOPWORDS:
            return " ".join(words)
    words = [w for w in re.findall(r"[A-Za-z][\w'-]*", request)
             if w.lower() not in _STOPWORDS and w.lower() not in _GENERIC_HEADS]
    return " ".join(words[-2:]) if words else "item"


def _ambigsql_question(item: RejectItem, request: str) -> str:
    tables = _tables(item.context)
    # Prefer the tables the gold query touches, so the question is about the right data.
    used = [t for t in tables if re.search(rf"\b{re.escape(t)}\b", item.gold_response, re.IGNORECASE)]
    tables = used or tables
    table = _pick(tables, item.gold_response, request) if tables else _topic(request)
    return _pick(
        (
            f"Which columns of the {table} table would you like to see?",
            f"Do you want all {table} records, or only those matching a specific value? If so, which value?",
            f"Should the {table} results be sorted or limited, for example only the top few by some column?",
            f"Do you want the individual {table} rows, or an aggregate such as a count or an average?",
        ),
        item.gold_response,
        request,
    )


_YEAR = re.compile(r"\b(19[5-9]\d|20[0-4]\d)\b")


def _pacific_question(item: RejectItem, request: str) -> str:
    years = sorted(set(_YEAR.findall(item.context)))
    options = [f"What kind of {_topic(request)} are you asking about?", "Which period are you asking about?"]
    if len(years) >= 2:
        options.append("Which year are you asking about?")
    return _pick(options, item.gold_response, request)


def _abg_coqa_question(item: RejectItem, request: str) -> str:
    core = request.strip().rstrip("?.! ")
    core = core[:1].lower() + core[1:]
    return _pick(
        (
            f"Do you mean {core} at the beginning of the story?",
            f"Do you mean {core} at the end of the story?",
            f"Do you mean {core} before or after the main event?",
        ),
        item.gold_response,
        request,
    )


def _generic_question(item: RejectItem, request: str) -> str:
    return f'Could you clarify what exactly you mean by "{request.strip()}"?'


_CLARIFY_STYLE = {
    "ambigsql": _ambigsql_question,
    "pacific": _pacific_question,
    "abg_coqa": _abg_coqa_question,
}


def template_clarifying_question(item: RejectItem) -> str:
    request = last_user(item.messages)
    return _CLARIFY_STYLE.get(item.dataset, _generic_question)(item, request)


class TemplateRejecter:
    """RejectedGenerator that takes the opposite action without a model."""

    name = "offline"

    def __init__(self, usage: UsageCounter | None = None):
        self.usage = usage or UsageCounter()

    def generate(self, items: Sequence[RejectItem]) -> list[str]:
        out = []
        for it in items:
            if Action.parse(it.target_action) is Action.CLARIFY:
                out.append(template_clarifying_question(it))
            else:
                # Answering an ambiguous request outright with the final answer is exactly the
                # premature answer ACT must learn to lose against.
                out.append(it.final_answer.strip() or _generic_answer(it))
        return out


def _generic_answer(item: RejectItem) -> str:
    first = _SENTENCE_END.split(item.context.strip(), maxsplit=1)[0] if item.context.strip() else ""
    return first or "Here is the answer based on the context."
