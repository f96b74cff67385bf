"""`act ablate --pool`: the two rules the parent applies (skip what is finished, resubmit what
crashed), the remote lookup they rest on, and the worker's environment. The real run with two
workers and a SIGKILL is tests/test_pool_sweep.py (slow tier)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flows.pool import decide, remote_finished, to_submit, worker_command, worker_env


def test_finished_points_are_skipped_unless_rerun():
    plan = ["abl-s0", "abl-s1", "abl-random-actions-true-s0"]
    assert to_submit(plan, {"abl-s1"}, rerun=False) == ["abl-s0", "abl-random-actions-true-s0"]
    assert to_submit(plan, {"abl-s1"}, rerun=True) == plan
    assert to_submit(plan, set(plan), rerun=False) == []
    assert to_submit(plan, {"abl-s9"}, rerun=False) == plan  # another sweep's point changes nothing


@pytest.mark.parametrize("state,attempts,silent,expected", [
    ("COMPLETED", 1, 0.0, "done"),
    ("FAILED", 1, 0.0, "failed"),  # its own error: a rerun repeats it
    ("CANCELLED", 1, 0.0, "failed"),
    ("CRASHED", 1, 0.0, "resubmit"),
    ("CRASHED", 2, 0.0, "resubmit"),
    ("CRASHED", 3, 0.0, "exhausted"),  # retries=2: three flow runs in all
    ("RUNNING", 1, 30.0, "wait"),
    ("RUNNING", 1, 121.0, "resubmit"),  # silent past stale_s: its worker is gone
    ("RUNNING", 3, 121.0, "exhausted"),
    ("PENDING", 1, 121.0, "resubmit"),  # picked up by a worker that died before starting it
    ("PENDING", 1, None, "wait"),
    ("SCHEDULED", 1, 10_000.0, "wait"),  # no worker took it yet: waiting is all there is to do
    ("running", 1, 5.0, "wait"),
])
def test_resubmission_rule(state, attempts, silent, expected):
    assert decide(state, attempts, retries=2, silent_s=silent, stale_s=120.0) == expected


def test_no_retries_means_a_crash_is_final():
    assert decide("CRASHED", 1, retries=0, silent_s=None, stale_s=60.0) == "exhausted"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_remote_finished_reads_the_refs_of_the_sweeps_commit(tmp_path):
    repo, origin = tmp_path / "repo", tmp_path / "origin.git"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "f").write_text("1")
    _git(repo, "add", "f")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    base = _git(repo, "rev-parse", "HEAD")
    _git(tmp_path, "init", "-q", "--bare", str(origin))
    _git(repo, "remote", "add", "origin", str(origin))
    for name in ("abl-s0", "abl-s1"):
        _git(repo, "update-ref", f"refs/exps/{base[:2]}/{base[2:]}/{name}", base)
    _git(repo, "update-ref", f"refs/exps/ff/{'f' * 38}/abl-s2", base)  # another baseline's experiment
    _git(repo, "push", "-q", "origin", "refs/exps/*:refs/exps/*")
    assert remote_finished(repo, "origin", base) == {"abl-s0", "abl-s1"}
    assert remote_finished(repo, "origin", "0" * 40) == set()


def test_an_unpushed_commit_is_refused_before_any_submission(tmp_path):
    from flows.pool import require_pushed

    repo, origin = tmp_path / "repo", tmp_path / "origin.git"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "f").write_text("1")
    _git(repo, "add", "f")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "one")
    _git(tmp_path, "init", "-q", "--bare", str(origin))
    _git(repo, "remote", "add", "origin", str(origin))
    _git(repo, "push", "-q", "origin", "main")
    require_pushed(repo, "origin", _git(repo, "rev-parse", "HEAD"))
    (repo / "f").write_text("2")
    _git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "two")
    with pytest.raises(SystemExit, match=r"is on no branch of origin.*git push origin HEAD"):
        require_pushed(repo, "origin", _git(repo, "rev-parse", "HEAD"))


def test_worker_env_points_the_flow_runs_at_the_clone(tmp_path):
    env = worker_env(tmp_path, "gpu0", {"PATH": "/usr/bin", "PYTHONPATH": "/other", "MLFLOW_TRACKING_URI": "http://x"})
    assert env["ACT_WORKER_CLONE"] == str(tmp_path) and env["ACT_WORKER_NAME"] == "gpu0"
    assert env["PYTHONPATH"].split(":") == [str(tmp_path), "/other"]
    assert env["MLFLOW_TRACKING_URI"] == "http://x"  # credentials and servers pass through unchanged
    assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) >= 30
    cmd = worker_command("gpus", "gpu0")
    assert cmd[1:] == ["-m", "prefect", "worker", "start", "--pool", "gpus", "--type", "process", "--limit", "1",
                       "--name", "gpu0"]


def test_cli_parses_pool_and_worker():
    from flows.cli import _parser

    a = _parser().parse_args(["ablate", "--pool", "gpus", "--seeds", "0", "1"])
    assert (a.pool, a.remote, a.stale_s, a.jobs) == ("gpus", "origin", 120.0, 1)
    w = _parser().parse_args(["worker", "--pool", "gpus"])
    assert (w.pool, w.limit, w.name) == ("gpus", 1, None)


def test_pool_and_jobs_exclude_each_other(tmp_path):
    from flows.ablations import ablations

    with pytest.raises(ValueError, match="exclude each other"):
        ablations.fn(root=str(tmp_path), methods=["act"], seeds=[0], jobs=2, pool="gpus")
