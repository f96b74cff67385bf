"""Phase 1 of ACT: action-contrastive preference pairs.

For every assistant turn with an action label, the gold turn wins and a turn taking the opposite
action (written by the rejecter role) loses. A pair row is TRL's conversational preference format
plus the record fields Phase 2 needs to rebuild the `TurnRecord`:

    prompt           [system (context, `act.records.with_system`), ...history, user]
    chosen/rejected  [assistant] or, for a CLARIFY winner with clarify_winner="continuation",
                     [assistant question, user reply, assistant final answer]
    chosen_action, rejected_action, gold_action        "clarify" | "answer"
    id, dataset, conversation_id, split, context, messages, gold_response, branches,
    meta (JSON text), action_source

`pair_to_record(row)` gives the record back; `validate_pair(row, file, index)` checks a row;
`load_pairs(path)` reads a pair DatasetDict and checks every row.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from act.actions import ACTIONS, Action
from act.errors import RecordError
from act.records import SYSTEM_TEMPLATE, Branch, TurnRecord, validate_messages, validate_row, with_system
from act.roles.base import RejectedGenerator, RejectItem

CLARIFY_WINNERS = ("continuation", "question")


def gold_branch_index(record: TurnRecord) -> int:
    """Index of the branch the gold conversation follows: branch 0, or for a CLARIFY turn the first
    branch with a user reply (the continuation needs one). The kept Phase-1 winner, SFT's gold
    continuation and every training rollout (`act.simulate.rollout`) follow this one branch, as the
    reference's user follows the one gold trajectory."""
    if not record.branches:
        raise ValueError(f"record {record.id}: no branches")
    if record.action is Action.CLARIFY:
        return next((i for i, b in enumerate(record.branches) if b.reply), 0)
    return 0


def gold_branch(record: TurnRecord) -> Branch | None:
    """The branch the gold conversation follows (`gold_branch_index`); None without branches."""
    if not record.branches:
        return None
    return record.branches[gold_branch_index(record)]


def final_answer(record: TurnRecord) -> str:
    """The conversation's gold final answer: for a CLARIFY turn the answer given after the
    user's reply, for an ANSWER turn the gold response itself."""
    if record.action is Action.CLARIFY:
        branch = gold_branch(record)
        return branch.target if branch is not None else ""
    return record.gold_response


def gold_side(record: TurnRecord, clarify_winner: str, *, winning: bool) -> list[dict[str, str]]:
    """The gold turn as one side of a pair. A winning CLARIFY turn may carry its continuation
    (question, the user's reply, the final answer) so the model learns what asking leads to."""
    side = [{"role": "assistant", "content": record.gold_response}]
    if winning and record.action is Action.CLARIFY and clarify_winner == "continuation":
        branch = gold_branch(record)
        if branch is not None and branch.reply and branch.target.strip():
            side += [{"role": "user", "content": branch.reply}, {"role": "assistant", "content": branch.target}]
    return side


def build_pairs(
    records: Sequence[TurnRecord],
    rejecter: RejectedGenerator,
    *,
    clarify_winner: str = "continuation",
    random_actions: bool = False,
    seed: int = 0,
    system_template: str = SYSTEM_TEMPLATE,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(pair rows, counts). Records without an action label are skipped and counted.

    random_actions: the ablation "ACT w/ Random Actions": the winning action is drawn at random
    (seeded) per turn, so the gold turn loses whenever the draw disagrees with it."""
    if clarify_winner not in CLARIFY_WINNERS:
        raise ValueError(f"clarify_winner must be one of {CLARIFY_WINNERS}, got {clarify_winner!r}")
    rng = random.Random(seed)
    labelled = [r for r in records if r.action is not None and r.gold_response.strip()]
    counts = {"records": len(records), "skipped_unlabeled": sum(r.action is None for r in records),
              "skipped_empty_response": sum(r.action is not None and not r.gold_response.strip() for r in records)}
    winners = [rng.choice(ACTIONS) if random_actions else r.action for r in labelled]
    items = [
        RejectItem(
            dataset=r.dataset, context=r.context, messages=list(r.messages),
            target_action=r.action.opposite, gold_response=r.gold_response,
            final_answer=final_answer(r), meta=dict(r.meta),
        )
        for r in labelled
    ]
    generated = rejecter.generate(items) if items else []
    if len(generated) != len(items):
        raise RuntimeError(f"rejecter returned {len(generated)} responses for {len(items)} turns")
    rows = []
    for r, win, text in zip(labelled, winners, generated):
        other = [{"role": "assistant", "content": text}]
        if win is r.action:
            chosen, rejected = gold_side(r, clarify_winner, winning=True), other
        else:
            chosen, rejected = other, gold_side(r, clarify_winner, winning=False)
        rows.append(pair_row(r, chosen, rejected, win, system_template))
    counts["pairs"] = len(rows)
    counts["gold_wins"] = sum(w is r.action for r, w in zip(labelled, winners))
    return rows, counts


def pair_row(record: TurnRecord, chosen, rejected, chosen_action: Action, system_template: str = SYSTEM_TEMPLATE) -> dict[str, Any]:
    row = record.to_row()
    row.update(
        prompt=with_system(record, system_template),
        chosen=chosen,
        rejected=rejected,
        chosen_action=chosen_action.value,
        rejected_action=chosen_action.opposite.value,
        gold_action=record.action.value,
    )
    return row


def pair_to_record(row: dict[str, Any], *, file: str = "<memory>", index: int | None = None) -> TurnRecord:
    """The TurnRecord a pair was built from (for Phase 2's sampling and simulation)."""
    rec = {k: row[k] for k in ("id", "dataset", "conversation_id", "context", "messages",
                               "gold_response", "gold_action", "branches", "meta") if k in row}
    rec["split"] = row.get("split") or "train"
    rec["action_source"] = row.get("action_source") or "gold"
    return validate_row(rec, file=file, index=index)


def _side(row: dict, name: str, file: str, rid) -> list[dict[str, str]]:
    if name not in row:
        raise RecordError(file, rid, name, "missing field")
    side = row[name]
    if isinstance(side, list) and not side:
        raise RecordError(file, rid, name, "empty side")
    side = validate_messages(side, file, rid, name)
    for i, m in enumerate(side):
        if m["role"] == "system":
            raise RecordError(file, rid, f"{name}[{i}].role", "a response side cannot hold a system message")
        if not m["content"].strip():
            raise RecordError(file, rid, f"{name}[{i}].content", "empty message")
    if side[0]["role"] != "assistant" or side[-1]["role"] != "assistant":
        raise RecordError(file, rid, name, "a response side must start and end with an assistant turn")
    return side


def validate_pair(row: Any, file: str = "<memory>", index: int | None = None) -> TurnRecord:
    """Check one pair row; a malformed one raises RecordError naming file, record and field.
    Returns the record the pair was built from."""
    if not isinstance(row, dict):
        raise RecordError(file, index, None, f"expected an object, got {type(row).__name__}")
    rid = row.get("id", index)
    if "prompt" not in row:
        raise RecordError(file, rid, "prompt", "missing field")
    prompt = validate_messages(row["prompt"], file, rid, "prompt")
    if prompt[-1]["role"] != "user":
        raise RecordError(file, rid, "prompt", "the prompt must end with a user turn")
    chosen, rejected = _side(row, "chosen", file, rid), _side(row, "rejected", file, rid)
    if [m["content"].strip() for m in chosen] == [m["content"].strip() for m in rejected]:
        raise RecordError(file, rid, "rejected", "chosen and rejected are the same response")
    actions = {}
    for name in ("chosen_action", "rejected_action", "gold_action"):
        value = row.get(name)
        if not isinstance(value, str):
            raise RecordError(file, rid, name, f"expected an action label, got {value!r}")
        try:
            actions[name] = Action.parse(value)
        except ValueError as e:
            raise RecordError(file, rid, name, str(e)) from None
    if actions["chosen_action"] is actions["rejected_action"]:
        raise RecordError(file, rid, "rejected_action", "both sides take the same action; a pair contrasts actions")
    record = pair_to_record(row, file=file, index=index)
    if [m for m in prompt if m["role"] != "system"] != record.messages:
        raise RecordError(file, rid, "prompt", "does not match the record's messages")
    return record


def load_pairs(path, split: str = "train", *, relabelled: bool = False) -> tuple[list[dict[str, Any]], list[TurnRecord]]:
    """(pair rows, their records) from a pair DatasetDict; a malformed pair names file/record/field.

    `relabelled`: pairs written by the simulate stage, where both sides may take the same action
    (a failed answer loses to the gold answer), so only the record part is checked."""
    from act.io import load_dataset_dict

    dd = load_dataset_dict(path)
    if split not in dd:
        raise FileNotFoundError(f"{path}: no '{split}' split (found {sorted(dd)})")
    rows = [dict(r) for r in dd[split]]
    check = pair_to_record if relabelled else validate_pair
    records = [check(r, file=f"{path}/{split}", index=i) for i, r in enumerate(rows)]
    return rows, records


def render_sample(rows: Sequence[dict], n: int, *, seed: int = 0, title: str = "Preference pairs") -> str:
    """Markdown a person can read: `n` pairs drawn (seeded) across both gold actions."""
    rng = random.Random(seed)
    by_action: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        by_action.setdefault(row["gold_action"], []).append(i)
    picked: list[int] = []
    pools = {a: rng.sample(ix, len(ix)) for a, ix in sorted(by_action.items())}
    while len(picked) < min(n, len(rows)):
        for a in sorted(pools):
            if pools[a] and len(picked) < n:
                picked.append(pools[a].pop())
    out = [f"# {title}", "", f"{len(picked)} of {len(rows)} pairs, drawn across gold actions "
           f"({', '.join(f'{a}: {len(ix)}' for a, ix in sorted(by_action.items()))}).", ""]
    for k, i in enumerate(sorted(picked), 1):
        row = rows[i]
        out += [f"## {k}. `{row['id']}` (gold: {row['gold_action']})", ""]
        for m in row["prompt"]:
            text = m["content"]
            if m["role"] == "system" and len(text) > 600:
                text = text[:600] + f" ... [{len(m['content']) - 600} more characters]"
            out += [f"**{m['role']}**:", "", _quote(text), ""]
        for side in ("chosen", "rejected"):
            out += [f"### {side} ({row[f'{side}_action']})", ""]
            for m in row[side]:
                out += [f"**{m['role']}**:", "", _quote(m["content"]), ""]
        out.append("---")
        out.append("")
    return "\n".join(out)


def _quote(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in (text or "(empty)").splitlines())

