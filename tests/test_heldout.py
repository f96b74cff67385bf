"""`act evaluate`: the trained policies on a user's own annotated held-out set, end to end with the
real stages (ingest, annotate, evaluate) and a tiny model saved on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_train import DB, PARAMS, make_records, tiny  # noqa: F401  (module fixture)

from act.io import load_dataset_dict, save_dataset
from act.params import load_params

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAST = ["-S", "evaluate.max_new_tokens=4", "-S", "evaluate.max_turns=1", "-S", "tracking.enabled=false"]


def test_cli_scores_an_unseen_sql_set_on_a_split_of_any_name(tiny, tmp_path):  # noqa: F811
    from flows.cli import main

    base_dir, sft_dir, _, _ = tiny
    records = make_records(4)
    save_dataset(tmp_path / "heldout", {"unseen_dbs": [r.to_row() for r in records]})  # no train, no eval split
    out = tmp_path / "out"
    assert main(["evaluate", "--data", str(tmp_path / "heldout"), "--split", "unseen_dbs", "--base", str(base_dir),
                 "--adapter", f"sft={sft_dir}", "--databases", str(DB), "--out", str(out), "--params", str(PARAMS),
                 "-S", "evaluate.policies=[base, sft]", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"base", "sft"}
    assert all(metrics[p]["action"]["n"] == 4 for p in metrics)
    preds = load_dataset_dict(out / "predictions")["predictions"]
    assert {r["record_id"] for r in preds} == {r.id for r in records}
    assert (out / "report.html").stat().st_size > 1000


def test_custom_jsonl_corpus_ingested_annotated_and_evaluated_whole(tiny, tmp_path, monkeypatch):  # noqa: F811
    from stages import annotate, evaluate, ingest

    monkeypatch.setenv("ACT_TRACKING", "off")
    base_dir, sft_dir, _, _ = tiny
    params = load_params(PARAMS, {"evaluate.policies": ["base", "sft"], "evaluate.max_new_tokens": 4,
                                  "evaluate.max_turns": 1})
    ingest.run(params, dataset="custom", raw=FIXTURES / "custom.jsonl", out=tmp_path / "ingest",
               metrics_path=tmp_path / "m" / "ingest.json")
    annotate.run(params, dataset="custom", inp=tmp_path / "ingest", out=tmp_path / "annotate",
                 metrics_path=tmp_path / "m" / "annotate.json")
    dd = load_dataset_dict(tmp_path / "annotate")
    labelled = sum(1 for split in dd for r in dd[split] if r["gold_action"])
    out = tmp_path / "out"
    metrics = evaluate.run(params, data=tmp_path / "annotate", base=base_dir, adapters={"sft": str(sft_dir)},
                           databases=None, train_log=None, out=out / "pred", metrics_path=out / "metrics.json",
                           plots_dir=out / "plots", report=out / "report.html", split="all")
    assert metrics["sft"]["action"]["n"] == labelled > 0
    with pytest.raises(ValueError, match="no split 'test'.*--split all"):
        evaluate.run(params, data=tmp_path / "annotate", base=base_dir, adapters={"sft": str(sft_dir)},
                     databases=None, train_log=None, out=out / "p2", metrics_path=out / "m2.json",
                     plots_dir=out / "plots2", report=out / "r2.html", split="test")
