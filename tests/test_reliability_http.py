"""Issue 23, HTTP role: replies a server can send that used to lose paid calls, leak the key in
part, fill memory, or blame the wrong thing. Each test runs a real loopback (127.0.0.1) server
that plays raw replies (status, headers, body bytes) and counts requests, and checks the outcome:
the call count on a rerun, what was stored, the error's size and that no piece of the key shows.
"""

from __future__ import annotations

import gzip
import json
import logging
import sqlite3
import threading
import tracemalloc
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from act.errors import InputError
from act.params import RoleParams
from act.roles.cache import CallCache
from act.roles.http import MAX_BACKOFF_S, HttpChat, RoleCallError, redact, reply_cap

KEY = "sk-live-4Qz9xT2mVb7nKp3sLw8eRf6yHj1cUa5d"
KEY_ENV = "ACT_TEST_REL_KEY"


def ok_body(text="hello", usage=None) -> bytes:
    usage = {"prompt_tokens": 11, "completion_tokens": 3} if usage is None else usage
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}], "usage": usage}).encode()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a client that closes a kept-alive connection is no news


class RawServer:
    """Plays `replies` in order (then `default`): each a (status, headers, body) triple; a body
    given as a list of byte chunks is sent without Content-Length, the connection closing after it."""

    def __init__(self):
        self.replies: list[tuple[int, dict, object]] = []
        self.default = (200, {}, ok_body())
        self.requests = 0
        self.auth: list[str | None] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                with server.lock:
                    server.requests += 1
                    server.auth.append(self.headers.get("Authorization"))
                    status, headers, body = server.replies.pop(0) if server.replies else server.default
                if callable(body):
                    body = body(self.headers)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    if isinstance(body, list):
                        self.send_header("Connection", "close")
                        self.end_headers()
                        for chunk in body:
                            self.wfile.write(chunk)
                        self.close_connection = True
                    else:
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (a refused reply)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = RawServer()
    yield s
    s.close()


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def _chat(server, tmp_path, sleeps=None, **kw) -> HttpChat:
    cfg = RoleParams(backend="http", model="test-model", base_url=server.url, api_key_env=KEY_ENV, timeout_s=10,
                     max_retries=2, backoff_s=0.0, concurrency=2, max_tokens=256)
    return HttpChat(replace(cfg, **kw), role="simulator", cache=CallCache.open(tmp_path / "cache"),
                    sleep=sleeps.append if sleeps is not None else (lambda s: None))


def _stored(tmp_path) -> int:
    conn = sqlite3.connect(tmp_path / "cache" / CallCache.FILE)
    try:
        return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    finally:
        conn.close()


def _leaks(text: str, secret: str = KEY) -> list[str]:
    """Every prefix of the secret of 4 characters or more that appears in `text`."""
    return [secret[:n] for n in range(4, len(secret) + 1) if secret[:n] in text]


CHATS = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]


# -------------------------------------------------------------- item 6: paid replies never lost
@pytest.mark.parametrize("usage", [
    {"prompt_tokens": "many", "completion_tokens": 3},
    {"prompt_tokens": -5, "completion_tokens": [1]},
    {"prompt_tokens": 1e300, "completion_tokens": True},
    "lots",
    [1, 2],
])
def test_malformed_usage_keeps_the_paid_reply(server, key, tmp_path, caplog, usage):
    server.default = (200, {}, ok_body("paid text", usage))
    chat = _chat(server, tmp_path)
    assert chat.complete(CHATS) == ["paid text"] * 3
    assert server.requests == 3 and _stored(tmp_path) == 3
    assert chat.usage.calls == 3 and chat.usage.prompt_tokens >= 0
    rerun = _chat(server, tmp_path)
    assert rerun.complete(CHATS) == ["paid text"] * 3
    assert server.requests == 3, "a rerun must not pay for stored replies again"


def test_content_encoding_mismatch_is_retried_and_then_stored(server, key, tmp_path):
    server.replies = [(200, {"Content-Encoding": "gzip"}, ok_body("first"))]  # says gzip, is plain JSON
    server.default = (200, {}, ok_body("second"))
    chat = _chat(server, tmp_path)
    assert chat.complete(CHATS[:1]) == ["second"]
    assert server.requests == 2 and _stored(tmp_path) == 1
    assert _chat(server, tmp_path).complete(CHATS[:1]) == ["second"] and server.requests == 2


def test_real_gzip_reply_is_decoded(server, key, tmp_path):
    server.default = (200, {"Content-Encoding": "gzip"}, gzip.compress(ok_body("zipped")))
    assert _chat(server, tmp_path).complete(CHATS[:1]) == ["zipped"]


def test_persistent_encoding_mismatch_fails_naming_role_and_url(server, key, tmp_path):
    server.default = (200, {"Content-Encoding": "deflate"}, b"\x00not deflate at all" * 10)
    with pytest.raises(RoleCallError) as err:
        _chat(server, tmp_path).complete(CHATS[:1])
    msg = str(err.value)
    assert msg.startswith(f"roles.simulator: {server.url}/chat/completions") and "Content-Encoding" in msg
    assert server.requests == 3 and len(msg) < 600


def test_lone_surrogate_in_reply_is_stored_not_lost(server, key, tmp_path):
    server.default = (200, {}, b'{"choices": [{"message": {"content": "a\\ud800b"}}]}')
    assert _chat(server, tmp_path).complete(CHATS[:1]) == ["a?b"]
    assert _chat(server, tmp_path).complete(CHATS[:1]) == ["a?b"] and server.requests == 1


def test_deeply_nested_reply_is_an_unreadable_reply_not_a_crash(server, key, tmp_path):
    server.default = (200, {}, b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(RoleCallError, match=r"roles\.simulator: .* after 3 attempt\(s\): reply is not valid JSON"):
        _chat(server, tmp_path).complete(CHATS[:1])


# -------------------------------------------------------------- item 7: no piece of the key leaks
@pytest.mark.parametrize("offset", [0, 250, 280, 290, 295, 299, 300, 301])
def test_key_echoed_across_the_cut_never_shows(server, key, tmp_path, caplog, capsys, offset):
    """The server echoes the key so that it straddles the 300-character cut (and the 80-character
    one of unreadable replies): no prefix of 4+ characters of the key reaches the error or the log."""
    caplog.set_level(logging.DEBUG)
    echo = ("x" * offset + KEY + " trailing").encode()
    server.replies = [(200, {}, echo[:offset % 80] + KEY.encode()),  # unreadable reply -> retried, logged
                      (401, {}, echo)]
    with pytest.raises(RoleCallError, match="HTTP 401") as err:
        _chat(server, tmp_path).complete(CHATS[:1])
    out = capsys.readouterr()
    for text in (str(err.value), caplog.text, out.out, out.err):
        assert _leaks(text) == []
    assert "***" in str(err.value) or offset > 297  # the mask itself may be cut


def test_redact_masks_before_cutting():
    text = "e" * 295 + KEY
    assert _leaks(redact(text, KEY, 300)) == [] and _leaks(text[:300].replace(KEY, "***")) != []
    assert redact("abc " + KEY + " def", KEY, 300) == "abc *** def"


# -------------------------------------------------------------- item 8: reply size is capped
def test_oversized_reply_is_refused_and_not_stored(server, key, tmp_path):
    big = ok_body("y" * 10_000_000)
    server.default = (200, {}, [big[i:i + 65536] for i in range(0, len(big), 65536)])  # no Content-Length
    with pytest.raises(RoleCallError) as err:
        _chat(server, tmp_path).complete(CHATS[:1])
    msg = str(err.value)
    assert f"over {reply_cap(256)} bytes" in msg and msg.startswith("roles.simulator: ") and len(msg) < 400
    assert server.requests == 1, "a runaway reply is not paid for again by retries"
    assert _stored(tmp_path) == 0


def test_declared_oversized_reply_is_refused_unread(server, key, tmp_path):
    server.default = (200, {}, ok_body("y" * 3_000_000))
    with pytest.raises(RoleCallError, match="over"):
        _chat(server, tmp_path).complete(CHATS[:1])
    assert _stored(tmp_path) == 0


def test_gzip_bomb_is_cut_at_the_cap_without_inflating(server, key, tmp_path):
    bomb = gzip.compress(b'{"choices": [{"message": {"content": "' + b" " * 200_000_000 + b'"}}]}', 9)
    assert len(bomb) < 300_000
    server.default = (200, {"Content-Encoding": "gzip"}, bomb)
    chat = _chat(server, tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(RoleCallError, match="over"):
            chat.complete(CHATS[:1])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"inflated {peak} bytes"
    assert _stored(tmp_path) == 0


# -------------------------------------------------------------- item 12: Retry-After, key, cache file
def test_huge_retry_after_fails_fast_saying_rate_limited(server, key, tmp_path):
    server.default = (429, {"Retry-After": "99999"}, b"slow down")
    sleeps: list[float] = []
    with pytest.raises(RoleCallError) as err:
        _chat(server, tmp_path, sleeps, max_retries=5).complete(CHATS[:1])
    msg = str(err.value)
    assert "rate-limited" in msg and "99999" in msg and f"{MAX_BACKOFF_S:.0f} s" in msg
    assert "is it up" not in msg
    assert sleeps == [] and server.requests == 1


def test_retry_after_within_the_cap_is_waited_and_logged_as_rate_limited(server, key, tmp_path, caplog):
    server.replies = [(429, {"Retry-After": "45"}, b"")]
    sleeps: list[float] = []
    assert _chat(server, tmp_path, sleeps).complete(CHATS[:1]) == ["hello"]
    assert sleeps == [45.0] and "rate-limited" in caplog.text


def test_breaker_on_a_rate_limited_endpoint_does_not_blame_it(server, key, tmp_path):
    server.default = (429, {}, b"")
    with pytest.raises(RoleCallError) as err:
        _chat(server, tmp_path, max_retries=20, concurrency=1).complete(CHATS[:1])
    assert "rate-limited" in str(err.value) and "is it up" not in str(err.value)


@pytest.mark.parametrize("bad", [KEY + "\n", " " + KEY, KEY[:10] + " " + KEY[10:], KEY + "\t", KEY + "\u00e9"])
def test_key_with_whitespace_is_refused_at_start_without_echo(server, tmp_path, monkeypatch, bad):
    monkeypatch.setenv(KEY_ENV, bad)
    with pytest.raises(RoleCallError) as err:
        _chat(server, tmp_path)
    msg = str(err.value)
    assert KEY_ENV in msg and "roles.simulator" in msg and _leaks(msg) == []
    assert server.requests == 0


def test_corrupt_cache_file_names_its_path_and_is_left_alone(tmp_path):
    path = tmp_path / "cache" / CallCache.FILE
    path.parent.mkdir()
    junk = b"SQLite format 3\x00" + bytes(range(256)) * 20
    path.write_bytes(junk)
    with pytest.raises(InputError) as err:
        CallCache.open(tmp_path / "cache")
    assert str(path) in str(err.value) and "move it aside" in str(err.value)
    assert path.read_bytes() == junk


def test_cache_dir_with_tilde_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    CallCache.open("~/roles").close()
    assert (tmp_path / "home" / "roles" / CallCache.FILE).exists() and not (tmp_path / "~").exists()
