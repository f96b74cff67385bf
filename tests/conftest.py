"""Shared test setup: offline environment, test tiers, and session fixtures.

Tiers: the default run skips `slow` (pyproject's addopts; `-m slow` runs them, `-m ""` runs all);
`gpu` tests are skipped automatically without CUDA. Session fixtures: `tiny_base` (a small
embedded Llama + tokenizer saved once) and `prefect_harness` (one Prefect test server for the
whole session, with a startup timeout generous enough for a loaded machine)."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Offline, quiet, and never touching the project's own MLflow store unless a test opts in.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["ACT_TRACKING"] = "off"

PREFECT_STARTUP_TIMEOUT_S = int(os.environ.get("ACT_TEST_PREFECT_STARTUP_S", "300"))
"""The ephemeral Prefect server takes ~12 s on a quiet machine and far longer on a loaded one."""


def pytest_collection_modifyitems(config, items):
    """`gpu` tests skip automatically without CUDA (torch is imported only when there are some)."""
    gpu = [item for item in items if "gpu" in item.keywords]
    if not gpu:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover - torch missing entirely
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in gpu:
        item.add_marker(skip)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


needs_bitsandbytes = pytest.mark.skipif(not _has("bitsandbytes"),
                                        reason="nf4 needs bitsandbytes: pip install -e '.[qlora]'")
"""For tests of 4-bit quantization (bitsandbytes is the optional `qlora` extra)."""


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A directory holding a tiny embedded Llama (hidden 32, 2 layers) and its tokenizer (the
    project's chat template), built once per session. Tests must not write into it."""
    from act.model.embedded import build_model, build_tokenizer

    d = tmp_path_factory.mktemp("tiny_base")
    tok = build_tokenizer(["SELECT name FROM singer", "Which year do you mean?", "How many singers?"] * 20, 320)
    build_model(tok, hidden_size=32, layers=2, heads=2, max_positions=256, seed=0).save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server (temporary database) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=PREFECT_STARTUP_TIMEOUT_S):
        yield
