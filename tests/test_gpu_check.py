"""The GPU check kit on the CPU: benchmarks/gpu_check.py's tiny mode end to end (slow), the wheel
bundle of scripts/gpu_bundle.sh (slow, needs the package index), and the pieces a GPU run relies
on: the recipe runs at the profile's settings, its rows fill max_length, a phase that runs out of
memory under the 24 GB cap is measured again uncapped, and pytest's JUnit outcomes are read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
import gpu_recipe  # noqa: E402


def test_recipe_runs_at_the_profiles_settings(tmp_path):
    """Only the number of steps is cut: batch, accumulation, lengths and the QLoRA knobs are the profile's."""
    import yaml

    profile = yaml.safe_load((ROOT / "profiles/zephyr-24gb.yaml").read_text(encoding="utf-8"))
    p, over, sft_recs, pairs = gpu_recipe.recipe_params(tmp_path, gpu_recipe.Sizes())
    for key, value in profile.items():
        if key in ("base.model", "sft.epochs"):  # a local random model; one epoch of exactly 2 steps
            continue
        section, _, name = key.partition(".")
        assert (getattr(getattr(p, section), name) if name else getattr(p, section)) == value, key
    assert p.base.model == str(tmp_path / "weights") and p.sft.epochs == 1 and p.train.max_steps == 1
    assert sft_recs == p.sft.batch_size * p.sft.gradient_accumulation_steps * 2
    assert pairs == p.train.batch_size * p.train.gradient_accumulation_steps
    assert p.train.on_policy and p.train.sampling == "every"


def test_out_of_memory_under_the_cap_is_measured_again_uncapped():
    import torch

    calls = []

    def phase(rec):
        calls.append(1)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        rec["steps"] = 3

    record: dict = {}
    gpu_recipe.capped("train", record, 23.4, phase)
    assert len(calls) == 2
    assert record["train"]["oom_at_cap_gib"] == 23.4 and "2.00 GiB" in record["train"]["oom"]
    assert record["train"]["steps"] == 3 and "seconds" in record["train"]
    record = {}
    gpu_recipe.capped("sft", record, 23.4, lambda rec: rec.update(steps=2))
    assert record["sft"]["cap_gib"] == 23.4 and "oom_at_cap_gib" not in record["sft"]


def test_junit_outcomes_are_read_per_test(tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text("""<?xml version="1.0"?><testsuites><testsuite>
      <testcase classname="tests.test_gpu" name="test_a"/>
      <testcase classname="tests.test_gpu" name="test_b"><failure message="assert 1 == 2">trace</failure></testcase>
      <testcase classname="tests.test_devices" name="test_c"><skipped message="needs CUDA"/></testcase>
      <testcase classname="tests.test_devices" name="test_d"><error message="fixture broke"/></testcase>
    </testsuite></testsuites>""", encoding="utf-8")
    assert gpu_check.junit_outcomes(xml) == {
        "tests.test_gpu::test_a": {"outcome": "passed"},
        "tests.test_gpu::test_b": {"outcome": "failed", "message": "assert 1 == 2"},
        "tests.test_devices::test_c": {"outcome": "skipped", "message": "needs CUDA"},
        "tests.test_devices::test_d": {"outcome": "error", "message": "fixture broke"},
    }


def test_gpu_test_files_are_those_with_gpu_marks():
    files = gpu_check.gpu_test_files()
    assert "tests/test_gpu.py" in files and "tests/test_devices.py" in files
    assert "tests/test_gpu_check.py" not in files
    assert all("@pytest.mark.gpu" in (ROOT / f).read_text(encoding="utf-8") for f in files)


@pytest.mark.parametrize("cuda", [True, False])
def test_template_overrides_are_valid_params(cuda):
    from act.params import load_params

    p = load_params(ROOT / "params.yaml", gpu_check.template_overrides(cuda))
    assert p.train.max_steps == 4 and p.sft.gradient_checkpointing and p.train.gradient_checkpointing
    assert p.train.quantization == ("nf4" if cuda else "none") and p.sft.optim == ("paged_adamw_8bit" if cuda else "adamw_torch")


@pytest.mark.slow
def test_recipe_rows_fill_max_length_with_a_32k_tokenizer():
    """The 7B run's SFT rows are exactly max_length tokens (the widest batch the recipe allows)."""
    from act.chat import completion_length, fit_prompt, prepare_tokenizer, tokenize_chat
    from act.records import with_system
    from act.training.sft import gold_conversation

    texts = gpu_recipe.corpus_texts()
    sizes = gpu_recipe.Sizes()
    tok = prepare_tokenizer(gpu_recipe.build_tokenizer(texts, sizes.vocab_size))
    assert len(tok) == 32000
    for r in gpu_recipe.make_records(texts, 4, "train", sizes):
        prompt = with_system(r)
        gold = gold_conversation(r)[len(prompt):]
        fitted = fit_prompt(tok, prompt, 1536, reserve=completion_length(tok, prompt, gold))
        assert fitted.fits and fitted.truncated
        assert len(tokenize_chat(tok, fitted.messages + gold)["input_ids"]) == 1536


@pytest.mark.slow
def test_cpu_tiny_check_runs_every_phase(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--out", str(out), "--cpu-tiny",
                           "--families", "zephyr", "--work", str(tmp_path / "work")],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    report = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "phase recipe_7b" in (out / "gpu_check.log").read_text(encoding="utf-8")
    assert report["mode"] == "cpu-tiny" and report["machine"]["torch"]
    phases = report["phases"]
    assert {name: ph["status"] for name, ph in phases.items()} == {"gpu_tests": "ok", "recipe_7b": "ok", "templates": "ok"}

    tests = phases["gpu_tests"]["tests"]
    assert "tests.test_gpu::test_greedy_policy_samples_on_cuda" in tests
    assert all(t == {"outcome": "skipped", "message": "needs CUDA"} for t in tests.values())

    recipe = phases["recipe_7b"]
    sft, train, ev = recipe["sft"], recipe["train"], recipe["evaluate"]
    max_len = recipe["settings"]["overrides"]["sft.max_length"]
    assert sft["steps"] == 2 and sft["metrics"]["examples_dropped_too_long"] == 0
    assert all(s["max_width"] == max_len and s["tokens"] == 2 * 2 * max_len for s in sft["per_step"])
    assert train["steps"] == 1 and train["metrics"]["sampling_rounds"] == 2 and train["metrics"]["pairs_dropped_too_long"] == 0
    assert train["per_step"][0]["tokens"] == 2 * 2 * 2 * max_len  # 2 micro-batches x 2 pairs x (chosen, rejected)
    assert train["sampling"]["generate_calls"] == 2 and train["sampling"]["generated_tokens"] > 0
    assert ev["chats"] == 4 and ev["nonempty"] == 4 and ev["device"] == "cpu" and ev["generated_tokens"] > 0
    assert all(recipe[ph]["seconds"] > 0 and recipe[ph]["peak_rss_gib"] > 0 for ph in ("build", "sft", "train", "evaluate"))

    zephyr = phases["templates"]["families"]["zephyr"]
    assert zephyr["status"] == "ok" and zephyr["train_steps"] == 4 and zephyr["sampling_rounds"] == 4
    assert zephyr["evaluated"] == {"base": 3, "sft": 3, "act": 3}
    assert not (tmp_path / "work" / "recipe" / "weights").exists()  # the random weights are removed


@pytest.mark.slow
def test_gpu_bundle_repacks_bitsandbytes_within_the_budget(tmp_path):
    dest = tmp_path / "whl"
    proc = subprocess.run(["bash", str(ROOT / "scripts/gpu_bundle.sh"), str(dest)], capture_output=True, text=True)
    if proc.returncode == 3:
        pytest.skip(f"gpu_bundle.sh could not download the wheels (no package index): {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {w.name.split("-")[0] for w in dest.glob("*.whl")}
    assert {"trl", "datasets", "dill", "multiprocess", "transformers", "peft", "gguf", "bitsandbytes"} <= names
    (bnb,) = dest.glob("bitsandbytes-*.whl")
    with zipfile.ZipFile(bnb) as z:
        libs = [n for n in z.namelist() if n.rsplit("/", 1)[-1].startswith("libbitsandbytes_")]
        record = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/RECORD"))).decode()
        assert z.testzip() is None
    assert libs == ["bitsandbytes/libbitsandbytes_cuda130.so"]
    assert "libbitsandbytes_cuda130.so" in record and "libbitsandbytes_cuda128.so" not in record
    assert sum(w.stat().st_size for w in dest.glob("*.whl")) < 32 * 2**20
    assert "budget 64 MiB" in proc.stdout
