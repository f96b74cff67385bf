"""The HTTP role backend against a real OpenAI-compatible server on 127.0.0.1 (started here).

The server counts requests, records the Authorization header it receives, and plays a script of
behaviours per request: ok, 429, 500, slow (past the client's timeout), badjson.
"""

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from act.actions import Action
from act.params import RoleParams, RolesParams
from act.roles import build_role
from act.roles.base import ClassifyItem, RejectItem, UsageCounter
from act.roles.cache import CallCache
from act.roles.http import BREAKER_FAILURES, HttpChat, RoleCallError

KEY = "sk-test-7f3a9c1e-do-not-leak"
KEY_ENV = "ACT_TEST_ROLE_KEY"


class FakeOpenAI:
    def __init__(self):
        self.script: list[str] = []
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.answer = lambda body: "hello"
        self.lock = threading.Lock()
        self.delay = 0.0
        self.steps: dict[str, str] = {}
        """Behaviour per request content (beats `script`), e.g. {"q5": "400"}."""
        self.answered: list[str] = []
        """Contents of the requests that got a full 200 reply."""
        self.gate = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization"))
                    content = body["messages"][-1]["content"]
                    step = server.steps.get(content) or (server.script.pop(0) if server.script else "ok")
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._play(step, body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _play(self, step, body):
                if server.delay:
                    time.sleep(server.delay)
                if step == "slow":
                    time.sleep(0.6)
                if step == "gate":  # hold the reply until the test opens the gate
                    server.gate.wait(timeout=30)
                if step == "trickle":  # headers, then one byte every 0.5 s
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    try:
                        for _ in range(40):
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            time.sleep(0.5)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                if step in ("429", "500", "400", "401", "403", "404"):
                    self.send_response(int(step))
                    if step == "429":
                        self.send_header("Retry-After", "3")
                    payload = json.dumps({"error": f"nope, key {self.headers.get('Authorization')}"}).encode()
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if step == "badjson":
                    payload = b"<html>gateway hiccup"
                else:
                    text = server.answer(body)
                    payload = json.dumps({
                        "choices": [{"message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 11, "completion_tokens": 3},
                    }).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                    with server.lock:
                        server.answered.append(body["messages"][-1]["content"])
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeOpenAI()
    yield s
    s.close()


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def _cfg(server, **kw):
    base = RoleParams(backend="http", model="test-model", base_url=server.url, api_key_env=KEY_ENV,
                      timeout_s=0.3, max_retries=2, backoff_s=0.01, concurrency=4, max_tokens=32)
    return replace(base, **kw)


CHAT = [{"role": "user", "content": "Say hello."}]


def _chat(server, tmp_path, sleeps=None, **kw):
    return HttpChat(_cfg(server, **kw), role="classifier", cache=CallCache.open(tmp_path / "cache"),
                    usage=UsageCounter(), sleep=(sleeps.append if sleeps is not None else (lambda s: None)))


def test_success_sends_key_and_counts_tokens(server, key, tmp_path):
    chat = _chat(server, tmp_path)
    assert chat.complete([CHAT]) == ["hello"]
    assert len(server.requests) == 1
    assert server.auth == [f"Bearer {KEY}"]
    sent = server.requests[0]
    assert sent["model"] == "test-model" and sent["messages"] == CHAT
    assert sent["temperature"] == 0.0 and sent["max_tokens"] == 32
    assert chat.usage.as_dict() == {"calls": 1, "cache_hits": 0, "prompt_tokens": 11, "completion_tokens": 3, "fallbacks": 0}


def test_no_key_variable_means_no_authorization_header(server, monkeypatch, tmp_path):
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert _chat(server, tmp_path).complete([CHAT]) == ["hello"]
    assert server.auth == [None]


def test_429_then_success_honours_retry_after(server, key, tmp_path):
    server.script = ["429"]
    sleeps = []
    assert _chat(server, tmp_path, sleeps).complete([CHAT]) == ["hello"]
    assert len(server.requests) == 2
    assert sleeps == [3.0]  # the server's Retry-After beats the 0.01 s backoff


def test_500_then_success_backs_off_exponentially(server, key, tmp_path):
    server.script = ["500", "500"]
    sleeps = []
    assert _chat(server, tmp_path, sleeps, backoff_s=0.5).complete([CHAT]) == ["hello"]
    assert len(server.requests) == 3
    assert sleeps == [0.5, 1.0]


def test_timeout_is_retried_then_succeeds(server, key, tmp_path):
    server.script = ["slow"]
    assert _chat(server, tmp_path).complete([CHAT]) == ["hello"]
    assert len(server.requests) == 2


def test_persistent_timeout_fails_clearly(server, key, tmp_path):
    server.script = ["slow", "slow", "slow"]
    with pytest.raises(RoleCallError, match=r"after 3 attempt\(s\): no reply within timeout_s=0.3"):
        _chat(server, tmp_path).complete([CHAT])
    assert len(server.requests) == 3


def test_malformed_json_is_retried_then_fails_clearly(server, key, tmp_path):
    server.script = ["badjson", "ok"]
    assert _chat(server, tmp_path).complete([CHAT]) == ["hello"]
    server.script = ["badjson"] * 3
    with pytest.raises(RoleCallError, match="reply is not valid JSON"):
        _chat(server, tmp_path).complete([[{"role": "user", "content": "other"}]])


def test_client_error_fails_at_once_and_scrubs_the_key(server, key, tmp_path):
    server.script = ["401"]
    with pytest.raises(RoleCallError, match="HTTP 401") as err:
        _chat(server, tmp_path).complete([CHAT])
    assert len(server.requests) == 1
    assert KEY not in str(err.value) and "***" in str(err.value)  # the server echoed it back


def test_cache_hit_on_rerun_makes_no_request(server, key, tmp_path):
    chats = [[{"role": "user", "content": f"q{i}"}] for i in range(5)]
    server.answer = lambda body: "re:" + body["messages"][-1]["content"]
    first = _chat(server, tmp_path).complete(chats + chats[:2])  # duplicates in a batch are paid once
    assert len(server.requests) == 5
    rerun = _chat(server, tmp_path)
    assert rerun.complete(chats) == first[:5] == [f"re:q{i}" for i in range(5)]
    assert len(server.requests) == 5
    assert rerun.usage.calls == 0 and rerun.usage.cache_hits == 5
    # a different decoding setting is a different call
    _chat(server, tmp_path, temperature=0.7).complete(chats[:1])
    assert len(server.requests) == 6


def test_concurrency_is_bounded(server, key, tmp_path):
    server.delay = 0.05
    chats = [[{"role": "user", "content": f"q{i}"}] for i in range(12)]
    _chat(server, tmp_path, concurrency=3).complete(chats)
    assert len(server.requests) == 12
    assert 1 < server.max_in_flight <= 3


def test_key_never_reaches_logs_cache_or_outputs(server, key, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    server.script = ["500", "badjson", "slow"]
    server.answer = lambda body: "SELECT 1" if "SELECT" in body["messages"][-1]["content"] else "CLARIFY"
    roles = RolesParams(cache_dir=str(tmp_path / "cache"), classifier=_cfg(server, max_retries=4))
    clf = build_role("classifier", roles)
    items = [ClassifyItem("ambigsql", [{"role": "user", "content": "Show singers"}], "Which columns?")]
    out = clf.classify(items)
    assert out == [Action.CLARIFY]
    assert all(a == f"Bearer {KEY}" for a in server.auth) and len(server.auth) == 4
    assert caplog.records, "the retries should have been logged"
    assert KEY not in caplog.text
    cache_bytes = b"".join(p.read_bytes() for p in (tmp_path / "cache").iterdir())
    assert b"CLARIFY" in cache_bytes and KEY.encode() not in cache_bytes
    assert KEY not in repr(roles) and KEY not in json.dumps(clf.usage.as_dict())


def test_prompted_classifier_parses_and_falls_back_countably(server, key, tmp_path):
    replies = {"a": "Label: CLARIFY", "b": "answer.", "c": "I cannot tell."}
    server.answer = lambda body: replies[body["messages"][-1]["content"].split("turn to label:\n")[1][0]]
    usage = UsageCounter()
    clf = build_role("classifier", RolesParams(cache_dir=str(tmp_path / "c"), classifier=_cfg(server)), usage=usage)
    msgs = [{"role": "user", "content": "Show singers"}]
    # "c..." names no action: the surface form decides ("c?" asks), and the fallback is counted
    got = clf.classify([ClassifyItem("ambigsql", msgs, r) for r in ("a b", "b c", "c?")])
    assert got == [Action.CLARIFY, Action.ANSWER, Action.CLARIFY]
    assert usage.fallbacks == 1 and usage.calls == 3
    sent = server.requests[0]["messages"]
    assert sent[0]["role"] == "system" and "CLARIFY or ANSWER" in sent[0]["content"]
    # the few-shot examples are AmbigSQL's own
    assert any("SELECT count(*) FROM singer" in m["content"] for m in sent)


def test_prompted_rejecter_sees_only_target_action_examples(server, key, tmp_path):
    server.answer = lambda body: "Assistant: Which year do you mean?"
    rej = build_role("rejecter", RolesParams(cache_dir="", rejecter=_cfg(server)))
    item = RejectItem("pacific", "Revenue | 2019 | 2018", [{"role": "user", "content": "What was revenue?"}],
                      Action.CLARIFY, gold_response="$ 5", final_answer="$ 5")
    assert rej.generate([item]) == ["Which year do you mean?"]
    sent = server.requests[0]["messages"]
    shots = [m["content"] for m in sent if m["role"] == "assistant"]
    assert shots == ["Which year are you asking about?"]
    assert "Ask exactly one short clarifying question" in sent[-1]["content"]


# ------------------------------------------------------------------------ faults: nothing paid twice
def _items(n):
    return [[{"role": "user", "content": f"q{i}"}] for i in range(n)]


def _cached(tmp_path) -> int:
    path = tmp_path / "cache" / CallCache.FILE
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0
    finally:
        conn.close()


def test_permanent_error_stops_new_calls_and_keeps_every_paid_reply(server, key, tmp_path):
    """One HTTP 400 among 100 items: calls stop at once, every reply paid for is stored, and the
    rerun pays only for the calls never answered."""
    server.delay = 0.02
    server.steps = {"q5": "400"}
    with pytest.raises(RoleCallError, match="HTTP 400"):
        _chat(server, tmp_path, concurrency=4).complete(_items(100))
    paid = list(server.answered)
    assert len(server.requests) <= 6 + 4  # q0..q5 plus at most the calls already in flight
    assert _cached(tmp_path) == len(paid) >= 5
    server.steps, server.requests, server.answered = {}, [], []
    rerun = _chat(server, tmp_path, concurrency=4)
    assert rerun.complete(_items(100)) == ["hello"] * 100
    sent = {r["messages"][-1]["content"] for r in server.requests}
    # distinct calls: under load a 0.3 s timeout may retry one, which is not a repeated paid reply
    assert sent & set(paid) == set() and len(sent) == 100 - len(paid)


@pytest.mark.parametrize("status, hint", [("401", "api_key_env"), ("403", "not allowed"), ("404", "base_url")])
def test_auth_and_not_found_fail_fast(server, key, tmp_path, status, hint):
    server.steps = {f"q{i}": status for i in range(50)}
    start = time.monotonic()
    with pytest.raises(RoleCallError, match=f"HTTP {status}.*{hint}"):
        _chat(server, tmp_path, concurrency=4, max_retries=5).complete(_items(50))
    assert len(server.requests) <= 4  # no retry, no new call after the first failure
    assert time.monotonic() - start < 5


def test_dead_endpoint_trips_the_circuit_breaker(server, key, tmp_path):
    """Every request answers 500: without a breaker 50 items x 6 attempts = 300 requests."""
    server.steps = {f"q{i}": "500" for i in range(50)}
    chat = _chat(server, tmp_path, concurrency=4, max_retries=5)
    with pytest.raises(RoleCallError, match="in a row|failed after"):
        chat.complete(_items(50))
    assert len(server.requests) <= BREAKER_FAILURES + 4
    with pytest.raises(RoleCallError, match="in a row"):  # later calls fail at once
        chat.complete([[{"role": "user", "content": "another"}]])
    assert len(server.requests) <= BREAKER_FAILURES + 4


def test_unreachable_endpoint_trips_the_circuit_breaker(key, tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: connection refused
    cfg = RoleParams(backend="http", model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=KEY_ENV,
                     timeout_s=0.5, max_retries=5, backoff_s=0.0, concurrency=4)
    chat = HttpChat(cfg, role="simulator", cache=None, sleep=lambda s: None)
    start = time.monotonic()
    with pytest.raises(RoleCallError):
        chat.complete(_items(50))
    assert chat.attempts <= BREAKER_FAILURES + 4 and time.monotonic() - start < 5


def test_trickling_server_is_cut_at_the_total_deadline(server, key, tmp_path):
    """One byte every 0.5 s never trips a per-read timeout of 1 s; the request deadline does."""
    server.script = ["trickle"]
    start = time.monotonic()
    with pytest.raises(RoleCallError, match=r"no reply within timeout_s=1"):
        _chat(server, tmp_path, timeout_s=1.0, max_retries=0).complete([CHAT])
    assert time.monotonic() - start < 2.0


_CLIENT = textwrap.dedent("""
    import sys
    from act.params import RoleParams
    from act.roles.cache import CallCache
    from act.roles.http import HttpChat
    url, cache_dir, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cfg = RoleParams(backend="http", model="test-model", base_url=url, api_key_env="", timeout_s=30,
                     max_retries=0, concurrency=4, max_tokens=32)
    chat = HttpChat(cfg, role="classifier", cache=CallCache.open(cache_dir))
    chat.complete([[{"role": "user", "content": f"q{i}"}] for i in range(n)])
""")


def test_sigkill_mid_run_loses_no_paid_reply(server, tmp_path):
    """A real SIGKILL while the first request is still slow and 12 others were answered: all 12
    are stored, and the rerun pays for none of them again."""
    n = 30
    server.steps = {f"q{i}": "gate" for i in [0, *range(13, n)]}
    proc = subprocess.Popen([sys.executable, "-c", _CLIENT, server.url, str(tmp_path / "cache"), str(n)],
                            cwd=os.getcwd())
    try:
        deadline = time.monotonic() + 60
        while _cached(tmp_path) < 12 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert _cached(tmp_path) == 12, "the 12 answered calls must be stored while the run goes on"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    paid = set(server.answered)
    assert len(paid) == 12
    server.gate.set()
    server.steps, server.requests = {}, []
    rerun = _chat(server, tmp_path)
    assert rerun.complete(_items(n)) == ["hello"] * n
    sent = {r["messages"][-1]["content"] for r in server.requests}
    assert sent & paid == set() and len(server.requests) == n - 12
    assert rerun.usage.cache_hits == 12
