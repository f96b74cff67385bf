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


def test_data_seed_fixes_the_data_across_training_seeds(tmp_path):
    """ingest.data_seed draws the split, budget and perturbations; -1 (default) follows `seed`."""
    def texts(seed, data_seed):
        out = tmp_path / f"s{seed}-d{data_seed}"
        over = {"seed": seed, "ingest.data_seed": data_seed, "ingest.ambigsql.budget": 30,
                "ingest.ambigsql.eval_conversations": 15}
        ingest.run(_params(**over), dataset="ambigsql", raw=ROOT / "data/raw/spider", out=out, metrics_path=out / "m.json")
        return {s: sorted((r.conversation_id, r.messages[-1]["content"]) for r in rs) for s, rs in _rows(out).items()}

    assert texts(0, 0) == texts(1, 0) == texts(2, 0)
    assert texts(1, -1) == texts(1, 1) != texts(0, 0)


def test_validation_slice_holds_out_whole_training_databases(tmp_path):
    from act.data.splits import carve_validation, validation_group

    params = _params(**{"ingest.ambigsql.budget": 60, "ingest.ambigsql.eval_conversations": 10})
    ingest.run(params, dataset="ambigsql", raw=ROOT / "data/raw/spider", out=tmp_path / "out", metrics_path=tmp_path / "m.json")
    rows = _rows(tmp_path / "out")
    train, val = carve_validation(rows["train"], fraction=0.2, seed=0)
    assert len(train) + len(val) == 60 and len(val) >= 12 and train
    held = {validation_group(r) for r in val}
    assert held and not held & {validation_group(r) for r in train}
    assert not held & {r.meta["db_id"] for r in rows["eval"]}  # carved from training databases only
    again = carve_validation(list(reversed(rows["train"])), fraction=0.2, seed=0)[1]
    assert sorted(r.id for r in again) == sorted(r.id for r in val)  # input order does not matter
    with pytest.raises(ValueError, match="fraction"):
        carve_validation(rows["train"], fraction=1.0, seed=0)
