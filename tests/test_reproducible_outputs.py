"""Issue 23, item 13: two runs of the same training write byte-identical files, so a fresh
clone's `bash scripts/run.sh` reproduces the committed dvc.lock and leaves `git status` clean.

Measured causes: peft keeps `target_modules` as a set, so `adapter_config.json` listed them in the
string-hash order of each process (models/sft, models/act); and the training log in data/train
carried wall-clock figures (`train_runtime`, `time/sampling_s`, ...)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_SAVE = """
import sys
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM
from act.model.loading import save_adapter
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32))
model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, task_type="CAUSAL_LM", target_modules=[
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
save_adapter(model, sys.argv[1])
"""


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_an_adapter_saved_in_two_processes_is_byte_identical(tmp_path):
    """Different PYTHONHASHSEEDs stand for two runs (every process draws its own)."""
    digests = []
    for seed in ("1", "2", "3"):
        out = tmp_path / f"a{seed}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", _SAVE, str(out)], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        digests.append(_digest(out))
    assert digests[0] == digests[1] == digests[2]
    assert '"down_proj",\n    "gate_proj"' in (tmp_path / "a1" / "adapter_config.json").read_text()


def test_the_training_log_keeps_no_wall_clock_figures():
    from stages.train import without_clock

    entry = {"step": 3, "loss": 0.5, "train_runtime": 12.3, "train_samples_per_second": 4.0, "runtime": 1.0,
             "eval_steps_per_second": 2.0, "time/sampling_s": 30.1, "time/simulation_s": 0.1,
             "rewards/margins": 0.2, "relabel/wrong_action": 4}
    assert without_clock(entry) == {"step": 3, "loss": 0.5, "rewards/margins": 0.2, "relabel/wrong_action": 4}


def test_every_sampling_round_of_a_step_reaches_the_training_log():
    """With gradient accumulation each forward pass samples its own round at the same optimizer
    step: the log line of that step sums them (it kept only the last one before)."""
    from stages.train import rounds_by_step

    log = [{"step": 0, "samples/clarify": 1, "samples/answer": 3, "relabel/wrong_action": 2, "time/sampling_s": 9.0},
           {"step": 0, "samples/clarify": 0, "samples/answer": 4, "relabel/wrong_action": 1, "time/sampling_s": 8.0},
           {"step": 1, "samples/clarify": 2, "samples/answer": 2, "relabel/wrong_action": 0, "time/sampling_s": 7.0}]
    assert rounds_by_step(log) == {
        0: {"step": 0, "samples/clarify": 1, "samples/answer": 7, "relabel/wrong_action": 3},
        1: {"step": 1, "samples/clarify": 2, "samples/answer": 2, "relabel/wrong_action": 0}}
