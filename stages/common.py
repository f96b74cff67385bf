"""What every stage's command line shares: the argument parser, params loading, logging setup.

Tracking (the MLflow run of a stage, its metrics epilogue, lineage) lives in `act.tracking`."""

from __future__ import annotations

import argparse
import logging
import os

from act.params import Params, load_params
from act.tracking import stage_run  # noqa: F401  (stages open their run through this name too)


def parser(stage: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m stages.{stage}", description=(doc or "").strip().splitlines()[0] if doc else None)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("-S", "--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a param, e.g. -S train.beta=0.1 (YAML value)")
    return p


def load(args: argparse.Namespace) -> Params:
    """The params file with the `-S` overrides (read as YAML; a malformed one names its key)."""
    from act.params import parse_overrides

    return load_params(args.params, parse_overrides(args.set))


def setup_logging() -> None:
    logging.basicConfig(level=os.environ.get("ACT_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "alembic", "datasets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # peft imports bitsandbytes whenever it is installed; its CPU build warns about an optional
    # kernels package on every import, 4-bit or not
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
