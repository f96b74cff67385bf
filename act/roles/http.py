"""A client for any OpenAI-compatible chat-completions endpoint (hosted APIs, vLLM, Ollama,
Gemini's compatible endpoint), with the robustness a long `dvc repro` needs:

- transport: one `httpx.Client` per role (keep-alive pool of `concurrency` connections, proxies
  from the environment, a failed connect retried once at once by httpx's transport);
- a total deadline per request (`timeout_s` covers connecting, the headers and the whole body: a
  server trickling one byte at a time is cut off); retries with exponential backoff on 429, 5xx,
  timeouts, dropped connections and unreadable replies, honouring the server's Retry-After;
- no retry for a status retrying cannot fix (400, 401, 403, 404, ...): the call fails at once,
  and no new call is started after it (those in flight finish and are kept);
- a circuit breaker: after `BREAKER_FAILURES` failed attempts in a row on the endpoint (any
  thread), every further call fails at once instead of each paying its own retries;
- bounded concurrency (at most `roles.<name>.concurrency` requests in flight);
- the persistent call cache (`act.roles.cache`): each reply is stored the moment it arrives, so
  a failure or a kill never loses a paid reply;
- the API key read from the environment variable named by `roles.<name>.api_key_env`, sent only
  in the Authorization header, and scrubbed from any error text; never logged or stored.

httpx retries only connects; the status and timeout policy above is the project's own, because
httpx has none for them and the endpoint's Retry-After and the breaker must be obeyed across threads.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Sequence

import httpx

from act.records import Message
from act.roles.base import UsageCounter
from act.roles.cache import CallCache, Completion, call_key, complete_through_cache

log = logging.getLogger("act.roles.http")

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 60.0
BREAKER_FAILURES = 10
"""Failed attempts in a row (across threads) after which the endpoint is taken as down."""
CONNECT_RETRIES = 1
"""Immediate reconnects httpx's transport makes when a connect fails (inside one attempt)."""
_HINTS = {401: "check the key in the environment variable named by api_key_env",
          403: "the key is not allowed to use this model or endpoint",
          404: "check base_url (it should end in /v1) and the model name"}


class RoleCallError(RuntimeError):
    """A model call failed for good (after retries, or a status retrying cannot fix)."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpChat:
    """`complete(chats) -> replies` against `<base_url>/chat/completions`."""

    def __init__(self, cfg, *, role: str, cache: CallCache | None = None, usage: UsageCounter | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        if not cfg.base_url:
            raise ValueError(f"roles.{role}.base_url: empty; the http backend needs an endpoint, "
                             "e.g. http://127.0.0.1:8000/v1")
        if not cfg.model:
            raise ValueError(f"roles.{role}.model: empty; the http backend needs a model name")
        self.cfg, self.role, self.cache = cfg, role, cache
        self.usage = usage if usage is not None else UsageCounter()
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        self._sleep = sleep
        self._client = httpx.Client(
            transport=httpx.HTTPTransport(retries=CONNECT_RETRIES),
            timeout=httpx.Timeout(cfg.timeout_s),  # each phase; `_Deadline` bounds the total
            limits=httpx.Limits(max_connections=max(1, cfg.concurrency)),
        )
        self._breaker_lock = threading.Lock()
        self._failures_in_a_row = 0
        self.attempts = 0
        """HTTP requests sent (for tests and the reliability figures)."""

    def close(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        self._client.close()

    @property
    def model(self) -> str:
        return self.cfg.model

    def decoding(self) -> dict:
        return {"temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens}

    def complete(self, chats: Sequence[Sequence[Message]]) -> list[str]:
        chats = [list(c) for c in chats]
        keys = [call_key(self.role, self.cfg.model, c, self.decoding()) for c in chats]

        def compute(missing: list[int], store) -> None:
            workers = max(1, min(self.cfg.concurrency, len(missing)))
            todo = list(reversed(missing))
            running: dict[Future, int] = {}
            error: BaseException | None = None
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"role-{self.role}") as pool:
                while todo or running:
                    # Submit only while nothing has failed for good: calls not yet sent are not paid.
                    while todo and error is None and len(running) < workers:
                        i = todo.pop()
                        running[pool.submit(self.call, chats[i])] = i
                    if not running:
                        break
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        i = running.pop(fut)
                        try:
                            store(i, fut.result())  # saved the moment it arrives
                        except Exception as e:  # noqa: BLE001 - re-raised below, after in-flight calls land
                            error = error or e
            if error is not None:
                raise error

        return complete_through_cache(self.cache, keys, compute, role=self.role, model=self.cfg.model, usage=self.usage)

    # -- one request, with retries ------------------------------------------------------------
    def _api_key(self) -> str:
        return os.environ.get(self.cfg.api_key_env, "") if self.cfg.api_key_env else ""

    def _scrub(self, text: str) -> str:
        key = self._api_key()
        return text.replace(key, "***") if key else text

    def call(self, messages: list[Message]) -> Completion:
        body = json.dumps({"model": self.cfg.model, "messages": messages, **self.decoding()}).encode("utf-8")
        attempts = self.cfg.max_retries + 1
        last = ""
        for attempt in range(attempts):
            self._check_breaker()
            try:
                completion = self._once(body)
            except _Retryable as e:
                self._failed()
                last = self._scrub(str(e))
                if attempt + 1 >= attempts:
                    break
                wait = min(MAX_BACKOFF_S, self.cfg.backoff_s * (2 ** attempt))
                if e.retry_after is not None:
                    wait = max(wait, min(e.retry_after, MAX_BACKOFF_S))
                log.warning("roles.%s: %s; retry %d/%d in %.2fs", self.role, last, attempt + 1,
                            self.cfg.max_retries, wait)
                self._sleep(wait)
            except RoleCallError:
                self._failed()
                raise
            else:
                with self._breaker_lock:
                    self._failures_in_a_row = 0
                return completion
        raise RoleCallError(f"roles.{self.role}: {self.url} failed after {attempts} attempt(s): {last}")

    def _failed(self) -> None:
        with self._breaker_lock:
            self._failures_in_a_row += 1

    def _check_breaker(self) -> None:
        with self._breaker_lock:
            down = self._failures_in_a_row >= BREAKER_FAILURES
        if down:
            raise RoleCallError(f"roles.{self.role}: {self.url} failed {BREAKER_FAILURES} attempts in a row; "
                                "giving up on the endpoint (is it up? is base_url right?)")

    def _once(self, body: bytes) -> Completion:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        late = f"no reply within timeout_s={self.cfg.timeout_s}"
        deadline = _Deadline(self.cfg.timeout_s)
        with self._breaker_lock:
            self.attempts += 1
        try:
            with deadline, self._client.stream("POST", self.url, content=body, headers=headers,
                                               extensions={"trace": deadline.trace}) as resp:
                deadline.watch(resp.extensions.get("network_stream"))  # a reused connection
                raw = resp.read()
        except httpx.TimeoutException:
            raise _Retryable(late) from None
        except httpx.TransportError as e:  # refused, reset, cut short (by the deadline or the server)
            if deadline.expired:
                raise _Retryable(late) from None
            raise _Retryable(f"connection failed: {type(e).__name__}") from None
        if resp.status_code in RETRY_STATUS:
            raise _Retryable(f"HTTP {resp.status_code}", _retry_after(resp.headers.get("Retry-After")))
        if resp.status_code >= 400:
            detail = self._scrub(raw[:300].decode("utf-8", "replace"))
            hint = f" ({_HINTS[resp.status_code]})" if resp.status_code in _HINTS else ""
            raise RoleCallError(f"roles.{self.role}: {self.url} answered HTTP {resp.status_code}{hint}: {detail}")
        return self._parse(raw)

    def _parse(self, raw: bytes) -> Completion:
        try:
            data = json.loads(raw)
            text = data["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Retryable(f"reply is not valid JSON: {raw[:80]!r}") from None
        except (KeyError, IndexError, TypeError):
            raise _Retryable(f"reply has no choices[0].message.content: {raw[:80]!r}") from None
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise _Retryable(f"reply content is {type(text).__name__}, not text")
        usage = data.get("usage") or {}
        return Completion(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))


# -- a total deadline per request ----------------------------------------------------------------
class _Deadline:
    """`with _Deadline(s):` shuts the request's socket down `s` seconds after entry, so a read
    blocked on a server that trickles bytes returns; `expired` tells the caller why.

    The socket comes from httpx's trace hook the moment a new connection is made, or from the
    response once the headers arrive on a reused keep-alive connection (until then httpx's own
    per-read timeout of `s` bounds the wait)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._timer: threading.Timer | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> "_Deadline":
        self._timer = threading.Timer(self.seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        with self._lock:
            self._sock = None  # the connection may go back to the pool: never shut it later

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpx/httpcore trace hook: catch the stream of a connection opened for this request."""
        if event == "connection.connect_tcp.complete":
            self.watch(info.get("return_value"))

    def watch(self, stream: Any) -> None:
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is None:
            return
        with self._lock:
            if self._sock is None:
                self._sock = sock
            expired = self.expired
        if expired:
            self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self._sock
        if sock is not None:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
