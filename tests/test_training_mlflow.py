"""The MLflow runs of the sft and train stages, as the stages log them: the project's params (the
stage's params section, each once), not the ~180 TrainingArguments of the trainer's stock MLflow
callback, and the training curves as metrics with their steps. The experiment opens on its
training runs (tagged `mlflow.experimentKind`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from act.params import RolesParams

ROOT = Path(__file__).resolve().parents[1]
DB = ROOT / "data/raw/spider/database"

TRAINING_ARGUMENTS = ("_name_or_path", "accelerator_config", "learning_rate", "per_device_train_batch_size",
                      "output_dir", "report_to", "logging_steps", "beta", "max_length")
"""A few of the TrainingArguments / DPOConfig names the stock callback logs as params."""


@pytest.fixture
def store(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("ACT_TRACKING", "on")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("ACT_PARENT_RUN_ID", "DVC_STAGE", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)
    return MlflowClient(tracking_uri=uri)


@pytest.mark.slow
def test_sft_and_train_runs_carry_the_project_params_and_the_curves(tmp_path, store, tiny_base):
    from act.io import save_dataset
    from act.pairs import build_pairs
    from act.params import load_params
    from act.roles import build_role
    from act.tracking import flatten
    from stages import sft, simulate, train
    from tests.test_train import make_records

    records = make_records()
    save_dataset(tmp_path / "annotate", {"train": [r.to_row() for r in records]})
    pairs, _ = build_pairs(records, build_role("rejecter", RolesParams()))
    save_dataset(tmp_path / "pairs", {"train": pairs, "eval": pairs[:4]})
    params = load_params(ROOT / "params.yaml", {
        "sft.epochs": 1, "sft.batch_size": 4, "simulate.max_new_tokens": 4, "train.max_steps": 2,
        "train.batch_size": 4, "train.max_length": 256, "sft.max_length": 256, "tracking.experiment": "t",
    })
    m = tmp_path / "m"
    sft.run(params, base=tiny_base, data=tmp_path / "annotate", out=tmp_path / "sft", metrics_path=m / "sft.json")
    simulate.run(params, base=tiny_base, sft=tmp_path / "sft", pairs_dir=tmp_path / "pairs", databases=DB,
                 out=tmp_path / "sim", metrics_path=m / "simulate.json")
    train.run(params, base=tiny_base, sft=tmp_path / "sft", pairs_dir=tmp_path / "pairs", simulated=tmp_path / "sim",
              databases=DB, out=tmp_path / "act", log_dir=tmp_path / "trainlog", metrics_path=m / "train.json")

    exp = store.get_experiment_by_name("t")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = {r.data.tags["act.stage"]: r for r in store.search_runs([exp.experiment_id])}
    for stage, section in (("sft", params.sft), ("train", params.train)):
        run = runs[stage]
        assert run.info.status == "FINISHED"
        expected = {"seed", "dataset", *(f"{stage}.{k}" for k in flatten(section))}
        assert set(run.data.params) == expected, sorted(set(run.data.params) ^ expected)
        assert not [p for p in run.data.params if p in TRAINING_ARGUMENTS]
        assert run.data.params[f"{stage}.learning_rate"] == str(section.learning_rate)
        # the per-step curves, with their steps
        loss = store.get_metric_history(run.info.run_id, "loss")
        assert [h.step for h in loss] == sorted(h.step for h in loss) and len(loss) >= 2, loss
    assert run.data.params["train.beta"] == str(params.train.beta)  # once, the project's value
    margins = store.get_metric_history(runs["train"].info.run_id, "rewards/margins")
    assert {h.step for h in margins} >= {1, 2}
