"""`act ui` after a crash: a `kill -9` of `act ui` leaves its servers listening; the next `act ui`
stops those orphans (only processes recorded in .prefect/act-ui-pids.json and still matching pid,
start time and command line), and a port held by another program is a one-line error naming the
port. Real processes and sockets throughout: the "servers" here are small Python listeners started
by a stand-in `act ui` process that records them with `record_pids` and is then SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flows.servers import PIDS_FILE, free_port, orphans, port_free, stop_orphans

ROOT = Path(__file__).resolve().parents[1]

# A stand-in for `act ui`: spawns two listeners in sessions of their own, as `start` does, records
# them with the real `record_pids`, prints their pids, then sleeps until killed.
FAKE_UI = textwrap.dedent("""
    import subprocess, sys, time
    from flows.servers import record_pids
    root, p1, p2 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    listener = ("import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); "
                "s.listen(); print('up', flush=True); time.sleep(3600)")
    procs = {}
    for name, port in (("Prefect server", p1), ("MLflow server", p2)):
        proc = subprocess.Popen([sys.executable, "-c", listener, str(port)], start_new_session=True,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "up"
        procs[name] = (proc, port)
    record_pids(root, procs)
    print(" ".join(str(p.pid) for p, _ in procs.values()), flush=True)
    time.sleep(3600)
""")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def crashed_ui(tmp_path):
    """A stand-in `act ui` killed with SIGKILL after recording its two listening servers; yields
    (project, ports, server pids). Whatever is still running at the end is killed."""
    ports = [free_port(), free_port()]
    ui = subprocess.Popen([sys.executable, "-c", FAKE_UI, str(tmp_path), *map(str, ports)], env=_env(),
                          stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in ui.stdout.readline().split()]
    assert len(pids) == 2, "the stand-in act ui did not start its servers"
    ui.kill()  # kill -9: no finally, no cleanup
    ui.wait()
    try:
        yield tmp_path, ports, pids
    finally:
        for pid in pids:
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)


def test_kill_9_of_act_ui_leaves_servers_the_next_one_stops(crashed_ui):
    root, ports, pids = crashed_ui
    assert all(_listening(p) for p in ports)  # what issue 23 saw: both still listening
    assert {o["pid"] for o in orphans(root)} == set(pids)
    lines = stop_orphans(root, grace=10)
    assert len(lines) == 2 and all("dead `act ui`" in ln for ln in lines)
    assert any(f"port {ports[0]}" in ln for ln in lines) and any(f"port {ports[1]}" in ln for ln in lines)
    deadline = time.time() + 30
    while any(_alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.2)  # our grandchildren: reaped by init
    assert not any(_listening(p) for p in ports)
    assert not (root / PIDS_FILE).exists()


def test_a_recorded_pid_now_running_something_else_is_left_alone(crashed_ui):
    root, ports, pids = crashed_ui
    record = json.loads((root / PIDS_FILE).read_text())
    record["servers"][0]["cmdline"] = [sys.executable, "-m", "some.other.program"]  # pid reused by another program
    record["servers"][1]["started"] = "1"  # same argv, other start time: also another process
    (root / PIDS_FILE).write_text(json.dumps(record))
    assert orphans(root) == []
    assert stop_orphans(root) == []
    assert all(_alive(pid) for pid in pids) and all(_listening(p) for p in ports)


def test_an_act_ui_still_alive_is_named_not_killed(tmp_path):
    from flows.servers import record_pids

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    try:
        record_pids(tmp_path, {"Prefect server": (sleeper, 4200)})
        record = json.loads((tmp_path / PIDS_FILE).read_text())
        record["act_ui"] = record["servers"][0] | {}  # the recorded act ui: a live process
        (tmp_path / PIDS_FILE).write_text(json.dumps(record))
        with pytest.raises(SystemExit, match=f"pid {sleeper.pid}"):
            orphans(tmp_path)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_act_ui_on_a_held_port_is_one_line_naming_it(tmp_path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert not port_free("127.0.0.1", port)
        done = subprocess.run([sys.executable, "-m", "flows.cli", "-C", str(tmp_path), "ui", "--prefect-port", str(port),
                               "--mlflow-port", str(free_port())], env=_env(), capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port}" in lines[0] and "--prefect-port" in lines[0], done.stderr
    assert not (tmp_path / PIDS_FILE).exists()


def test_act_errors_are_one_line_traceback_with_debug(tmp_path):
    """An unexpected failure inside a verb (here a params file that is a directory) is one line;
    --debug shows the traceback."""
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "evaluate.json").mkdir()  # unreadable as a file: IsADirectoryError
    cmd = [sys.executable, "-m", "flows.cli", "-C", str(tmp_path), "show"]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("error: IsADirectoryError") and len(done.stderr.strip().splitlines()) == 1
    debug = subprocess.run([*cmd, "--debug"], env=_env(), capture_output=True, text=True, timeout=120)
    assert debug.returncode == 1 and "Traceback" in debug.stderr
