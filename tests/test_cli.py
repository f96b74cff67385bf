"""`act`: every verb parses, and `--help` stays fast because nothing heavy is imported for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import _parser

ROOT = Path(__file__).resolve().parents[1]


def test_help_imports_nothing_heavy():
    code = ("import sys, contextlib, io\n"
            "from flows.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
            "print(sorted(m for m in ('prefect', 'mlflow', 'dvc', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # what it imports, not a wall time: that would flake on a loaded machine


@pytest.mark.parametrize("argv, expected", [
    (["run", "--targets", "pairs", "--force"], {"verb": "run", "targets": ["pairs"], "force": True,
                                                "params": "params.yaml"}),
    (["ablate", "--seeds", "0", "1", "--methods", "act", "sft", "-S", "train.beta=0.2"],
     {"verb": "ablate", "seeds": [0, 1], "methods": ["act", "sft"], "set": ["train.beta=0.2"], "rerun": False,
      "metrics_file": "metrics/evaluate.json"}),
    (["ui", "--prefect-port", "4300"], {"verb": "ui", "prefect_port": 4300, "mlflow_port": 5000, "host": "127.0.0.1"}),
    (["serve", "--cron", "*/30 * * * *"], {"verb": "serve", "cron": "*/30 * * * *", "targets": None}),
    (["-C", "/tmp/p", "show", "--all"], {"verb": "show", "root": "/tmp/p", "all": True}),
])
def test_verbs_parse(argv, expected):
    args = vars(_parser().parse_args(argv))
    assert {k: args[k] for k in expected} == expected


def test_ablate_defaults_to_every_method():
    from flows.methods import METHODS

    assert _parser().parse_args(["ablate"]).methods == list(METHODS)


def test_unknown_method_is_refused(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["ablate", "--methods", "ppo"])
    assert "invalid choice" in capsys.readouterr().err


def test_show_prints_one_row_per_policy_with_spread(tmp_path, capsys):
    import json

    from flows.cli import main

    metrics = {
        "sft": {"action": {"macro_f1": 0.5, "accuracy": 0.6}, "trajectory": {"score": 0.25, "n": 40}},
        "act": {"action": {"macro_f1": 0.75, "macro_f1_std": 0.05}, "trajectory": {"n": 40}},
    }
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "evaluate.json").write_text(json.dumps(metrics))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "ablations.md").write_text("# Ablations\n\n| method | action.macro_f1 |\n|---|---|\n| act | 0.5 |\n")
    assert main(["-C", str(tmp_path), "show"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("## Workspace: metrics/evaluate.json (") and lines[1] == ""
    assert lines[2].startswith("| Policy | Action Macro F1")
    assert lines[4] == "| sft | 0.500 | 0.600 | - | - | - | - | - | 0.250 | - | - | 40 |"
    assert lines[5] == "| act | 0.750 ± 0.050 | - | - | - | - | - | - | - | - | - | 40 |"
    # the ablation table is labelled as such, not run on as if it were more workspace rows
    assert lines[6] == "" and lines[7].startswith("## Ablations: reports/ablations.md (")
    assert lines[9] == "| method | action.macro_f1 |"


def test_show_without_metrics_says_what_to_run(tmp_path, capsys):
    from flows.cli import main

    assert main(["-C", str(tmp_path), "show"]) == 1
    assert "dvc repro" in capsys.readouterr().err


STAGES = sorted(p.stem for p in (ROOT / "stages").glob("*.py") if p.stem not in ("__init__", "common"))
HEAVY = ("torch", "trl", "transformers", "peft", "datasets", "mlflow", "prefect", "dvc", "bitsandbytes")


def test_every_stage_is_covered():
    assert set(STAGES) >= {"ingest", "annotate", "pairs", "base", "sft", "simulate", "train", "evaluate"}


@pytest.mark.parametrize("stage", STAGES)
def test_stage_help_imports_nothing_heavy(stage):
    """`python -m stages.<x> --help` answers without importing any heavy library (the stage's
    work imports them inside run())."""
    code = ("import sys, contextlib, io\n"
            f"from stages.{stage} import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(buf): main(['--help'])\n"
            f"assert 'python -m stages.{stage}' in buf.getvalue(), buf.getvalue()\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"stages.{stage} --help imports {out.stdout.strip()}"
