"""The study's scripts: `scripts/sft_epochs.py` (SFT epochs picked on a validation slice of the
training databases) and `scripts/study_report.py` (the study's tables, plot and ablation reports
rebuilt from a sweep's committed run files)."""

import csv
import importlib.util
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from act.io import save_dataset
from act.records import Branch, TurnRecord

ROOT = Path(__file__).resolve().parents[1]


def _script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# --- sft_epochs ---------------------------------------------------------------------------------

def test_pick_epoch_best_validation_sql_ties_to_fewer_epochs():
    pick = _script("sft_epochs").pick_epoch
    rows = [{"epoch": 1, "turn.answer_score": 0.0}, {"epoch": 2, "turn.answer_score": 0.091},
            {"epoch": 3, "turn.answer_score": 0.091}, {"epoch": 4, "turn.answer_score": None}]
    assert pick(rows)["epoch"] == 2
    assert pick([{"epoch": 1, "turn.answer_score": None}, {"epoch": 2, "turn.answer_score": 0.0}])["epoch"] == 1
    with pytest.raises(ValueError, match="no epochs"):
        pick([])


def _sql_records(n_db=4, per_db=3):
    out = []
    for d in range(n_db):
        db = f"db{d}"
        for i in range(per_db):
            k = d * per_db + i
            clarify = i % 2 == 0
            sql = "SELECT name FROM singer ORDER BY age DESC LIMIT 1" if clarify else "SELECT count(*) FROM singer"
            out.append(TurnRecord(
                id=f"ambigsql/{k}", dataset="ambigsql", conversation_id=f"c{k}", split="train",
                context="CREATE TABLE singer(name TEXT, age INT)",
                messages=[{"role": "user", "content": "Show the singer." if clarify else "How many singers?"}],
                gold_response="Which singer do you mean: the oldest or the youngest?" if clarify else sql,
                gold_action="clarify" if clarify else "answer",
                branches=[Branch("Show the oldest singer." if clarify else "How many singers?",
                                 "The oldest." if clarify else None, sql, [sql])],
                meta={"db_id": db}))
    return out


@pytest.mark.slow
def test_sft_epochs_end_to_end_on_tiny_model(tmp_path, tiny_base):
    """Real SFT (2 epochs, an adapter saved per epoch) and the real evaluate stage per epoch on the
    validation databases; the report picks by its rule, and the user's files beside it survive."""
    records = _sql_records()
    save_dataset(tmp_path / "annotate", {"train": [r.to_row() for r in records], "eval": [records[0].to_row()]})
    for d in range(4):
        (tmp_path / "database" / f"db{d}").mkdir(parents=True)
        conn = sqlite3.connect(tmp_path / "database" / f"db{d}" / f"db{d}.sqlite")
        conn.executescript("CREATE TABLE singer(name TEXT, age INT); INSERT INTO singer VALUES ('ann', 30), ('bo', 50);")
        conn.commit()
        conn.close()
    out = tmp_path / "out"
    (out / "work").mkdir(parents=True)
    (out / "work" / "mine.txt").write_text("keep me")  # a user's folder named like the old scratch dir
    cmd = [sys.executable, str(ROOT / "scripts" / "sft_epochs.py"), "--data", str(tmp_path / "annotate"),
           "--base", str(tiny_base), "--databases", str(tmp_path / "database"), "--out", str(out),
           "--max-epochs", "2", "--fraction", "0.25", "--params", str(ROOT / "params.yaml"),
           "-S", "sft.batch_size=4", "-S", "evaluate.max_turns=1", "-S", "evaluate.max_new_tokens=16"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "sft_epochs.json").read_text())
    assert [r["epoch"] for r in result["epochs"]] == [1, 2]
    assert result["pick"] == _script("sft_epochs").pick_epoch(result["epochs"])["epoch"]
    # whole databases held out: one of four (3 of 12 conversations = the 0.25 asked)
    assert len(result["validation_groups"]) == 1 and result["validation_conversations"] == 3
    assert result["train_conversations"] == 9
    assert all(isinstance(r["sft_loss"], float) for r in result["epochs"])
    assert f"Pick: **{result['pick']} epochs**" in (out / "sft_epochs.md").read_text()
    assert (out / "work" / "mine.txt").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["sft_epochs.json", "sft_epochs.md", "work"]  # scratch removed


# --- study_report -------------------------------------------------------------------------------

def _auc(run: Path, policy: str) -> float:
    return json.loads((run / "evaluate.json").read_text())[policy]["action"]["action_auc"]


@pytest.fixture
def study(tmp_path):
    """The committed AmbigSQL study's runs, with its ACT w/o simulation seed 0 replaced by one made
    from ACT seed 0's files with its relabel counts changed (17 clarifying samples won on their
    action: right_action)."""
    src = ROOT / "reports" / "study-ambigsql" / "runs"
    dst = tmp_path / "study" / "runs"
    shutil.copytree(src, dst)
    nosim = dst / "act_no_simulation-s0"
    shutil.rmtree(nosim, ignore_errors=True)
    shutil.copytree(dst / "act-s0", nosim)
    train = json.loads((nosim / "train.json").read_text())
    train.update({"relabel/clarify_success": 0, "relabel/clarify_failure": 0, "relabel/right_action": 17})
    (nosim / "train.json").write_text(json.dumps(train))
    return tmp_path / "study"


def test_study_report_tables_paired_differences_and_ablations(study):
    assert _script("study_report").main([str(study)]) == 0
    runs = study / "runs"
    seeds = sorted(int(p.name.rpartition("-s")[2]) for p in runs.glob("act-s*"))
    assert len(seeds) >= 2
    md = (study / "study.md").read_text()
    # ACT - SFT action_auc per seed, from the same experiment's two policies
    diffs = [_auc(runs / f"act-s{s}", "act") - _auc(runs / f"act-s{s}", "sft") for s in seeds]
    row = next(line for line in md.splitlines() if line.startswith("| ACT − SFT | action.action_auc |"))
    assert row.split(" | ")[2] == ", ".join(f"{d:+.3f}" for d in diffs)
    # the unsimulated run shows its right_action wins and no trajectory success rate
    assert "right_action" in md and "17 clarifying samples won on their action, unsimulated" in md
    assert (study / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # act ablate's reports cover every seed under runs/, not the last sweep's
    with open(study / "ablations_seeds.csv", newline="") as fh:
        seen = {(r["method"], int(r["seed"])) for r in csv.DictReader(fh) if r["metric"] == "action.action_auc"}
    assert {("act", s) for s in seeds} | {("sft", s) for s in seeds} | {("act_no_simulation", 0)} <= seen
    ablations = (study / "ablations.md").read_text()
    assert f"over {len(seeds)} seed(s)" in ablations and "| act_no_simulation | 0 |" in ablations


def test_study_report_without_runs_is_one_error_line(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert _script("study_report").main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "evaluate.json" in err[0]
