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

`act ui` also records its servers in `.prefect/act-ui-pids.json` (pid, start time and command
line of each, written as soon as they are spawned). A `kill -9` of `act ui` leaves both servers
listening; the next `act ui` stops those orphans (`stop_orphans`: only processes it recorded,
still matching pid, start time and command line), then checks that its ports are free
(`check_ports`), naming a port that another program holds.
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

PIDS_FILE = Path(".prefect") / "act-ui-pids.json"
"""Relative to the project: the processes `act ui` spawned, for the next `act ui` to find if
this one dies without stopping them (`stop_orphans`)."""


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
          timeout: float = 90.0, log_dir: str | Path | None = None, record: bool = False) -> Servers:
    """Start both servers (each in its own process group) and return once both answer.
    `record`: write their pids to PIDS_FILE as soon as both are spawned (`act ui` does)."""
    root = Path(root).resolve()
    logs = Path(log_dir) if log_dir else root / ".prefect"
    logs.mkdir(parents=True, exist_ok=True)
    env = _prefect_address(_server_env(root), host, prefect_port)
    store = _store(root)
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
        if record:
            record_pids(root, {"Prefect server": (started[0], prefect_port), "MLflow server": (started[1], mlflow_port)})
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


def mlflow_ui_link(url: str, experiment_id: str | None = None) -> str:
    """The MLflow UI opened on the experiment's runs table, in its "Model training" view. MLflow
    3.17's UI picks the view from a global "GenAI | Model training" switch (default GenAI, kept in
    the browser), not from the experiment's `mlflow.experimentKind` tag; `workflowType` selects
    training runs. Without an experiment id: the home page in that view."""
    if experiment_id is None:
        return f"{url}/#/?workflowType=machine_learning"
    return f"{url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def project_experiment(root: Path, store: str) -> str | None:
    """The id of the project's MLflow experiment (`tracking.experiment` of params.yaml, default
    "act"), created in `store` if missing, so that the address `act ui` prints opens its runs
    table. None (the home page is printed instead) when the store cannot be read."""
    import yaml

    from act.tracking import experiment_id

    try:
        params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8")) or {}
        name = str((params.get("tracking") or {}).get("experiment") or "act")
    except (OSError, yaml.YAMLError, AttributeError):
        name = "act"
    try:
        from mlflow.tracking import MlflowClient

        return experiment_id(MlflowClient(tracking_uri=store), name, store)
    except Exception as e:  # noqa: BLE001 - the link is a convenience; the servers run anyway
        print(f"(could not open MLflow experiment {name!r} in {store}: {type(e).__name__}: {e})", file=sys.stderr)
        return None


def _store(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"


def run_ui(root: str | Path = ".", host: str = "127.0.0.1", prefect_port: int = 4200, mlflow_port: int = 5000) -> int:
    """`act ui`: stop what a dead `act ui` left running, check the ports, start both servers,
    print where they are, stop both on Ctrl-C (or SIGTERM)."""
    root = Path(root).resolve()
    running = read_state(root)
    if running:
        raise SystemExit(f"`act ui` already runs for this project (pid {running['pid']}): "
                         f"Prefect UI {running['prefect_url']}, MLflow UI {running['mlflow_url']}")
    for line in stop_orphans(root):
        print(line, flush=True)
    check_ports(host, {"--prefect-port": prefect_port, "--mlflow-port": mlflow_port})
    print("starting the Prefect server and the MLflow UI ...", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        servers = start(root, host, prefect_port, mlflow_port, record=True)
    except BaseException:
        clear_pids(root)  # start() stopped whatever it had spawned
        raise
    try:
        write_state(root, servers)
        exp_id = project_experiment(root, _store(root))
        print(f"Prefect UI : {servers.prefect_url}\n"
              f"MLflow UI  : {mlflow_ui_link(servers.mlflow_url, exp_id)}\n\n"
              f"In another shell of this project (all find this server through {STATE_FILE}):\n"
              f"  act run\n"
              f"  act ablate --seeds 0 1 2\n"
              f"  act serve --cron '0 3 * * *'\n"
              f"Other Prefect clients: export PREFECT_API_URL={servers.prefect_api}\n\n"
              f"Ctrl-C stops both.", flush=True)
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
        clear_pids(root)


# ---------------------------------------------------------------- what a dead `act ui` left behind


def _proc_identity(pid: int) -> tuple[str, list[str]] | None:
    """(start time in clock ticks since boot, argv) of a live process, from /proc; None when it
    is gone or /proc cannot tell (another OS: then nothing is ever taken for an orphan)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    started = stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after "pid (comm)"
    return started, [a.decode("utf-8", "replace") for a in argv if a]


def record_pids(root: str | Path, procs: dict[str, tuple[subprocess.Popen, int]]) -> Path:
    """Write PIDS_FILE: this `act ui` and each server it spawned ({name: (process, port)}), with
    start time and command line, so a later `act ui` can tell them from a reused pid."""
    from act.io import write_json

    def entry(pid: int) -> dict:
        ident = _proc_identity(pid)
        return {"pid": pid, "started": ident[0] if ident else None, "cmdline": ident[1] if ident else None}

    servers = [{"name": name, "port": port, **entry(proc.pid)} for name, (proc, port) in procs.items()]
    path = Path(root) / PIDS_FILE
    write_json(path, {"act_ui": entry(os.getpid()), "servers": servers})
    return path


def clear_pids(root: str | Path) -> None:
    """Remove PIDS_FILE if this process wrote it (its servers are stopped)."""
    path = Path(root) / PIDS_FILE
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        if json.loads(path.read_text(encoding="utf-8"))["act_ui"]["pid"] == os.getpid():
            path.unlink()


def _same_process(entry: dict) -> bool:
    """True when the recorded process still runs: same pid, start time and command line."""
    try:
        ident = _proc_identity(int(entry["pid"]))
    except (KeyError, TypeError, ValueError):
        return False
    return ident is not None and entry.get("started") is not None and [ident[0], ident[1]] == [
        entry["started"], entry["cmdline"]]


def orphans(root: str | Path) -> list[dict]:
    """The servers recorded in PIDS_FILE that still run while the `act ui` that spawned them is
    gone. Raises SystemExit naming that `act ui` when it still runs (starting, or stuck)."""
    try:
        record = json.loads((Path(root) / PIDS_FILE).read_text(encoding="utf-8"))
        owner, servers = record["act_ui"], list(record["servers"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if _same_process(owner) and int(owner["pid"]) != os.getpid():
        raise SystemExit(f"`act ui` (pid {owner['pid']}) still runs for this project: stop it first "
                         f"(kill {owner['pid']})")
    return [s for s in servers if _same_process(s)]


def stop_orphans(root: str | Path, grace: float = 15.0) -> list[str]:
    """Stop the servers a dead `act ui` left running (`orphans`: each one's process group, which
    it leads), then forget them. Returns a line per server stopped."""
    lines = []
    for s in orphans(root):
        pid = int(s["pid"])
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) != pid:  # not the leader of its own group: stop the process alone
                os.kill(pid, signal.SIGTERM)
            else:
                _stop_group(pid, grace)
        lines.append(f"stopped the {s['name']} (pid {pid}, port {s['port']}) that a dead `act ui` left running")
    with contextlib.suppress(OSError):
        (Path(root) / PIDS_FILE).unlink()
    return lines


def _stop_group(pgid: int, grace: float) -> None:
    """SIGTERM process group `pgid` (not our child: poll it through signal 0), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


def port_free(host: str, port: int) -> bool:
    """True when a server could listen on (host, port) now (SO_REUSEADDR, as the servers bind:
    a port in TIME_WAIT counts as free)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(host: str, ports: dict[str, int]) -> None:
    """SystemExit naming the first port ({option: port}) another program holds."""
    for option, port in ports.items():
        if not port_free(host, port):
            raise SystemExit(f"port {port} on {host} is in use by another program: stop it, "
                             f"or choose another port with {option} PORT")


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
        with _prefect_api(PREFECT_API_URL=api):
            yield f"Prefect server: {api} (PREFECT_API_URL)"
        return
    state = read_state(root)
    if state:
        with _prefect_api(PREFECT_API_URL=state["prefect_api"]):
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
        with _prefect_api(PREFECT_API_URL=f"http://{host}:{port}/api",
                          PREFECT_UI_URL=os.environ.get("PREFECT_UI_URL", "http://127.0.0.1:4200")):
            try:
                yield ("no `act ui` running: this run goes to a Prefect server of its own, on the project's "
                       ".prefect/ database; `act ui` shows it afterwards")
            finally:
                _drain_prefect_logs()
    finally:
        _stop(proc)


def prefect_logging_env() -> None:
    """Before prefect is imported: flow and task run logs (each stage's `dvc repro` output) at
    INFO reach the Prefect API and its UI, while Prefect prints nothing on the terminal but
    critical errors (`act run` prints its own line per stage, and a failure's message once,
    without Prefect's traceback of it). Any of these set in the environment wins."""
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_LOGGERS_PREFECT_TASK_RUNS_LEVEL", "INFO")
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@contextlib.contextmanager
def on_project_server(root: str | Path = ".") -> Iterator[str]:
    """Use the running `act ui` server if there is one: the flows called inside the block run on
    the Prefect server `prefect_server_for_run` picks (PREFECT_API_URL, else the project's
    `act ui`, else one started for the block), never on Prefect's throwaway temporary server, so
    `act run` and `act ablate` both show in the open UI. Prints the line saying which server;
    SIGTERM unwinds the block like Ctrl-C (a server started for it stops too)."""
    import threading

    def unwind(signum, frame):
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, unwind)
    prefect_logging_env()
    with prefect_server_for_run(root) as where:
        print(where, flush=True)
        yield where


def run_on_project_server(root: str | Path, flow, /, **kwargs):
    """`flow(**kwargs)` inside `on_project_server(root)`; returns its result. `flow` is a flow or,
    better, its "module:name" (e.g. "flows.ablations:ablations"), imported inside the block, after
    the logging settings of `prefect_logging_env` are in place."""
    with on_project_server(root):
        if isinstance(flow, str):
            import importlib

            module, _, name = flow.partition(":")
            flow = getattr(importlib.import_module(module), name)
        return flow(**kwargs)


@contextlib.contextmanager
def _prefect_api(**values: str) -> Iterator[None]:
    """Point Prefect at a server for the block (PREFECT_API_URL, PREFECT_UI_URL). Prefect reads
    its settings from the environment once, when it is imported: the environment serves a block
    that imports it; when it is imported already, its settings are overridden for the block too
    (without that, its flows would go to a temporary server of their own)."""
    with scoped_env(**values):
        if "prefect" not in sys.modules:
            yield
            return
        import prefect.settings as ps

        with ps.temporary_settings(updates={getattr(ps, k): v for k, v in values.items()}):
            yield


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
