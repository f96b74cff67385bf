"""One home per vocabulary: datasets, headline metrics, methods, mean/std over seeds; every user
reads them from there."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from act.datasets import BENCHMARKS, DATASETS, REGISTRY, check

ROOT = Path(__file__).resolve().parents[1]


def test_ingest_has_a_loader_for_every_registered_dataset():
    from stages.ingest import LOADERS

    assert set(LOADERS) == set(DATASETS)


def test_the_dag_runs_on_the_benchmarks():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert tuple(stages["ingest"]["foreach"]) == BENCHMARKS
    assert tuple(stages["annotate"]["foreach"]) == BENCHMARKS == tuple(stages["pairs"]["foreach"])


def test_every_dataset_has_a_task_metric():
    from act.metrics.task import TASK_DATASETS

    assert set(TASK_DATASETS) == set(DATASETS)
    assert {d.task for d in REGISTRY.values()} == {"text", "sql"}


def test_unknown_dataset_is_named():
    assert check("ambigsql") == "ambigsql"
    with pytest.raises(ValueError, match=r"unknown --dataset 'spider'.*'ambigsql'"):
        check("spider", what="--dataset")


def test_ablation_headline_is_the_report_headline():
    from act.metrics.summary import HEADLINE
    from act.metrics.paired import headline

    table = [{"metric": f"{lvl}.{m}"} for lvl, m, _ in reversed(HEADLINE)] + [{"metric": "turn.n"}]
    assert headline(table) == [f"{lvl}.{m}" for lvl, m, _ in HEADLINE]


def test_ablation_mean_std_is_the_seed_summary():
    from act.metrics.summary import combine_seeds
    from act.metrics.paired import summarize

    values = [0.25, 0.5, 1.0]
    (row,) = summarize([{"method": "act", "seed": i, "metric": "action.accuracy", "value": v}
                        for i, v in enumerate(values)])
    combined = combine_seeds([{"action": {"accuracy": v}} for v in values])["action"]
    assert row["mean"] == pytest.approx(combined["accuracy"]) == pytest.approx(0.5833333)
    assert row["std"] == pytest.approx(combined["accuracy_std"]) == pytest.approx(0.3818813)
    assert row["n"] == 3
