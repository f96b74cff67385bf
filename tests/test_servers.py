"""`act ui`'s machinery: both servers start on free loopback ports, answer, and stop cleanly."""

from __future__ import annotations

import socket

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_prefect_and_mlflow_servers_start_answer_and_stop(tmp_path, monkeypatch):
    from flows.servers import healthy, start, stop

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("PREFECT_HOME", raising=False)
    pp, mp = _free_port(), _free_port()
    servers = start(tmp_path, prefect_port=pp, mlflow_port=mp, timeout=300)  # generous: CI machines are loaded
    try:
        assert healthy(f"http://127.0.0.1:{pp}/api/health")
        assert healthy(f"http://127.0.0.1:{mp}/health")
        assert (tmp_path / "mlflow.db").exists()  # the project's store, not a global one
        assert (tmp_path / ".prefect").is_dir()
    finally:
        stop(servers)
    assert servers.prefect.poll() is not None and servers.mlflow.poll() is not None
    assert not _listening(pp) and not _listening(mp)


def test_serve_refuses_without_a_server(monkeypatch):
    from flows.servers import serve_pipeline

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{_free_port()}/api")
    with pytest.raises(SystemExit, match="act ui"):
        serve_pipeline(".")
