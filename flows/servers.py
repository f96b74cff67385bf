"""The two UIs, where `act run` sends its runs, and the schedule.

    act ui                          Prefect server + MLflow UI on 127.0.0.1; Ctrl-C stops both
    act run                         runs on the server `act ui` started (found through .prefect/act-ui.json)
    act serve --cron "0 3 * * *"    the pipeline as a scheduled deployment of that Prefect server

Both servers keep their state in the project: Prefect under `.prefect/`, MLflow in `mlflow.db`
with artifacts in `mlartifacts/` (where the stages write them). While `act ui` runs,
`.prefect/act-ui.json` holds its URLs and pid; `act run` (`prefect_server_for_run`) reads it, so
its runs show in that UI without exporting PREFECT_API_URL. Without `act ui`, `act run` starts a
Prefect server of its own for the run, on the same `.prefect/` database: the run shows in `act ui`
once it is started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from act.tracking import scoped_env

STATE_FILE = Path(".prefect") / "act-ui.json"
"""Relative to the project: where `act ui` says which servers it runs."""


@dataclass
class Servers:
    prefect: subprocess.Popen
    mlflow: subprocess.Popen
    prefect_url: str
    mlflow_url: str

    @property
    def prefect_api(self) -> str:
        return f"{self.prefect_url}/api"


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _wait(url: str, proc: subprocess.Popen, name: str, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} before answering at {url}")
        if healthy(url):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{name} did not answer at {url} within {timeout:.0f}s")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _server_env(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str(root / ".prefect"))
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # the job runner alone costs ~GBs of RSS
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    env["DO_NOT_TRACK"] = "true"
    return env


def _prefect_address(env: dict[str, str], host: str, port: int) -> dict[str, str]:
    """The Prefect server's own address in its settings: its UI asks the API at
    PREFECT_UI_API_URL, which otherwise names the default port 4200 whatever `--port` says."""
    env.update(PREFECT_SERVER_API_HOST=host, PREFECT_SERVER_API_PORT=str(port),
               PREFECT_UI_API_URL=f"http://{host}:{port}/api")
    env.pop("PREFECT_API_URL", None)
    return env


def start(root: str | Path = ".", host: str = "127.0.0.1", prefect_port: int = 4200, mlflow_port: int = 5000,
          timeout: float = 90.0, log_dir: str | Path | None = None) -> Servers:
    """Start both servers (each in its own process group) and return once both answer."""
    root = Path(root).resolve()
    logs = Path(log_dir) if log_dir else root / ".prefect"
    logs.mkdir(parents=True, exist_ok=True)
    env = _prefect_address(_server_env(root), host, prefect_port)
    store = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"
    if store.startswith("http"):
        raise ValueError(f"MLFLOW_TRACKING_URI={store} is already a server; `act ui` serves a local store")
    prefect_cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(prefect_port)]
    mlflow_cmd = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(mlflow_port),
                  "--workers", "1", "--backend-store-uri", store,
                  "--default-artifact-root", (root / "mlartifacts").as_uri()]
    started: list[subprocess.Popen] = []
    try:
        for cmd, name in ((prefect_cmd, "prefect"), (mlflow_cmd, "mlflow")):
            with open(logs / f"{name}-server.log", "ab") as fh:
                started.append(subprocess.Popen(cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                                start_new_session=True))
        servers = Servers(started[0], started[1], f"http://{host}:{prefect_port}", f"http://{host}:{mlflow_port}")
        _wait(f"{servers.prefect_api}/health", servers.prefect, "Prefect server", timeout)
        _wait(f"{servers.mlflow_url}/health", servers.mlflow, "MLflow server", timeout)
        return servers
    except BaseException:
        for proc in started:
            _stop(proc)
        raise


def _stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM the server's own process group (its workers too), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def stop(servers: Servers) -> None:
    _stop(servers.mlflow)
    _stop(servers.prefect)


def mlflow_ui_link(url: str) -> str:
    """The MLflow UI opened in its "Model training" view. MLflow 3.17's UI picks an experiment's
    view from a global "GenAI | Model training" switch (default GenAI, kept in the browser), not
    from the experiment's `mlflow.experimentKind` tag; this URL parameter selects training runs."""
    return f"{url}/#/?workflowType=machine_learning"


def run_ui(root: str | Path = ".", host: str = "127.0.0.1", prefect_port: int = 4200, mlflow_port: int = 5000) -> int:
    """`act ui`: start both, print where they are, stop both on Ctrl-C (or SIGTERM)."""
    root = Path(root).resolve()
    running = read_state(root)
    if running:
        raise SystemExit(f"`act ui` already runs for this project (pid {running['pid']}): "
                         f"Prefect UI {running['prefect_url']}, MLflow UI {running['mlflow_url']}")
    print("starting the Prefect server and the MLflow UI ...", flush=True)
    servers = start(root, host, prefect_port, mlflow_port)
    write_state(root, servers)
    print(f"Prefect UI : {servers.prefect_url}\n"
          f"MLflow UI  : {mlflow_ui_link(servers.mlflow_url)}\n\n"
          f"In another shell of this project (both find this server through {STATE_FILE}):\n"
          f"  act run\n"
          f"  act serve --cron '0 3 * * *'\n"
          f"Other Prefect clients: export PREFECT_API_URL={servers.prefect_api}\n\n"
          f"Ctrl-C stops both.", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while servers.prefect.poll() is None and servers.mlflow.poll() is None:
            time.sleep(1.0)
        dead = "Prefect server" if servers.prefect.poll() is not None else "MLflow server"
        print(f"{dead} stopped; stopping the other one", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    finally:
        clear_state(root)
        stop(servers)


# ---------------------------------------------------------------- where `act run` sends its runs


def write_state(root: str | Path, servers: Servers) -> Path:
    """Record the running `act ui` (its URLs and pid) for `act run` to find."""
    from act.io import write_json

    path = Path(root) / STATE_FILE
    write_json(path, {"pid": os.getpid(), "prefect_url": servers.prefect_url, "prefect_api": servers.prefect_api,
                      "mlflow_url": servers.mlflow_url})
    return path


def clear_state(root: str | Path) -> None:
    """Remove the state file if this process wrote it."""
    path = Path(root) / STATE_FILE
    with contextlib.suppress(OSError, ValueError):
        if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
            path.unlink()


def read_state(root: str | Path) -> dict | None:
    """The `act ui` of this project, if its Prefect server answers; a stale file is removed."""
    from act.io import pid_alive

    path = Path(root) / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        pid, api = int(state["pid"]), str(state["prefect_api"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid_alive(pid) and healthy(f"{api}/health", timeout=5.0):
        return state
    if not pid_alive(pid):
        with contextlib.suppress(OSError):
            path.unlink()
    return None


@contextlib.contextmanager
def prefect_server_for_run(root: str | Path = ".", timeout: float | None = None) -> Iterator[str]:
    """Point PREFECT_API_URL at the Prefect server `act run` should use, for the block; yields
    one line saying which.

    1. PREFECT_API_URL set: that server (it must answer).
    2. Else the server of this project's running `act ui`.
    3. Else a Prefect server started here for the run, on the project's `.prefect/` database, so
       the run shows in `act ui` later; stopped after the block.
    A server that does not answer or start is a `SystemExit` with one line saying what to do."""
    root = Path(root).resolve()
    api = os.environ.get("PREFECT_API_URL")
    if api:
        if not healthy(f"{api}/health", timeout=10.0):
            raise SystemExit(f"no Prefect server answers at PREFECT_API_URL={api}: start it "
                             f"(`act ui` starts one), or unset PREFECT_API_URL")
        yield f"Prefect server: {api} (PREFECT_API_URL)"
        return
    state = read_state(root)
    if state:
        with scoped_env(PREFECT_API_URL=state["prefect_api"]):
            yield f"Prefect UI: {state['prefect_url']} (act ui, pid {state['pid']})"
        return
    timeout = timeout if timeout is not None else float(os.environ.get("ACT_PREFECT_STARTUP_S", "180"))
    logs = root / ".prefect"
    logs.mkdir(parents=True, exist_ok=True)
    host, port = "127.0.0.1", free_port()
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    with open(logs / "prefect-run-server.log", "ab") as fh:
        proc = subprocess.Popen(cmd, cwd=root, env=_prefect_address(_server_env(root), host, port), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            _wait(f"http://{host}:{port}/api/health", proc, "Prefect server", timeout)
        except (RuntimeError, TimeoutError) as e:
            raise SystemExit(f"{e} (log: {logs / 'prefect-run-server.log'}); start `act ui` in another "
                             f"shell of this project and rerun `act run`") from None
        # the flow run's link names where `act ui` (default port) will show it; this server ends with the run
        with scoped_env(PREFECT_API_URL=f"http://{host}:{port}/api",
                  PREFECT_UI_URL=os.environ.get("PREFECT_UI_URL", "http://127.0.0.1:4200")):
            try:
                yield ("no `act ui` running: this run goes to a Prefect server of its own, on the project's "
                       ".prefect/ database; `act ui` shows it afterwards")
            finally:
                _drain_prefect_logs()
    finally:
        _stop(proc)


def _drain_prefect_logs() -> None:
    """Send the run logs still queued in this process to the server before it stops."""
    if "prefect.logging.handlers" in sys.modules:
        from prefect.logging.handlers import APILogWorker

        with contextlib.suppress(Exception):
            APILogWorker.drain_all(timeout=10)


def serve_pipeline(root: str | Path = ".", name: str = "act-pipeline", cron: str = "0 3 * * *",
                   targets: Sequence[str] | None = None) -> None:
    """`act serve`: register the pipeline as a deployment with a cron schedule and execute its
    runs (scheduled, or started with "Run" in the UI) in this process until Ctrl-C."""
    state = read_state(root)
    api = os.environ.get("PREFECT_API_URL") or (state["prefect_api"] if state else "http://127.0.0.1:4200/api")
    if not healthy(f"{api}/health"):
        raise SystemExit(f"no Prefect server answers at {api}: start one with `act ui` "
                         f"(or set PREFECT_API_URL to yours)")
    os.environ["PREFECT_API_URL"] = api
    from flows.pipeline import pipeline

    pipeline.serve(name=name, cron=cron,
                   parameters={"root": str(Path(root).resolve()), "targets": list(targets) if targets else None},
                   description="The ACT DVC DAG, stage by stage (dvc repro --single-item)")
