"""`act.progress`: one progress policy (a bar on a terminal, a line now and then off it, nothing
with ACT_PROGRESS=off), used by pre-training and evaluation."""

from __future__ import annotations

import logging
import re

import pytest

from act import progress as prog


def test_lines_mode_logs_position_rate_and_time_left(monkeypatch, caplog):
    monkeypatch.setenv("ACT_PROGRESS", "lines")
    clock = iter(range(0, 1000, 2))  # 2 s per call of time.monotonic
    monkeypatch.setattr(prog.time, "monotonic", lambda: float(next(clock)))
    with caplog.at_level(logging.INFO, logger="act.progress"):
        with prog.progress(20, "pretrain", unit="step") as bar:
            for _ in range(20):
                bar.update(1, loss="1.000")
    lines = [r.getMessage() for r in caplog.records]
    # one line per 10 % (2 of 20 steps) and a last one saying it is done
    assert len(lines) == 10, lines
    assert re.fullmatch(r"pretrain 2/20 \(10%\) loss=1\.000 \| [\d.]+ step/s, \d+s left", lines[0]), lines[0]
    assert re.fullmatch(r"pretrain 20/20 \(100%\) loss=1\.000 \| done in \d+s", lines[-1]), lines[-1]


def test_lines_mode_also_logs_after_a_quiet_interval(monkeypatch, caplog):
    monkeypatch.setenv("ACT_PROGRESS", "lines")
    now = [0.0]
    monkeypatch.setattr(prog.time, "monotonic", lambda: now[0])
    with caplog.at_level(logging.INFO, logger="act.progress"):
        bar = prog.progress(1000, "evaluate act seed 0", unit="record", min_interval_s=30)
        now[0] = 10.0
        bar.update(1)  # 0.1 % after 10 s: nothing yet
        now[0] = 45.0
        bar.update(1)  # 35 s since the start: a line
    assert [r.getMessage().split(" |")[0] for r in caplog.records] == ["evaluate act seed 0 2/1000 (0%)"]
    assert "left" in caplog.records[0].getMessage()


def test_off_mode_prints_nothing(monkeypatch, caplog, capsys):
    monkeypatch.setenv("ACT_PROGRESS", "off")
    with caplog.at_level(logging.INFO, logger="act.progress"):
        with prog.progress(5, "x") as bar:
            for _ in range(5):
                bar.update(1)
    assert not caplog.records and capsys.readouterr().err == ""


def test_auto_is_lines_without_a_terminal_or_under_ci(monkeypatch):
    monkeypatch.setenv("ACT_PROGRESS", "auto")
    assert prog.mode() == "lines"  # pytest captures stderr: no terminal
    monkeypatch.setattr(prog.sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("CI", "true")
    assert prog.mode() == "lines"
    monkeypatch.delenv("CI")
    assert prog.mode() == "bar"


def test_an_unknown_mode_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("ACT_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="ACT_PROGRESS='fancy'.*auto, bar, lines, off"):
        prog.mode()


def test_without_bars_the_datasets_bars_are_off(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("ACT_PROGRESS", "lines")
    monkeypatch.delenv("HF_DATASETS_DISABLE_PROGRESS_BARS", raising=False)
    import datasets

    datasets.enable_progress_bars()
    prog.quiet_libraries()
    assert not datasets.is_progress_bar_enabled()
    datasets.Dataset.from_list([{"a": i} for i in range(10)]).save_to_disk(str(tmp_path / "d"))
    assert "Saving the dataset" not in capsys.readouterr().err


def test_pretraining_reports_progress_with_time_left(monkeypatch, caplog, tiny_base):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from act.model.embedded import pretrain

    monkeypatch.setenv("ACT_PROGRESS", "lines")
    clock = iter(range(0, 1000, 2))  # 2 s per step, as a larger model takes
    monkeypatch.setattr(prog.time, "monotonic", lambda: float(next(clock)))
    tok = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    with caplog.at_level(logging.INFO, logger="act.model.embedded"):
        out = pretrain(model, tok, ["Which year do you mean?"] * 20, block_size=16, batch_size=2, steps=10,
                       learning_rate=1e-3, seed=0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("pretrain ")]
    assert out["pretrain_steps"] == 10 and len(lines) == 10
    assert "loss=" in lines[0] and "left" in lines[0] and "done in" in lines[-1]


def test_sft_reports_its_steps_as_lines_off_a_terminal(monkeypatch, caplog, tmp_path, tiny_base):
    from act.params import SftParams
    from act.training.sft import train_sft
    from tests.test_train import make_records

    monkeypatch.setenv("ACT_PROGRESS", "lines")
    with caplog.at_level(logging.INFO, logger="act.progress"):
        out = train_sft(tiny_base, make_records(), tmp_path / "sft", SftParams(epochs=1, batch_size=4, max_length=256),
                        seed=0)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sft ")]
    assert out["steps"] == 2 and lines, caplog.text
    assert re.fullmatch(r"sft 2/2 \(100%\) loss=[\d.]+ \| done in \d+s", lines[-1]), lines


def test_a_burst_of_updates_gives_one_line_not_one_per_step(monkeypatch, caplog):
    monkeypatch.setenv("ACT_PROGRESS", "lines")
    monkeypatch.setattr(prog.time, "monotonic", lambda: 5.0)  # a whole batch scored at once
    with caplog.at_level(logging.INFO, logger="act.progress"):
        with prog.progress(4, "evaluate base seed 0", unit="record") as bar:
            for _ in range(4):
                bar.update(1)
    assert [r.getMessage().split(" |")[0] for r in caplog.records] == ["evaluate base seed 0 4/4 (100%)"]


def test_without_bars_weight_loading_bars_are_off_even_when_the_hub_was_imported_first():
    """The hub reads HF_HUB_DISABLE_PROGRESS_BARS once, when imported, and transformers takes its
    bar switch from the hub when *it* is imported: an environment variable set in between changes
    nothing. In a fresh process (imports in the order a stage makes them), off a terminal."""
    import os
    import subprocess
    import sys

    code = ("import huggingface_hub, warnings\n"
            "from act.progress import quiet_libraries\n"
            "quiet_libraries()\n"
            "import transformers\n"
            "from transformers.utils import logging as tl\n"
            "print(tl.is_progress_bar_enabled())\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('default')\n"
            "    quiet_libraries()\n"
            "    warnings.warn_explicit('x is deprecated', FutureWarning, 'modeling_utils.py', 1, module='transformers.modeling_utils')\n"
            "    warnings.warn_explicit('ours', FutureWarning, 'x.py', 1, module='act.x')\n"
            "print([str(w.message) for w in caught])\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_HUB_DISABLE", "HF_DATASETS_DISABLE"))}
    env["ACT_PROGRESS"] = "auto"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True,
                         stdin=subprocess.DEVNULL).stdout.split("\n")
    assert out[0] == "False"  # the "Loading weights" bar is off
    assert out[1] == "['ours']"  # the library's deprecation is gone, the project's own warning stays
