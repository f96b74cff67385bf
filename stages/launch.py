"""launch: start a training stage the way params.yaml's `launch` section says.

    python -m stages.launch sft --base models/base --data data/annotate/ambigsql --out models/sft ...

The arguments after the stage name are the stage's own (`python -m stages.sft --help`), `--params`
and `-S` included. With `launch.accelerate_config: ""` this is `python -m stages.sft ...`; with a
path it is `accelerate launch --config_file <path> [--num_processes N] -m stages.sft ...`
(configs/accelerate/ holds single GPU, DDP, DeepSpeed ZeRO-2/3 and FSDP configs). The launcher
replaces itself with that command (same pid, same signals, its exit status), so DVC and a kill
see the stage itself. dvc.yaml declares `launch` among the sft and train stages' params.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

STAGES = ("sft", "train")
"""The stages that train a model: the ones a multi-process launch can speed up."""


def command(stage: str, stage_args: list[str], accelerate_config: str, num_processes: int = 0) -> list[str]:
    """The command line that runs `stage` with `stage_args`, plainly or through accelerate."""
    from act.errors import InputError

    if stage not in STAGES:
        raise InputError(f"stages.launch: unknown stage {stage!r}; it launches {', '.join(STAGES)}")
    if not accelerate_config:
        return [sys.executable, "-m", f"stages.{stage}", *stage_args]
    config = Path(accelerate_config)
    if not config.is_file():
        raise InputError(f"launch.accelerate_config: {config} does not exist (see configs/accelerate/)")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    if num_processes:
        cmd += ["--num_processes", str(num_processes)]
    return [*cmd, "-m", f"stages.{stage}", *stage_args]


def main(argv: list[str] | None = None) -> None:
    from act.params import load_params, parse_overrides

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return
    stage, stage_args = argv[0], argv[1:]
    # the stage's --params and -S decide the launch too
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("-S", "--set", action="append", default=[])
    known, _ = p.parse_known_args(stage_args)
    launch = load_params(known.params, parse_overrides(known.set)).launch
    cmd = command(stage, stage_args, launch.accelerate_config, launch.num_processes)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    from act.errors import run_cli

    run_cli(main)  # one-line errors; --debug or ACT_DEBUG=1 for the traceback
