"""A client for any OpenAI-compatible chat-completions endpoint (hosted APIs, vLLM, Ollama,
Gemini's compatible endpoint), with the robustness a long `dvc repro` needs:

- transport: one `httpx.Client` per role (keep-alive pool of `concurrency` connections, proxies
  from the environment, a failed connect retried once at once by httpx's transport);
- a total deadline per request (`timeout_s` covers connecting, the headers and the whole body: a
  server trickling one byte at a time is cut off); retries with exponential backoff on 429, 5xx,
  timeouts, dropped connections and unreadable replies (invalid JSON, a body that does not match
  its Content-Encoding), honouring the server's Retry-After up to `MAX_BACKOFF_S` (60 s): a server
  asking for a longer wait fails the call at once, saying it is rate-limited;
- a cap on reply size, counted while the body streams in and after decompression (`reply_cap`:
  1 MiB + 64 bytes per `max_tokens`), so a runaway reply or a gzip bomb is refused before it fills
  memory or the cache;
- no retry for a status retrying cannot fix (400, 401, 403, 404, ...): the call fails at once,
  and no new call is started after it (those in flight finish and are kept);
- a circuit breaker: after `BREAKER_FAILURES` failed attempts in a row on the endpoint (any
  thread), every further call fails at once instead of each paying its own retries;
- bounded concurrency (at most `roles.<name>.concurrency` requests in flight);
- the persistent call cache (`act.roles.cache`): each reply is stored the moment it arrives, so
  a failure or a kill never loses a paid reply; optional fields (`usage`) cannot fail a reply that
  has its text;
- the API key read from the environment variable named by `roles.<name>.api_key_env`, checked at
  start (printable ASCII, no whitespace), sent only in the Authorization header, and scrubbed from
  the whole of any error text before that text is cut; never logged or stored.

Every failure is a `RoleCallError` naming the role and the URL.

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
import zlib
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
ERROR_BODY_BYTES = 64 * 1024
"""Of an error reply (HTTP >= 400) only this much is read: enough to scrub, then cut to `ERROR_TEXT_CHARS`."""
ERROR_TEXT_CHARS = 300
"""Longest piece of a server's reply quoted in an error message."""
_HINTS = {401: "check the key in the environment variable named by api_key_env",
          403: "the key is not allowed to use this model or endpoint",
          404: "check base_url (it should end in /v1) and the model name"}


class RoleCallError(RuntimeError):
    """A model call failed for good (after retries, or a status retrying cannot fix)."""


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


def reply_cap(max_tokens: int) -> int:
    """Most bytes (decoded) a 200 reply may have: 1 MiB of envelope plus 64 bytes per token asked
    for, far above any honest reply (a token is ~4 bytes of text, at most ~12 JSON-escaped)."""
    return (1 << 20) + 64 * max(1, int(max_tokens))


def key_problem(key: str) -> str | None:
    """What is wrong with an API key's characters, in words that quote none of them (None: fine).
    A key is printable ASCII without spaces; a newline or space usually comes from the way it was
    exported (a file read without stripping) and otherwise surfaces as a baffling connection error."""
    for i, c in enumerate(key):
        if c in "\r\n":
            what = "a newline"
        elif c.isspace():
            what = "whitespace"
        elif ord(c) < 32 or ord(c) == 127:
            what = "a control character"
        elif ord(c) > 126:
            what = "a non-ASCII character"
        else:
            continue
        at = "at its start" if i == 0 else "at its end" if i == len(key) - 1 else "inside it"
        return f"has {what} {at}"
    return None


def redact(text: str, secret: str, limit: int) -> str:
    """`text` with every occurrence of `secret` masked, cut to `limit` characters *after* masking
    (cutting first could split the secret and leave its start unmasked), and with any tail that is
    the start of the secret dropped too."""
    if secret:
        text = text.replace(secret, "***")
    cut = text[:limit]
    if secret and len(cut) < len(text):
        for n in range(min(len(secret), len(cut)), 0, -1):
            if cut.endswith(secret[:n]):
                cut = cut[:-n]
                break
    return cut + ("..." if len(cut) < len(text) else "")


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
        self._cap = reply_cap(cfg.max_tokens)
        self._api_key()  # a malformed key stops the stage here, before any call
        self._breaker_lock = threading.Lock()
        self._failures_in_a_row = 0
        self._last_failure: _Retryable | None = None
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
        key = os.environ.get(self.cfg.api_key_env, "") if self.cfg.api_key_env else ""
        problem = key_problem(key)
        if problem:
            raise RoleCallError(f"roles.{self.role}: the API key in ${self.cfg.api_key_env} {problem}; a key is "
                                "printable ASCII without spaces (was it read from a file without stripping?)")
        return key

    def _scrub(self, text: str, limit: int = ERROR_TEXT_CHARS) -> str:
        """`text` with the key masked, then cut to `limit` characters (`redact`)."""
        key = os.environ.get(self.cfg.api_key_env, "") if self.cfg.api_key_env else ""
        return redact(text, key, limit)

    def call(self, messages: list[Message]) -> Completion:
        body = json.dumps({"model": self.cfg.model, "messages": messages, **self.decoding()}).encode("utf-8")
        attempts = self.cfg.max_retries + 1
        last = ""
        for attempt in range(attempts):
            self._check_breaker()
            try:
                completion = self._once(body)
            except _Retryable as e:
                self._failed(e)
                last = self._scrub(str(e))
                if e.retry_after is not None and e.retry_after > MAX_BACKOFF_S:
                    raise RoleCallError(
                        f"roles.{self.role}: {self.url} is {_busy(e.status)}: it asks to wait {e.retry_after:.0f} s "
                        f"(Retry-After), more than the {MAX_BACKOFF_S:.0f} s this client waits; try again later "
                        f"or lower roles.{self.role}.concurrency") from None
                if attempt + 1 >= attempts:
                    break
                wait = min(MAX_BACKOFF_S, self.cfg.backoff_s * (2 ** attempt))
                if e.retry_after is not None:
                    wait = max(wait, e.retry_after)
                log.warning("roles.%s: %s; retry %d/%d in %.2fs", self.role, last, attempt + 1,
                            self.cfg.max_retries, wait)
                self._sleep(wait)
            except RoleCallError:
                self._failed()
                raise
            except Exception as e:  # noqa: BLE001 - any other failure still names role and URL, never the key
                self._failed()
                raise RoleCallError(f"roles.{self.role}: {self.url}: {type(e).__name__}: {self._scrub(str(e))}") from None
            else:
                with self._breaker_lock:
                    self._failures_in_a_row = 0
                return completion
        raise RoleCallError(f"roles.{self.role}: {self.url} failed after {attempts} attempt(s): {last}")

    def _failed(self, why: _Retryable | None = None) -> None:
        with self._breaker_lock:
            self._failures_in_a_row += 1
            if why is not None:
                self._last_failure = why

    def _check_breaker(self) -> None:
        with self._breaker_lock:
            down = self._failures_in_a_row >= BREAKER_FAILURES
            last = self._last_failure
        if down:
            if last is not None and last.status in (429, 503):
                hint = f"it is {_busy(last.status)}: try again later or lower roles.{self.role}.concurrency"
            else:
                hint = "is it up? is base_url right?"
            said = f"; last: {self._scrub(str(last))}" if last is not None else ""
            raise RoleCallError(f"roles.{self.role}: {self.url} failed {BREAKER_FAILURES} attempts in a row{said}; "
                                f"giving up on the endpoint ({hint})")

    def _once(self, body: bytes) -> Completion:
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "Accept-Encoding": "gzip, deflate"}  # what `_Decoder` decodes
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
                status = resp.status_code
                if status in RETRY_STATUS:  # the body is not needed
                    raise _Retryable(_status_text(status), _retry_after(resp.headers.get("Retry-After")), status)
                if status >= 400:
                    try:
                        raw = _read_body(resp, ERROR_BODY_BYTES, truncate=True)
                    except _Retryable:  # an undecodable error body: the status still says it all
                        raw = b"(unreadable body)"
                    detail = self._scrub(raw.decode("utf-8", "replace"))
                    hint = f" ({_HINTS[status]})" if status in _HINTS else ""
                    raise RoleCallError(f"roles.{self.role}: {self.url} answered HTTP {status}{hint}: {detail}")
                raw = _read_body(resp, self._cap)
        except httpx.TimeoutException:
            raise _Retryable(late) from None
        except httpx.TransportError as e:  # refused, reset, cut short (by the deadline or the server)
            if deadline.expired:
                raise _Retryable(late) from None
            raise _Retryable(f"connection failed: {type(e).__name__}") from None
        except _TooBig:
            raise RoleCallError(
                f"roles.{self.role}: {self.url} sent a reply over {self._cap} bytes for max_tokens="
                f"{self.cfg.max_tokens}; refused unread and not stored (does the endpoint ignore max_tokens?)") from None
        return self._parse(raw)

    def _parse(self, raw: bytes) -> Completion:
        """The reply's text (required: without it the call is retried) and its token counts
        (optional: a malformed `usage` counts 0 tokens and never loses the paid text)."""
        try:
            data = json.loads(raw)
            text = data["choices"][0]["message"]["content"]
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, huge numbers, deep nesting
            raise _Retryable(f"reply is not valid JSON: {self._quote(raw)}") from None
        except (KeyError, IndexError, TypeError):
            raise _Retryable(f"reply has no choices[0].message.content: {self._quote(raw)}") from None
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise _Retryable(f"reply content is {type(text).__name__}, not text")
        # a lone surrogate ("\\ud800") would make the cache refuse the paid reply
        text = text.encode("utf-8", "replace").decode("utf-8")
        usage = data.get("usage") if isinstance(data, dict) else None
        return Completion(text, self._tokens(usage, "prompt_tokens"), self._tokens(usage, "completion_tokens"))

    def _quote(self, raw: bytes) -> str:
        return repr(self._scrub(raw.decode("utf-8", "replace"), 80))

    def _tokens(self, usage: Any, name: str) -> int:
        value = usage.get(name) if isinstance(usage, dict) else None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 63):
            return value or 0
        log.warning("roles.%s: %s answered usage.%s = %s, not a token count; counted as 0", self.role, self.url,
                    name, self._scrub(repr(value), 40))
        return 0


def _status_text(status: int) -> str:
    return f"HTTP {status}" + (f" ({_busy(status)})" if status in (429, 503) else "")


def _busy(status: int | None) -> str:
    return "rate-limited" if status == 429 else "unavailable" if status == 503 else f"answering HTTP {status}"


# -- the body: decoded as it streams, never past a cap -------------------------------------------
class _TooBig(Exception):
    """The decoded body passed its cap."""


class _Decoder:
    """Decodes a body by its Content-Encoding (identity, gzip, deflate: what httpx itself decodes
    without extra packages) with zlib's `max_length`, so a gzip bomb inflates no further than the cap.
    A body that does not match its declared encoding is retryable, like invalid JSON."""

    def __init__(self, header: str):
        codings = [c.strip().lower() for c in header.split(",") if c.strip().lower() not in ("", "identity")]
        self.name = ", ".join(codings) or "identity"
        if not codings:
            self._z = None
        elif codings == ["gzip"] or codings == ["x-gzip"]:
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif codings == ["deflate"]:
            self._z = zlib.decompressobj()
        else:
            raise _Retryable(f"reply has Content-Encoding {self.name[:40]!r}, which this client does not decode")
        self._started = False

    def feed(self, data: bytes, room: int) -> bytes:
        """Decoded bytes of `data`, at most `room` of them (more means the cap is passed)."""
        if self._z is None:
            return data
        try:
            out = self._z.decompress(data, max(1, room))
        except zlib.error:
            if self.name == "deflate" and not self._started:  # some servers send raw deflate
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                self._started = True
                return self.feed(data, room)
            raise _Retryable(f"reply body does not match its Content-Encoding: {self.name}") from None
        self._started = True
        return out

    def finish(self) -> None:
        if self._z is not None and not self._z.eof:
            raise _Retryable(f"reply body ends inside its {self.name} stream (Content-Encoding mismatch?)")


def _read_body(resp: httpx.Response, cap: int, *, truncate: bool = False) -> bytes:
    """The body, decoded, as it streams in: past `cap` bytes `_TooBig` (or, with `truncate`, the
    first `cap` bytes). A declared Content-Length over the cap is refused before reading."""
    decoder = _Decoder(resp.headers.get("Content-Encoding", ""))
    declared = resp.headers.get("Content-Length", "")
    if not truncate and decoder.name == "identity" and declared.isdigit() and int(declared) > cap:
        raise _TooBig
    parts, total = [], 0
    for chunk in resp.iter_raw():
        out = decoder.feed(chunk, cap - total + 1)
        total += len(out)
        if total > cap:
            if truncate:
                parts.append(out[: len(out) - (total - cap)])
                return b"".join(parts)
            raise _TooBig
        parts.append(out)
    decoder.finish()
    return b"".join(parts)


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
