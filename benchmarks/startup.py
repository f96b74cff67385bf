"""Process start cost in CPU seconds (user + system of a fresh child process; steadier than wall
time on a shared machine): the imports of a data stage and of a model stage, with and without
bytecode and bitsandbytes, a stage's `--help`, and opening a stage's tracking run.

    python benchmarks/startup.py                       # this checkout
    python benchmarks/startup.py --root /tmp/old       # another checkout (e.g. `git archive` of an
                                                       # older commit), same interpreter: before/after
    python benchmarks/startup.py --repeat 5 --json out.json

Each figure is the median over --repeat runs. "no bytecode" points PYTHONPYCACHEPREFIX at an empty
folder and runs with -B (no .pyc read, none written): every module is compiled from source, as in
a venv installed without `--compile-bytecode` whose .pyc files were never written.
"no bitsandbytes" hides the package (as when the `qlora` extra is not installed).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HIDE_BNB = "import sys; sys.modules['bitsandbytes'] = None\n"

DATA_STAGE = "import stages.pairs, act.pairs, act.roles, act.io, act.metrics.action, datasets\n"
MODEL_STAGE = ("import stages.train, act.model.loading, act.training.dpo\n"
               "import torch, transformers, peft\n"
               "from trl import DPOTrainer\n")

TRACKING = """
import os, tempfile, time
os.environ.update(ACT_TRACKING="on", DVC_STAGE="pairs@ambigsql",
                  MLFLOW_TRACKING_URI="sqlite:///" + os.path.join(tempfile.mkdtemp(), "mlflow.db"))
try:
    from act.tracking import stage_run
except ImportError:  # before act.tracking existed
    from stages.common import stage_run
from act.params import load_params
p = load_params("params.yaml")
with stage_run("pairs", p, p.pairs) as t:
    pass
"""


def cpu_seconds(code: str, root: Path, env: dict[str, str] | None = None, args: tuple[str, ...] = ()) -> float:
    """CPU seconds (user + sys) of `python [args] -c code` run in `root`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    full_env = {**os.environ, "PYTHONPATH": str(root), "MLFLOW_DISABLE_TELEMETRY": "true",
                "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    proc = subprocess.run([sys.executable, *args, "-c", code], cwd=root, env=full_env,
                          capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{code}\n{proc.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median(fn, repeat: int) -> float:
    return round(statistics.median(fn() for _ in range(repeat)), 2)


def no_bytecode(code: str, root: Path) -> float:
    with tempfile.TemporaryDirectory() as empty:
        return cpu_seconds(code, root, {"PYTHONPYCACHEPREFIX": empty}, ("-B",))


def measure(root: Path, repeat: int) -> dict[str, float]:
    cases = {
        "interpreter alone": lambda: cpu_seconds("pass", root),
        "stages.train --help": lambda: cpu_seconds(
            "import sys; sys.argv = ['x', '--help']\nfrom stages.train import main\ntry:\n    main()\nexcept SystemExit:\n    pass",
            root),
        "data stage imports": lambda: cpu_seconds(DATA_STAGE, root),
        "model stage imports": lambda: cpu_seconds(MODEL_STAGE, root),
        "model stage imports, no bitsandbytes": lambda: cpu_seconds(HIDE_BNB + MODEL_STAGE, root),
        "model stage imports, no bytecode": lambda: no_bytecode(MODEL_STAGE, root),
        "model stage imports, no bytecode, no bitsandbytes": lambda: no_bytecode(HIDE_BNB + MODEL_STAGE, root),
        "bitsandbytes import alone": lambda: cpu_seconds("import bitsandbytes", root),
        "tracking: open and close a stage run": lambda: cpu_seconds(TRACKING, root),
    }
    out = {}
    for name, fn in cases.items():
        try:
            out[name] = median(fn, repeat)
        except RuntimeError as e:
            out[name] = float("nan")
            print(f"{name}: {e}", file=sys.stderr)
        print(f"{name:<52} {out[name]:>7.2f} CPU-s", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[1]), help="checkout to measure")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    figures = measure(Path(args.root).resolve(), args.repeat)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
