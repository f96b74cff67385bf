"""DVC plot data: what `act.report.write_plot_data` writes is what dvc.yaml's `plots:` section draws,
and the ablation plot's bars stay within [0, 1] with readable labels."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from act.report import PLOT_DATA, ablation_bars, metric_label, write_plot_data, write_plots

ROOT = Path(__file__).resolve().parents[1]

METRICS = {
    "base": {"action": {"macro_f1": 0.4, "clarify_f1": 0.5, "n": 3}, "turn": {"answer_score": 0.0, "n_answer": 1},
             "trajectory": {"score": 0.25, "success_rate": 0.0, "n": 3}},
    "act": {"action": {"macro_f1": 0.9, "clarify_f1": 1.0, "n": 3}, "turn": {"answer_score": 1.0, "n_answer": 1},
            "trajectory": {"score": 0.75, "success_rate": 0.5, "n": 3}},
}
ROWS = [{"policy": p, "seed": 0, "gold_action": g, "pred_action": pred}
        for p, pairs in {"base": [("clarify", "answer"), ("answer", "answer"), ("clarify", "clarify")],
                         "act": [("clarify", "clarify"), ("answer", "answer"), ("clarify", "clarify")]}.items()
        for g, pred in pairs]
LOG = ([{"step": s, "rewards/margins": 0.1 * s, "rewards/accuracies": 0.5} for s in (1, 2, 3)]
       + [{"step": s, "probe/rewards/margins": -0.2 + s / 10, "probe/rewards/accuracies": 0.25} for s in (0, 5)]
       + [{"step": 1, "samples/clarify": 3, "samples/answer": 1, "samples/policy_wins": 2},
          {"step": 2, "samples/clarify": 0, "samples/answer": 4, "samples/policy_wins": 0}])


def _tsv(path):
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def _dvc_plots() -> dict[str, dict]:
    """dvc.yaml's top-level plots: {id: definition}, ids being titles or paths."""
    out = {}
    for entry in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]:
        if isinstance(entry, str):
            out[entry] = {}
        else:
            (key, value), = entry.items()
            out[key] = value or {}
    return out


def test_plot_data_holds_the_series(tmp_path):
    written = write_plot_data(METRICS, ROWS, LOG, tmp_path)
    names = sorted(str(p.relative_to(tmp_path)) for p in written)
    assert names == ["confusion/act.json", "confusion/base.json", "headline.json", "probe.tsv", "reward_margins.tsv",
                     "sampling_rounds.tsv"]
    margins = _tsv(tmp_path / "reward_margins.tsv")
    assert [(r["step"], float(r["margin"]), float(r["accuracy"])) for r in margins] == [
        ("1", pytest.approx(0.1), 0.5), ("2", pytest.approx(0.2), 0.5), ("3", pytest.approx(0.3), 0.5)]
    assert [(r["step"], float(r["margin"])) for r in _tsv(tmp_path / "probe.tsv")] == [
        ("0", pytest.approx(-0.2)), ("5", pytest.approx(0.3))]
    rounds = _tsv(tmp_path / "sampling_rounds.tsv")  # 3 of 4 samples clarify, 2 of 4 won; then none
    assert [(float(r["clarify_share"]), float(r["policy_wins_share"])) for r in rounds] == [(0.75, 0.5), (0.0, 0.0)]
    headline = json.loads((tmp_path / "headline.json").read_text())
    assert [r for r in headline if r["policy"] == "act"] == [
        {"policy": "act", "metric": "act: Action Macro F1", "score": 0.9},
        {"policy": "act", "metric": "act: Clarify F1", "score": 1.0},
        {"policy": "act", "metric": "act: Turn task score", "score": 1.0},
        {"policy": "act", "metric": "act: Trajectory score", "score": 0.75},
        {"policy": "act", "metric": "act: Trajectory success", "score": 0.5}]
    assert len(headline) == 10
    confusion = json.loads((tmp_path / "confusion/base.json").read_text())
    assert confusion == [{"gold": "clarify", "predicted": "answer"}, {"gold": "answer", "predicted": "answer"},
                         {"gold": "clarify", "predicted": "clarify"}]


def test_no_training_log_means_no_curves(tmp_path):
    written = write_plot_data(METRICS, ROWS, None, tmp_path)
    assert not [p for p in written if p.suffix == ".tsv"] and not list(tmp_path.glob("*.tsv"))


def test_dvc_yaml_draws_what_the_evaluate_stage_writes(tmp_path):
    """Every data plot in dvc.yaml names a file (or folder of per-policy files) write_plot_data writes
    and fields its rows have; every PLOT_DATA entry is drawn; every image named is a PNG write_plots makes."""
    write_plot_data(METRICS, ROWS, LOG, tmp_path)
    pngs = {p.name for p in write_plots(METRICS, ROWS, LOG, tmp_path / "png")}
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]
    plots_dir = stage["cmd"].split("--plots ")[1].split()[0]
    drawn = set()
    for key, spec in _dvc_plots().items():
        if key.endswith(".png"):
            assert key.startswith(plots_dir + "/") and Path(key).name in pngs, key
            continue
        files = spec["y"] if isinstance(spec.get("y"), dict) else {key: spec["y"]}
        assert spec.get("template") in {"simple", "linear", "confusion", "bar_horizontal"}, key
        for path, fields in files.items():
            rel = path.removeprefix(plots_dir + "/")
            assert rel in PLOT_DATA, f"{key}: {path} is not a plot data file of the evaluate stage"
            drawn.add(rel)
            fields = [fields] if isinstance(fields, str) else fields
            for field in [spec["x"], *fields]:
                assert field in PLOT_DATA[rel], f"{key}: {path} has no field {field!r}"
            target = tmp_path / rel
            files = sorted(target.glob("*.json")) if target.is_dir() else [target]
            rows = [r for f in files for r in (json.loads(f.read_text()) if f.suffix == ".json" else _tsv(f))]
            assert rows and all(set(r) == set(PLOT_DATA[rel]) for r in rows), path
    assert drawn == set(PLOT_DATA)


def test_ablation_bars_stay_in_unit_range_and_drop_all_zero_metrics():
    table = [
        {"method": "act", "metric": "action.macro_f1", "mean": 0.1, "std": 0.3, "n": 3},
        {"method": "sft", "metric": "action.macro_f1", "mean": 0.9, "std": 0.3, "n": 3},
        {"method": "act", "metric": "action.clarify_f1", "mean": 0.5, "std": 0.1, "n": 3},
        {"method": "sft", "metric": "action.clarify_f1", "mean": 0.0, "std": 0.0, "n": 3},
        {"method": "act", "metric": "trajectory.score", "mean": 0.0, "std": 0.0, "n": 3},
        {"method": "sft", "metric": "trajectory.score", "mean": 0.0, "std": 0.0, "n": 3},
        {"method": "act", "metric": "action.weighted_f1", "mean": 0.7, "std": 0.0, "n": 3},  # not an ablation metric
    ]
    shown, flat, bars = ablation_bars(table, ["act", "sft"])
    assert shown == ["action.macro_f1", "action.clarify_f1"] and flat == ["trajectory.score"]
    means, low, high = bars["act"]
    assert means == [0.1, 0.5] and low == [pytest.approx(0.1), 0.1] and high == [0.3, 0.1]
    means, low, high = bars["sft"]
    assert low == [0.3, 0.0] and high == [pytest.approx(0.1), 0.0]
    for means, low, high in bars.values():
        assert all(0.0 <= m - lo and m + hi <= 1.0 for m, lo, hi in zip(means, low, high))
    assert [metric_label(k) for k in shown + flat] == ["Action Macro F1", "Clarify F1", "Trajectory score"]
    assert metric_label("trajectory.mean_clarify_turns") == "trajectory: mean clarify turns"
