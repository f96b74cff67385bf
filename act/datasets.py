"""The datasets the project knows, in one registry: their names, task kind, and which are the
paper's benchmarks (the `foreach` items of dvc.yaml's ingest, annotate and pairs stages).

    from act.datasets import BENCHMARKS, DATASETS, REGISTRY
    REGISTRY["ambigsql"].task   # "sql"

Adding a dataset: an entry here, its loader in `act/data/`, its branch in `stages/ingest.py`'s
LOADERS, and (for a benchmark) its foreach item in dvc.yaml and its `ingest.<name>` params.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: str
    """"text" (answers scored by token F1 / DROP-style F1) | "sql" (scored by execution)."""
    benchmark: bool
    """One of the paper's three corpora, processed by the DAG; False for a user's own corpus."""
    description: str = ""


REGISTRY: dict[str, DatasetInfo] = {d.name: d for d in (
    DatasetInfo("pacific", "text", True, "PACIFIC: conversational QA over financial tables and text"),
    DatasetInfo("abg_coqa", "text", True, "Abg-CoQA: ambiguous conversational reading comprehension"),
    DatasetInfo("ambigsql", "sql", True, "AmbigSQL: Spider questions made under-specified"),
    DatasetInfo("custom", "text", False, "a corpus of your own in the project's JSONL schema"),
)}

DATASETS: tuple[str, ...] = tuple(REGISTRY)
"""Every dataset name a record may carry."""
BENCHMARKS: tuple[str, ...] = tuple(n for n, d in REGISTRY.items() if d.benchmark)
"""The datasets the DAG runs on (`dataset:` in params.yaml is one of them)."""
TEXT_DATASETS: tuple[str, ...] = tuple(n for n, d in REGISTRY.items() if d.task == "text")


def check(name: str, *, choices: tuple[str, ...] = DATASETS, what: str = "dataset") -> str:
    """`name` if it is known, else a ValueError listing the known ones."""
    if name not in choices:
        raise ValueError(f"unknown {what} {name!r}; expected one of {list(choices)}")
    return name
