"""Bad inputs fail loudly and in one line: wrong paths, truncated weights, bad params values,
duplicate YAML keys; every stage prints `error: <message>` and exits 1 (traceback with --debug)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from act.errors import InputError, ParamsError
from act.io import check_safetensors, require_dir
from act.params import load_params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params.yaml"


# ------------------------------------------------------------------------------ weights files
def _safetensors(path: Path) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.arange(1000, dtype=np.float32)}, str(path))
    return path


def test_whole_safetensors_passes_and_a_truncated_one_is_named(tmp_path):
    f = _safetensors(tmp_path / "model.safetensors")
    check_safetensors(tmp_path)
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError, match=rf"{f}: truncated"):
        check_safetensors(tmp_path)
    f.write_bytes(data[:5])
    with pytest.raises(InputError, match=rf"{f}: truncated or not a safetensors file"):
        check_safetensors(f)


def test_load_model_names_the_truncated_file(tmp_path):
    from act.model.loading import load_model

    f = _safetensors(tmp_path / "model.safetensors")
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(InputError, match="model.safetensors: truncated"):
        load_model(tmp_path)


def test_require_dir_names_what_and_where(tmp_path):
    assert require_dir(tmp_path, "--sft") == tmp_path
    with pytest.raises(InputError, match=r"--adapter act: /nonexistent does not exist"):
        require_dir("/nonexistent", "--adapter act")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is not a directory"):
        require_dir(tmp_path / "f", "--databases")


# ------------------------------------------------------------------------------ params values
@pytest.mark.parametrize("key, value, message", [
    ("ingest.max_context_chars", -1, r"ingest.max_context_chars: must be > 0, got -1"),
    ("train.learning_rate", -1, r"train.learning_rate: must be > 0"),
    ("train.learning_rate", 0, r"train.learning_rate: must be > 0"),
    ("simulate.max_new_tokens", -5, r"simulate.max_new_tokens: must be > 0"),
    ("evaluate.max_new_tokens", 0, r"evaluate.max_new_tokens: must be > 0"),
    ("base.embedded.heads", 0, r"base.embedded.heads: must be > 0"),
    ("sft.batch_size", 0, r"sft.batch_size: must be > 0"),
    ("roles.classifier.timeout_s", 0, r"roles.classifier.timeout_s: must be > 0"),
    ("pairs.samples", -3, r"pairs.samples: must be >= 0"),
    ("evaluate.sql_timeout_s", float("nan"), r"evaluate.sql_timeout_s: nan is not a number"),
])
def test_out_of_range_values_are_refused_naming_the_key(key, value, message):
    with pytest.raises(ParamsError, match=message):
        load_params(PARAMS, {key: value})


def test_shipped_params_and_signed_fields_still_load():
    params = load_params(PARAMS, {"train.max_steps": -1, "seed": 2**32 - 1})
    assert params.train.max_steps == -1 and params.seed == 2**32 - 1


def test_duplicate_key_in_params_yaml_is_refused(tmp_path):
    text = PARAMS.read_text().replace("  max_context_chars: 6000", "  max_context_chars: 6000\n  max_context_chars: 10", 1)
    assert text != PARAMS.read_text()
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=r"key 'max_context_chars' appears twice.*lines \d+ and \d+"):
        load_params(tmp_path / "params.yaml")


# ------------------------------------------------------------------------------ one-line errors
def _stage(*argv, debug=False):
    env = {**os.environ, "ACT_DEBUG": "1" if debug else "0", "ACT_TRACKING": "0"}
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, env=env,
                          timeout=120)


TRAIN = ["stages.train", "--base", "models/base", "--pairs", "p", "--simulated", "s", "--out", "o",
         "--log-dir", "l", "--metrics", "m.json"]


@pytest.mark.parametrize("argv, message", [
    (TRAIN + ["--sft", "/nonexistent", "--databases", "data/raw/spider/database"],
     "error: --sft: /nonexistent does not exist"),
    (TRAIN + ["--sft", "tests", "--databases", "/nonexistent"], "error: --databases: /nonexistent does not exist"),
    (["stages.evaluate", "--in", "x", "--base", "models/base", "--adapter", "sft=tests", "--adapter",
      "act=/nonexistent", "--out", "o", "--metrics", "m", "--plots", "p", "--report", "r.html"],
     "error: --adapter act: /nonexistent does not exist"),
    (["stages.ingest", "--dataset", "ambigsql", "--raw", "data/raw/spider", "--out", "o", "--metrics", "m.json",
      "-S", "ingest.max_context_chars=-1"], "error: params.yaml: ingest.max_context_chars: must be > 0, got -1"),
])
def test_stage_prints_one_line_and_exits_1(argv, message):
    r = _stage(*argv)
    assert r.returncode == 1, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip() and not x.startswith("WARNING")]
    assert lines == [message], r.stderr
    assert "Traceback" not in r.stderr


def test_debug_flag_shows_the_traceback():
    r = _stage(*TRAIN, "--sft", "/nonexistent", "--databases", "data/raw/spider/database", "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr and r.stderr.rstrip().endswith(
        "error: --sft: /nonexistent does not exist")
    r = _stage(*TRAIN, "--sft", "/nonexistent", "--databases", "data/raw/spider/database", debug=True)
    assert "Traceback" in r.stderr
