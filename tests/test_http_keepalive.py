"""The httpx transport of the HTTP role backend on an HTTP/1.1 keep-alive server (127.0.0.1).

`tests/test_http_backend.py` plays its script on an HTTP/1.0 server (one connection per request);
this one keeps connections open, so later requests reuse a pooled connection and the total
deadline must catch the socket from the response rather than from the connect.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from act.params import RoleParams
from act.roles.http import HttpChat, RoleCallError


class KeepAlive:
    def __init__(self):
        self.connections: set[int] = set()
        self.trickle = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep the connection open between requests

            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                server.connections.add(self.client_address[1])
                if server.trickle:  # full headers, then one byte every 0.3 s of a 1000-byte body
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    try:
                        for _ in range(30):
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            time.sleep(0.3)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    self.close_connection = True
                    return
                payload = json.dumps({"choices": [{"message": {"content": "hi"}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = KeepAlive()
    yield s
    s.close()


def _chat(server, **kw):
    cfg = RoleParams(backend="http", model="m", base_url=server.url, api_key_env="", timeout_s=1.0,
                     max_retries=0, backoff_s=0.0, concurrency=1, **kw)
    return HttpChat(cfg, role="simulator", cache=None, sleep=lambda s: None)


def test_requests_reuse_one_pooled_connection(server):
    chat = _chat(server)
    assert chat.complete([[{"role": "user", "content": f"q{i}"}] for i in range(5)]) == ["hi"] * 5
    assert chat.attempts == 5 and len(server.connections) == 1  # one TCP connection for five calls
    chat.close()


def test_trickle_on_a_reused_connection_is_cut_at_the_deadline(server):
    chat = _chat(server)
    assert chat.complete([[{"role": "user", "content": "warm"}]]) == ["hi"]
    server.trickle = True
    start = time.monotonic()
    with pytest.raises(RoleCallError, match=r"no reply within timeout_s=1.0"):
        chat.complete([[{"role": "user", "content": "slow"}]])
    assert time.monotonic() - start < 1.8  # a per-read timeout (1 s) alone would wait ~9 s
    assert len(server.connections) == 1, "the trickled request must have used the pooled connection"
    server.trickle = False  # the pool drops the cut connection and opens a fresh one
    assert chat.complete([[{"role": "user", "content": "again"}]]) == ["hi"]
    assert len(server.connections) == 2
    chat.close()
