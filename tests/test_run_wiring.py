"""How `act run` finds its Prefect server and what its run artifact shows, without starting any
server: the `act ui` state file, the one-line refusals, and the headline metrics per policy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flows.servers import STATE_FILE, free_port, prefect_server_for_run, read_state


def _write_state(root, pid: int, port: int) -> None:
    path = root / STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "prefect_url": f"http://127.0.0.1:{port}",
                                "prefect_api": f"http://127.0.0.1:{port}/api", "mlflow_url": "http://127.0.0.1:1"}))


def test_a_state_file_of_a_process_that_is_gone_is_ignored_and_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_state(tmp_path, dead.pid, free_port())
    assert read_state(tmp_path) is None
    assert not (tmp_path / STATE_FILE).exists()


def test_a_state_file_whose_server_does_not_answer_is_ignored(tmp_path):
    import os

    _write_state(tmp_path, os.getpid(), free_port())  # alive, but nothing listens there
    assert read_state(tmp_path) is None
    assert (tmp_path / STATE_FILE).exists()  # its process lives: maybe still starting


def test_an_unreachable_prefect_api_url_is_one_line_saying_what_to_do(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/api"
    monkeypatch.setenv("PREFECT_API_URL", url)
    with pytest.raises(SystemExit) as e:
        with prefect_server_for_run(tmp_path):
            pass
    message = str(e.value)
    assert "\n" not in message and url in message and "act ui" in message


def test_a_server_that_cannot_start_is_one_line_naming_its_log(tmp_path, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", "nonsense://")  # the server exits at once
    with pytest.raises(SystemExit) as e:
        with prefect_server_for_run(tmp_path, timeout=120):
            pass
    message = str(e.value)
    assert "\n" not in message and "prefect-run-server.log" in message and "act ui" in message


EVALUATE = {
    "act": {"action": {"macro_f1": 0.4, "accuracy": 0.5, "clarify_f1": 0.25, "n": 60},
            "turn": {"answer_score": 0.1, "n": 60},
            "trajectory": {"score": 0.2, "post_clarify_score": 0.0, "success_rate": 0.05, "n": 60}},
    "sft": {"action": {"macro_f1": 0.3, "accuracy": 0.45, "clarify_f1": 0.0, "n": 60},
            "turn": {"answer_score": 0.0, "n": 60},
            "trajectory": {"score": 0.0, "post_clarify_score": 0.0, "success_rate": 0.0, "n": 60}},
}


def test_the_artifact_shows_headline_metrics_per_policy_and_training_figures():
    from flows.pipeline import _markdown, headline, training_figures

    metrics = {"ingest@ambigsql": {"splits": {"train": {"records": 12}}, "records": 40},
               "evaluate": EVALUATE,
               "train": {"steps": 13, "final/rewards/margins": 0.034059, "relabel/wrong_action": 32},
               "sft": {"train_loss": 0.89, "enabled": True}}
    rows = headline(metrics)
    assert [r["policy"] for r in rows] == ["act", "sft"]
    assert rows[0] == {"policy": "act", "Action Macro F1": 0.4, "Action accuracy": 0.5, "Clarify F1": 0.25,
                       "Turn task score": 0.1, "Trajectory score": 0.2, "Post-clarify score": 0.0,
                       "Trajectory success": 0.05, "n": 60}
    figures = {(r["stage"], r["figure"]): r["value"] for r in training_figures(metrics)}
    assert figures == {("sft", "train_loss"): 0.89, ("train", "steps"): 13.0,
                       ("train", "final/rewards/margins"): 0.0341}
    md = _markdown([{"stage": "evaluate", "state": "ran", "seconds": 3.0}], metrics, "abc")
    assert "| act | 0.400 | 0.500 | 0.250 |" in md and "records" not in md  # no ingest counters
    assert headline({"ingest@ambigsql": {"records": 4}}) == []


def _health_server():
    """A real HTTP server on a free loopback port answering /api/health with 200 (what
    `prefect_server_for_run` checks before it sends runs there)."""
    import http.server
    import threading

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_flow_imported_before_the_block_still_goes_to_the_project_server(tmp_path, monkeypatch, capsys):
    """`act ablate` imported its flow (and so prefect) before choosing the server; prefect reads
    its settings when imported, so the environment alone sent the sweep to a temporary server of
    its own. Inside `on_project_server`, prefect's settings name the chosen server either way."""
    import prefect  # noqa: F401  (imported first, as `from flows.ablations import ablations` does)
    from prefect.settings import get_current_settings

    from flows.servers import run_on_project_server

    server = _health_server()
    api = f"http://127.0.0.1:{server.server_address[1]}/api"
    monkeypatch.setenv("PREFECT_API_URL", api)
    try:
        seen = run_on_project_server(tmp_path, lambda: get_current_settings().api.url)
        by_name = run_on_project_server(tmp_path, "prefect.settings:get_current_settings")
    finally:
        server.shutdown()
    assert seen == api and by_name.api.url == api
    assert f"Prefect server: {api} (PREFECT_API_URL)" in capsys.readouterr().out
