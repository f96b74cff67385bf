"""The ingest stage end to end: splits without leakage, budgets, metrics, atomic output."""

import json
from pathlib import Path

import pytest

from act.errors import RecordError
from act.io import load_dataset_dict
from act.params import load_params
from act.records import validate_row
from stages import ingest

ROOT = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures"


def _params(**over):
    return load_params(ROOT / "params.yaml", {"tracking.enabled": False, **over})


def _rows(out):
    dd = load_dataset_dict(out)
    return {s: [validate_row(row, file=s, index=i) for i, row in enumerate(dd[s])] for s in dd}


def test_ambigsql_splits_by_database_with_budgets(tmp_path):
    params = _params(**{"ingest.ambigsql.budget": 40, "ingest.ambigsql.eval_conversations": 20})
    m = ingest.run(params, dataset="ambigsql", raw=ROOT / "data/raw/spider", out=tmp_path / "out", metrics_path=tmp_path / "m.json")
    rows = _rows(tmp_path / "out")
    assert len(rows["train"]) == 40 and len(rows["eval"]) == 20
    train_dbs = {r.meta["db_id"] for r in rows["train"]}
    eval_dbs = {r.meta["db_id"] for r in rows["eval"]}
    assert train_dbs and eval_dbs and not train_dbs & eval_dbs
    seconds = m.pop("seconds")  # wall-clock: in the untracked timings file, not the DVC metric
    assert json.loads((tmp_path / "m.json").read_text()) == m
    assert json.loads((tmp_path / "m.timings.json").read_text()) == {"seconds": seconds}
    t = m["splits"]["train"]
    assert t["actions"]["clarify"] + t["actions"]["answer"] == 40
    assert sum(t["ambiguity_types"].values()) == 40 and t["ambiguity_types"]["none"] == t["actions"]["answer"]


def test_pacific_budget_counts_whole_dialogues_and_keeps_unlabeled(tmp_path):
    params = _params(**{"ingest.pacific.budget": 1, "ingest.pacific.eval_conversations": "all",
                        "ingest.pacific.eval_fraction": 0.5})
    m = ingest.run(params, dataset="pacific", raw=FIX / "pacific", out=tmp_path / "out", metrics_path=tmp_path / "m.json")
    rows = _rows(tmp_path / "out")
    assert {len({r.conversation_id for r in rows[s]}) for s in ("train", "eval")} == {1}
    assert not {r.conversation_id for r in rows["train"]} & {r.conversation_id for r in rows["eval"]}
    assert len(rows["unlabeled"]) == 1 and m["splits"]["unlabeled"]["actions"]["unlabeled"] == 1
    assert m["records"] == 6


def test_custom_dataset_reads_its_jsonl(tmp_path):
    params = _params(**{"ingest.custom.eval_fraction": 0.5})
    m = ingest.run(params, dataset="custom", raw=FIX / "custom.jsonl", out=tmp_path / "out", metrics_path=tmp_path / "m.json")
    assert m["records"] == 3 and m["splits"]["train"]["groups"] + m["splits"]["eval"]["groups"] == 2


def test_bad_input_stops_and_leaves_previous_output_intact(tmp_path):
    out = tmp_path / "out"
    ingest.run(_params(), dataset="abg_coqa", raw=FIX / "abg_coqa", out=out, metrics_path=tmp_path / "m.json")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    raw = tmp_path / "raw"
    raw.mkdir()
    data = json.loads((FIX / "abg_coqa/coqa_abg_val.json").read_text())
    data["data"][1]["target_turn"]["answer"] = ["red"]  # story1's second record: both stories stay
    (raw / "coqa_abg_val.json").write_text(json.dumps(data))
    with pytest.raises(RecordError, match=r"record story1\|3\|1, field 'target_turn.answer'"):
        ingest.run(_params(), dataset="abg_coqa", raw=raw, out=out, metrics_path=tmp_path / "m.json")
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert len(_rows(out)["train"]) + len(_rows(out)["eval"]) == 3
    m = ingest.run(_params(**{"ingest.on_error": "skip"}), dataset="abg_coqa", raw=raw, out=out, metrics_path=tmp_path / "m.json")
    assert m["skipped"] == 1 and m["skipped_by_field"] == {"target_turn.answer": 1} and m["records"] == 2


def test_interrupted_write_keeps_previous_output(tmp_path, monkeypatch):
    out = tmp_path / "out"
    ingest.run(_params(), dataset="abg_coqa", raw=FIX / "abg_coqa", out=out, metrics_path=tmp_path / "m.json")
    before = {p.name: p.read_bytes() for p in out.rglob("*.arrow")}

    from datasets import DatasetDict

    def crash(self, *a, **k):
        raise KeyboardInterrupt("power cut mid-write")

    monkeypatch.setattr(DatasetDict, "save_to_disk", crash)
    with pytest.raises(KeyboardInterrupt):
        ingest.run(_params(), dataset="abg_coqa", raw=FIX / "abg_coqa", out=out, metrics_path=tmp_path / "m.json")
    assert {p.name: p.read_bytes() for p in out.rglob("*.arrow")} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]


def test_cli_help_is_fast_and_names_options(capsys):
    with pytest.raises(SystemExit):
        ingest.main(["--help"])
    assert "--dataset" in capsys.readouterr().out
