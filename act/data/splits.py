"""Train/eval splits and the paper's data budgets, all seeded.

Split by *group* (PACIFIC: dialogue, Abg-CoQA: story, AmbigSQL: database) so no conversation,
story or schema appears in both splits; budgets then sample whole *conversations* inside each
split. Ordering never depends on input order: groups and conversations are sorted before the
seeded shuffle, so the same seed gives the same split on any machine.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Sequence

from act.records import TurnRecord


def _rng(seed: int, dataset: str, purpose: str) -> random.Random:
    # A string seed is hashed deterministically by `random` (unlike hash()), so each dataset and
    # purpose gets its own stream and adding a dataset never reshuffles another.
    return random.Random(f"{seed}:{dataset}:{purpose}")


def _take(items: list[str], budget: "int | str", rng: random.Random) -> list[str]:
    items = sorted(items)
    rng.shuffle(items)
    return items if budget == "all" else items[: int(budget)]


def split_records(
    grouped: Sequence[tuple[str, TurnRecord]],
    *,
    dataset: str,
    seed: int,
    eval_fraction: float,
    budget: "int | str",
    eval_conversations: "int | str",
) -> dict[str, list[TurnRecord]]:
    """Assign `train`/`eval` to (group, record) pairs and apply the conversation budgets.

    Records already in split `unlabeled` pass through untouched. At least one group goes to each
    split when there are two or more groups."""
    labeled = [(g, r) for g, r in grouped if r.split != "unlabeled"]
    groups = sorted({g for g, _ in labeled})
    rng = _rng(seed, dataset, "split")
    rng.shuffle(groups)
    n_eval = min(max(1, math.ceil(eval_fraction * len(groups))), max(len(groups) - 1, 0)) if groups else 0
    eval_groups = set(groups[:n_eval])
    convs: dict[str, set[str]] = {"train": set(), "eval": set()}
    for g, r in labeled:
        convs["eval" if g in eval_groups else "train"].add(r.conversation_id)
    keep = {
        "train": set(_take(list(convs["train"]), budget, _rng(seed, dataset, "budget"))),
        "eval": set(_take(list(convs["eval"]), eval_conversations, _rng(seed, dataset, "eval"))),
    }
    out: dict[str, list[TurnRecord]] = {"train": [], "eval": []}
    for g, r in labeled:
        split = "eval" if g in eval_groups else "train"
        if r.conversation_id in keep[split]:
            out[split].append(dataclasses.replace(r, split=split))
    check_not_empty(out, dataset=dataset, groups=groups, eval_conversations=eval_conversations, budget=budget)
    unlabeled = [r for _, r in grouped if r.split == "unlabeled"]
    if unlabeled:
        out["unlabeled"] = unlabeled
    return out


GROUP_OF = {"pacific": "dialogue", "abg_coqa": "story", "ambigsql": "database", "custom": "`group` value"}
"""What a split group is, per dataset (the unit that never appears in both splits)."""


def check_not_empty(out: dict[str, list], *, dataset: str, groups: list[str], eval_conversations: "int | str",
                    budget: "int | str") -> None:
    """An empty train or eval split would be saved as a dataset with no columns that every later
    stage fails on; refuse it here, naming the split and what emptied it (the param, or the
    corpus having a single group)."""
    from act.errors import InputError

    for split, param, value in (("eval", "eval_conversations", eval_conversations), ("train", "budget", budget)):
        if out[split]:
            continue
        if value != "all" and int(value) == 0:
            cause = f"ingest.{dataset}.{param} is 0"
        elif split == "eval" and len(groups) < 2:
            unit = GROUP_OF.get(dataset, "group")
            cause = (f"every labeled conversation shares one {unit} ({len(groups)} in all), and the eval split needs "
                     f"one of its own: give the corpus conversations of a second {unit}")
        else:
            cause = f"no conversation of {len(groups)} group(s) was assigned to it"
        raise InputError(f"ingest {dataset}: the {split} split would be empty: {cause}")


def validation_group(record: TurnRecord) -> str:
    """The unit a validation slice holds out whole: AmbigSQL's database (`meta["db_id"]`), so the
    slice scores schemas training never saw, as the eval split does; else the conversation."""
    db = record.meta.get("db_id")
    return str(db) if db else record.conversation_id


def carve_validation(records: Sequence[TurnRecord], *, fraction: float, seed: int,
                     group_of=validation_group) -> tuple[list[TurnRecord], list[TurnRecord]]:
    """(train, validation) out of a *training* split: whole groups (`group_of`) go to validation in
    a seeded order until it holds at least `fraction` of the conversations, passing over a group
    that would take it past 1.5 x `fraction` (one large database must not take half the budget);
    at least one group goes to each side. The eval split is never touched, so hyperparameters picked on the slice (e.g.
    SFT epochs, scripts/sft_epochs.py) never see the records the study is scored on."""
    from act.errors import InputError

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    groups: dict[str, set[str]] = {}
    for r in records:
        groups.setdefault(group_of(r), set()).add(r.conversation_id)
    if len(groups) < 2:
        raise InputError(f"a validation slice needs two groups of conversations; the records have {len(groups)}")
    order = sorted(groups)
    _rng(seed, "validation", "carve").shuffle(order)
    total = sum(len(c) for c in groups.values())
    held: set[str] = set()
    count = 0
    for g in order:
        if count >= fraction * total:
            break
        if count + len(groups[g]) > 1.5 * fraction * total:
            continue
        held.add(g)
        count += len(groups[g])
    if not held:  # every group is larger than the cap: the smallest one
        held.add(min(order, key=lambda g: len(groups[g])))
    if len(held) == len(groups):  # at least one group stays in training
        held.discard(order[-1])
    train = [r for r in records if group_of(r) not in held]
    val = [r for r in records if group_of(r) in held]
    return train, val
