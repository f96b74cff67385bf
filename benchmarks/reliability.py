"""Reliability figures: bad inputs tried, faults injected, kills survived, paid calls repeated
after a crash, outputs that differed after a kill, SQL attacks blocked.

    python benchmarks/reliability.py              # ~2-3 minutes on 2 CPU cores
    python benchmarks/reliability.py --kills 3 --examples 100 --json reliability.json

Everything runs on this machine: a loopback (127.0.0.1) fake OpenAI server from the test suite,
real SIGKILLs of child processes, the committed Spider databases. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("ACT_TRACKING", "off")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


# ---------------------------------------------------------------------------------- bad inputs
def bad_inputs(examples: int) -> dict:
    """The property tests (arbitrary JSON spliced into valid records, raw bytes, arbitrary text
    for the scorers) with `examples` inputs each: no crash, scores in [0, 1]."""
    os.environ["ACT_PROPERTY_EXAMPLES"] = str(examples)
    import test_properties as props

    tried = 0
    for name in sorted(n for n in dir(props) if n.startswith("test_")):
        fn = getattr(props, name)
        inner = fn.hypothesis.inner_test
        calls = [0]

        def counting(*a, _inner=inner, _calls=calls, **k):
            _calls[0] += 1
            return _inner(*a, **k)

        fn.hypothesis.inner_test = counting
        wanted = inspect.signature(inner).parameters
        kwargs = {}
        if "tmp_path" in wanted:
            kwargs["tmp_path"] = Path(tempfile.mkdtemp())
        if "db_dir" in wanted:
            kwargs["db_dir"] = _shop_db_dir()
        fn(**kwargs)  # the module reads ACT_PROPERTY_EXAMPLES for its budget
        tried += calls[0]
    return {"inputs_tried": tried, "crashes": 0}


def _shop_db_dir() -> Path:
    root = Path(tempfile.mkdtemp())
    (root / "shop").mkdir()
    conn = sqlite3.connect(root / "shop" / "shop.sqlite")
    conn.executescript("CREATE TABLE item(id INTEGER, name TEXT, price REAL);"
                       "INSERT INTO item VALUES (1, 'pen', 1.5), (2, 'ink', 3.0), (3, 'pad', 1.5);")
    conn.commit()
    conn.close()
    return root


# ---------------------------------------------------------------------------------- SQL attacks
SQL_ATTACKS = [
    "VACUUM INTO '{out}'", "ATTACH '{out}' AS other", "ATTACH DATABASE '{out}' AS o2",
    "SELECT 1; ATTACH '{out}' AS x", "PRAGMA journal_mode = WAL", "PRAGMA writable_schema = ON",
    "SELECT * FROM pragma_table_info('singer')", "SELECT load_extension('{out}')", "SELECT writefile('{out}', 'x')",
    "SELECT readfile('/etc/passwd')", "CREATE TABLE t2(x)", "CREATE TEMP TABLE t3(x)", "INSERT INTO singer(Name) VALUES ('x')",
    "UPDATE singer SET Age = 0", "DELETE FROM singer", "DROP TABLE singer", "ALTER TABLE singer ADD COLUMN y",
    "BEGIN IMMEDIATE", "REINDEX", "ANALYZE", "CREATE TEMP TRIGGER t AFTER INSERT ON singer BEGIN SELECT 1; END",
    "CREATE VIEW v AS SELECT 1", "DETACH main",
    "SELECT randomblob(900000000)", "SELECT length(replace(hex(zeroblob(1e8)),'0','00'))",
    "SELECT zeroblob(2000000000)", "SELECT printf('%.*c', 2000000000, 'x')",
    "SELECT length(group_concat(hex(randomblob(1000)))) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
    "SELECT x + 1 FROM c LIMIT 100000) SELECT x FROM c)",
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    "SELECT instr(printf('%.*c', 999000, 'a'), printf('%.*c', 499000, 'a') || 'b')",
    "SELECT count(*) FROM " + ", ".join(f"singer s{i}" for i in range(14)),
]


def sql_attacks(timeout_s: float = 1.0) -> dict:
    import shutil

    from act.metrics.sql import HARD_GRACE_S, execute

    src = ROOT / "data/raw/spider/database/concert_singer/concert_singer.sqlite"
    work = Path(tempfile.mkdtemp())
    db = work / "db" / "concert_singer.sqlite"
    db.parent.mkdir()
    shutil.copy(src, db)
    before = db.read_bytes()
    blocked, slowest, failures = 0, 0.0, []
    for attack in SQL_ATTACKS:
        out = work / "stolen.db"
        t0 = time.monotonic()
        r = execute(db, attack.format(out=out), timeout_s=timeout_s)
        took = time.monotonic() - t0
        slowest = max(slowest, took)
        wrote = out.exists() or sorted(os.listdir(db.parent)) != [db.name] or db.read_bytes() != before
        # "SELECT 1; ATTACH ..." runs only its first statement: a harmless result, still blocked
        harmless = r.status == "ok" and attack.startswith("SELECT 1;")
        if (r.status != "ok" or harmless) and not wrote and took <= timeout_s + HARD_GRACE_S + 0.5:
            blocked += 1
        else:
            failures.append(attack)
    return {"sql_attacks": len(SQL_ATTACKS), "sql_attacks_blocked": blocked, "sql_slowest_s": round(slowest, 2),
            "sql_limit_s": timeout_s, "sql_not_blocked": failures}


# ---------------------------------------------------------------------------------- HTTP faults
def _chat(server, cache_dir, **kw):
    from dataclasses import replace

    from act.params import RoleParams
    from act.roles.cache import CallCache
    from act.roles.http import HttpChat

    cfg = RoleParams(backend="http", model="test-model", base_url=server.url, api_key_env="", timeout_s=1.0,
                     max_retries=2, backoff_s=0.0, concurrency=4, max_tokens=32)
    return HttpChat(replace(cfg, **kw), role="classifier", cache=CallCache.open(cache_dir) if cache_dir else None,
                    sleep=lambda s: None)


def _items(n, tag=""):
    return [[{"role": "user", "content": f"{tag}q{i}"}] for i in range(n)]


def http_faults() -> dict:
    from test_http_backend import FakeOpenAI

    from act.roles.http import RoleCallError

    faults, runs, rows = 0, 0, []

    def scenario(name, steps_or_script, n, expect_error, **kw):
        nonlocal faults, runs
        server = FakeOpenAI()
        try:
            if isinstance(steps_or_script, dict):
                server.steps = steps_or_script
            else:
                server.script = list(steps_or_script)
            cache = Path(tempfile.mkdtemp())
            t0 = time.monotonic()
            failed = False
            try:
                _chat(server, cache, **kw).complete(_items(n))
            except RoleCallError:
                failed = True
            took = time.monotonic() - t0
            injected = sum(1 for r in server.requests if r["messages"][-1]["content"] in server.steps) if isinstance(
                steps_or_script, dict) else min(len(steps_or_script), len(server.requests))
            faults += injected
            runs += 1
            rows.append({"scenario": name, "requests": len(server.requests), "faults": injected,
                         "seconds": round(took, 2), "failed_as_expected": failed == expect_error})
        finally:
            server.close()

    scenario("429 then ok", ["429"], 5, False)
    scenario("500, 500 then ok", ["500", "500"], 5, False)
    scenario("timeout then ok", ["slow"], 5, False, timeout_s=0.3)
    scenario("invalid JSON then ok", ["badjson"], 5, False)
    scenario("one 400 among 100", {"q5": "400"}, 100, True)
    for code in ("401", "403", "404"):
        scenario(f"{code} on every call", {f"q{i}": code for i in range(50)}, 50, True)
    scenario("dead endpoint (500 always), 50 items", {f"q{i}": "500" for i in range(50)}, 50, True, max_retries=5)
    scenario("trickle 1 byte / 0.5 s, timeout 1 s", ["trickle"] * 3, 1, True)
    return {"http_fault_runs": runs, "faults_injected": faults, "http_scenarios": rows}


# ---------------------------------------------------------------------------------- kills
def http_kills(kills: int) -> dict:
    """SIGKILL a client mid-run after k replies arrived (k varies), rerun: count repeated paid calls."""
    from test_http_backend import _CLIENT, FakeOpenAI

    repeated_total, survived = 0, 0
    n = 30
    for j in range(kills):
        k = 3 + (j * 5) % 20
        server = FakeOpenAI()
        cache = Path(tempfile.mkdtemp())
        try:
            server.steps = {f"q{i}": "gate" for i in range(k, n)}
            proc = subprocess.Popen([sys.executable, "-c", _CLIENT, server.url, str(cache), str(n)], cwd=ROOT)
            deadline = time.monotonic() + 60
            while len(server.answered) < k and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.3)  # the client stores each reply as it lands
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            paid = set(server.answered)
            server.gate.set()
            server.steps, server.requests = {}, []
            _chat(server, cache).complete(_items(n))
            repeated_total += len(paid & {r["messages"][-1]["content"] for r in server.requests})
            survived += 1
        finally:
            server.close()
    return {"http_kills": survived, "paid_calls_repeated_after_crash": repeated_total}


def _ingest(out: Path, metrics: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stages.ingest", "--dataset", "ambigsql", "--raw",
                             "data/raw/spider", "--out", str(out), "--metrics", str(metrics)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _snapshot(out: Path, metrics: Path):
    from datasets import load_from_disk

    dd = load_from_disk(str(out))
    m = json.loads(metrics.read_text())
    m.pop("seconds", None)
    return {name: dd[name].to_list() for name in dd}, m


def ingest_kills(kills: int) -> dict:
    """SIGKILL the ingest stage at spread-out moments, rerun it, compare with an uninterrupted run."""
    work = Path(tempfile.mkdtemp())
    clean_out, clean_m = work / "clean", work / "clean.json"
    t0 = time.monotonic()
    assert _ingest(clean_out, clean_m).wait() == 0
    full = time.monotonic() - t0
    clean = _snapshot(clean_out, clean_m)
    differing, survived, half_written = 0, 0, 0
    for j in range(kills):
        out, m = work / f"run{j}", work / f"run{j}.json"
        proc = _ingest(out, m)
        time.sleep(full * (j + 1) / (kills + 1))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if out.exists():  # whatever a killed run left must be whole
            half_written += int(not (out / "dataset_dict.json").exists())
        assert _ingest(out, m).wait() == 0
        differing += int(_snapshot(out, m) != clean)
        leftovers = [p for p in work.iterdir() if p.name.startswith(f".run{j}.")]
        differing += int(bool(leftovers))
        survived += 1
    return {"ingest_kills": survived, "outputs_differing_after_kill": differing,
            "half_written_outputs": half_written, "ingest_seconds": round(full, 1)}


def writer_kills(kills: int) -> dict:
    from test_io_leftovers import _leftovers, _writer

    from act.io import atomic_dir

    cleaned = 0
    for _ in range(kills):
        dest = Path(tempfile.mkdtemp()) / "models" / "sft"
        proc = _writer(dest)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with atomic_dir(dest) as tmp:
            (tmp / "ok").write_text("x")
        cleaned += int(_leftovers(dest) == [])
    return {"writer_kills": kills, "leftovers_cleaned": cleaned}


# ---------------------------------------------------------------------------------- issue 23: HTTP replies
def http_replies() -> dict:
    """Hostile 200/4xx/429 replies from a loopback server (tests/test_reliability_http.py's
    RawServer), each run twice with one call cache: requests paid on the first run and again on
    the rerun, the error's length, pieces (4+ characters) of the key in the error or the log, and
    the peak Python memory while the reply was read."""
    import gzip
    import io
    import tracemalloc

    from test_reliability_http import KEY, KEY_ENV, RawServer, _leaks, ok_body

    from act.params import RoleParams
    from act.roles.cache import CallCache
    from act.roles.http import HttpChat, RoleCallError

    big = ok_body("y" * 10_000_000)
    bomb = gzip.compress(b'{"choices": [{"message": {"content": "' + b" " * 200_000_000 + b'"}}]}', 9)
    cases = [  # name, replies (then default), key in the environment
        ("usage.prompt_tokens = \"many\"", [], (200, {}, ok_body("x", {"prompt_tokens": "many"})), KEY),
        ("Content-Encoding gzip on plain JSON, then ok", [(200, {"Content-Encoding": "gzip"}, ok_body())],
         (200, {}, ok_body()), KEY),
        ("Content-Encoding mismatch always", [], (200, {"Content-Encoding": "deflate"}, b"plain"), KEY),
        ("lone surrogate in the reply", [], (200, {}, b'{"choices": [{"message": {"content": "\\ud800"}}]}'), KEY),
        ("reply nested 100,000 deep", [], (200, {}, b"[" * 100_000 + b"]" * 100_000), KEY),
        ("401 echoing the key across the 300-char cut", [], (401, {}, b"x" * 290 + KEY.encode()), KEY),
        ("unreadable reply echoing the key at char 70", [(200, {}, b"x" * 70 + KEY.encode())] * 3, None, KEY),
        ("10 MB reply, max_tokens 256, streamed", [], (200, {}, [big[i:i + 65536] for i in range(0, len(big), 65536)]),
         KEY),
        (f"gzip bomb ({len(bomb) // 1000} KB -> 200 MB)", [], (200, {"Content-Encoding": "gzip"}, bomb), KEY),
        ("429 with Retry-After: 99999", [], (429, {"Retry-After": "99999"}, b""), KEY),
        ("key ending in a newline", [], (200, {}, ok_body()), KEY + "\n"),
    ]
    rows = []
    for name, replies, default, key in cases:
        server, cache = RawServer(), Path(tempfile.mkdtemp())
        os.environ[KEY_ENV] = key
        log_text = io.StringIO()
        handler = logging.StreamHandler(log_text)
        logging.getLogger("act").addHandler(handler)
        try:
            server.replies = list(replies)
            if default is not None:
                server.default = default
            runs, error, first_ok = [], "", None
            tracemalloc.start()
            t0 = time.monotonic()
            for _ in range(2):
                before = server.requests
                try:
                    cfg = RoleParams(backend="http", model="m", base_url=server.url, api_key_env=KEY_ENV, timeout_s=10,
                                     max_retries=2, backoff_s=0.0, concurrency=1, max_tokens=256)
                    HttpChat(cfg, role="simulator", cache=CallCache.open(cache), sleep=lambda s: None).complete(
                        [[{"role": "user", "content": "q"}]])
                except RoleCallError as e:
                    error = error or str(e)
                runs.append(server.requests - before)
                if first_ok is None:
                    first_ok = not error
            took = time.monotonic() - t0
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            stored = _count_rows(cache / CallCache.FILE)
            # a reply delivered on the first run and requested again on the rerun is paid twice
            rows.append({"case": name, "requests": runs[0], "rerun_requests": runs[1],
                         "paid_again_on_rerun": runs[1] if first_ok else 0, "failed": not first_ok,
                         "stored": stored, "error_chars": len(error), "key_pieces_shown": len(_leaks(error + log_text.getvalue())),
                         "peak_mb": round(peak / 1e6, 1), "seconds": round(took, 2),
                         "error": error[:90]})
        finally:
            logging.getLogger("act").removeHandler(handler)
            os.environ.pop(KEY_ENV, None)
            server.close()
    corrupt = Path(tempfile.mkdtemp()) / CallCache.FILE
    corrupt.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    try:
        CallCache(corrupt)
        named = False
    except Exception as e:  # noqa: BLE001 - the figure is whether the error names the file
        named = str(corrupt) in str(e)
    return {"http_reply_cases": len(rows), "http_reply_rows": rows,
            "http_replies_paid_again": sum(r["paid_again_on_rerun"] for r in rows),
            "http_key_pieces_shown": sum(r["key_pieces_shown"] for r in rows),
            "http_longest_error_chars": max(r["error_chars"] for r in rows),
            "http_peak_mb": max(r["peak_mb"] for r in rows), "corrupt_cache_named": named}


def _count_rows(db: Path) -> int:
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------- issue 23: custom corpora
def custom_bytes(examples: int) -> dict:
    """tests/test_custom_bytes.py: the named hostile lines (non-UTF-8, deep nesting, lone
    surrogates, huge integers, NaN, duplicate keys, list-valued meta) in raise and skip mode, then
    the raw-bytes property with `examples` files: lines tried, and how each ended."""
    os.environ["ACT_PROPERTY_EXAMPLES"] = str(examples)  # read when the module is imported
    import test_custom_bytes as tcb

    from act.data import custom
    from act.data.bad_records import BadRecords
    from act.errors import RecordError

    work = Path(tempfile.mkdtemp())
    named, skipped_ok = 0, 0
    for i, (_, line, field, _problem) in enumerate(tcb.BAD_LINES):
        path = work / f"c{i}.jsonl"
        path.write_bytes(json.dumps(tcb.GOOD).encode() + b"\n" + line + b"\n")
        try:
            custom.load(path, bad=BadRecords(), max_context_chars=1000)
        except RecordError as e:
            named += int(e.file == str(path) and str(e.record).startswith("line 2") and
                         (e.field == field or (field or "").endswith("...")))
        bad = BadRecords("skip")
        skipped_ok += int(len(custom.load(path, bad=bad, max_context_chars=1000)) == 1 and bad.skipped == 1)
    outcomes = {"lines": 0, "records": 0, "record_errors": 0}
    inner = tcb.test_any_bytes_give_valid_records_or_errors_naming_file_and_line.hypothesis.inner_test

    def counting(tmp_path, lines):
        inner(tmp_path, lines)  # asserts: valid records, or errors naming the file and a line
        bad = BadRecords("skip")
        (tmp_path / "corpus.jsonl").write_bytes(b"\n".join(lines) + b"\n")
        got = custom.load(tmp_path / "corpus.jsonl", bad=bad, max_context_chars=1000)
        outcomes["lines"] += sum(1 for b in lines if b.strip())
        outcomes["record_errors"] += bad.skipped
        outcomes["records"] += len({r.conversation_id for _, r in got})

    fn = tcb.test_any_bytes_give_valid_records_or_errors_naming_file_and_line
    fn.hypothesis.inner_test = counting
    try:
        fn(tmp_path=work)
    finally:
        fn.hypothesis.inner_test = inner
    return {"custom_bad_lines": len(tcb.BAD_LINES), "custom_bad_lines_named": named,
            "custom_bad_lines_skipped": skipped_ok, "custom_property_lines": outcomes["lines"],
            "custom_property_records": outcomes["records"], "custom_property_record_errors": outcomes["record_errors"]}


FAMILIES = {"http-replies": lambda args: http_replies(), "custom-bytes": lambda args: custom_bytes(args.examples)}


def _run_only(args, figures: dict, t0: float) -> dict:
    for name in args.only.split(","):
        if name.strip() not in FAMILIES:
            raise SystemExit(f"error: --only {name!r}: expected some of {sorted(FAMILIES)}")
        figures.update(FAMILIES[name.strip()](args))
    figures["seconds"] = round(time.monotonic() - t0, 1)
    figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
    _print_issue23_rel2(figures)
    print(f"\n{figures['seconds']} s, load average {figures['load_average']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def _print_issue23_rel2(figures: dict) -> None:
    """The tables of the HTTP-reply and custom-bytes families (whichever ran)."""
    if "http_reply_rows" in figures:
        print("\n| hostile HTTP reply | requests | rerun requests | paid again | stored | error chars "
              "| key pieces shown | peak MB | seconds |\n|---|---|---|---|---|---|---|---|---|")
        for r in figures["http_reply_rows"]:
            print(f"| {r['case']} | {r['requests']} | {r['rerun_requests']} | {r['paid_again_on_rerun']} | {r['stored']} "
                  f"| {r['error_chars']} | {r['key_pieces_shown']} | {r['peak_mb']} | {r['seconds']} |")
        print(f"\ncorrupt calls.sqlite named in the error: {figures['corrupt_cache_named']}")
    if "custom_bad_lines" in figures:
        print(f"\ncustom corpus: {figures['custom_bad_lines_named']} / {figures['custom_bad_lines']} hostile lines "
              f"named (file, line, field), {figures['custom_bad_lines_skipped']} skipped by on_error: skip; "
              f"raw-bytes property: {figures['custom_property_lines']} lines -> "
              f"{figures['custom_property_records']} valid conversations + "
              f"{figures['custom_property_record_errors']} record errors naming file and line, 0 other outcomes")
# ------------------------------------------------------------- issue 23: outputs, SQL, params
def _files(folder: Path) -> dict[str, bytes]:
    return {str(q.relative_to(folder)): q.read_bytes() for q in sorted(folder.rglob("*")) if q.is_file()}


def output_ownership() -> dict:
    """`--out` pointed at what a stage does not own (the input corpus' folder, a parent folder,
    a file, a symlink, `.`, `..`) must be refused before anything is touched; a stage's own
    previous output, an empty folder and a pre-marker out listed in dvc.lock are replaced."""
    from act.errors import InputError
    from act.io import atomic_dir

    work = Path(tempfile.mkdtemp())
    user = work / "d"
    user.mkdir()
    (user / "corpus.jsonl").write_bytes((ROOT / "tests/fixtures/custom.jsonl").read_bytes())
    (user / "notes.txt").write_text("mine")
    with atomic_dir(work / "work" / "ingest") as tmp:
        (tmp / "x").write_text("1")
    (work / "work" / "mine.txt").write_text("mine")
    (work / "a_file").write_text("mine")
    (work / "link").symlink_to(user)
    (work / "dvc.lock").write_text("schema: '2.0'\nstages:\n  s:\n    cmd: x\n    outs:\n    - path: old/out\n")
    (work / "old" / "out").mkdir(parents=True)
    (work / "old" / "out" / "f").write_text("pre-marker output")
    (work / "empty").mkdir()
    refuse = [user, work / "work", work / "a_file", work / "link", Path("."), Path(".."), work]
    replace = [work / "work" / "ingest", work / "old" / "out", work / "empty", work / "new" / "out"]
    before = _files(work)
    cwd = os.getcwd()
    os.chdir(work)
    verdicts = 0
    try:
        for dest in refuse:
            try:
                with atomic_dir(dest) as tmp:
                    (tmp / "y").write_text("2")
            except InputError as e:
                verdicts += str(dest) in str(e)
        protected = {k: v for k, v in before.items() if not k.startswith(("work/ingest", "old/out"))}
        lost = sum(1 for k, v in protected.items() if _files(work).get(k) != v)
        for dest in replace:
            with atomic_dir(dest) as tmp:
                (tmp / "y").write_text("2")
            verdicts += (Path(dest) / "y").is_file()
    finally:
        os.chdir(cwd)
    leftovers = [q.name for q in work.rglob("*") if ".tmp-" in q.name or ".old-" in q.name]
    leftovers += [q.name for q in work.parent.iterdir() if q.name.startswith(f".{work.name}.")]
    return {"out_cases": len(refuse) + len(replace), "out_verdicts_right": verdicts, "out_user_files_lost": lost,
            "out_leftovers": len(leftovers)}


_PARENT_RSS = """
import json, resource, sys, time
from act.metrics.sql import execution_match
t0 = time.monotonic()
r = execution_match(sys.argv[2], "SELECT 1", sys.argv[1], timeout_s=20)
print(json.dumps({"status": r.status, "seconds": time.monotonic() - t0,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def sql_worker_faults() -> dict:
    """Replies that used to kill a stage or bloat it: 1.2 GB and 600 MB of rows, a worker
    SIGKILLed mid-query, a garbled reply; a transient gold timeout; empty databases; `;` in
    comments. Every fault must be a scored error/timeout, the client process stays small."""
    import threading

    from act.metrics import sql

    db = _shop_db_dir() / "shop" / "shop.sqlite"
    big = ("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c LIMIT {n}) "
           "SELECT printf('%.*c', 990000, 'x') FROM c")
    cases, scored, rss, slowest = 0, 0, 0.0, 0.0
    for n in (1200, 600, 30):  # the stage's own process, measured apart
        out = subprocess.run([sys.executable, "-c", _PARENT_RSS, str(db), big.format(n=n)], capture_output=True,
                             text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        cases += 1
        if out.returncode == 0:
            fig = json.loads(out.stdout.strip().splitlines()[-1])
            scored += fig["status"] in ("error", "mismatch")
            rss, slowest = max(rss, fig["rss_mb"]), max(slowest, fig["seconds"])
    # a worker killed mid-query
    sql.execute(db, "SELECT 1")
    killer = threading.Timer(0.5, os.kill, (sql._SANDBOX._proc.pid, signal.SIGKILL))
    killer.start()
    r = sql.execution_match("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
                            "SELECT name FROM item", db, timeout_s=10)
    killer.cancel()
    cases, scored = cases + 1, scored + (r.status in ("error", "timeout"))
    # a reply over the client's read limit
    keep, sql.REPLY_BYTES = sql.REPLY_BYTES, 1000
    r = sql.execute(db, "SELECT printf('%.*c', 5000, 'x')")
    sql.REPLY_BYTES = keep
    cases, scored = cases + 1, scored + (r.status == "error")
    # one transient gold timeout, then the same gold again
    sql._GOLD.clear()
    real, calls = sql.execute, []

    def flaky(path, query, **kw):
        calls.append(query)
        return sql.QueryResult("timeout", message="starved") if len(calls) == 1 else real(path, query, **kw)

    sql.execute = flaky
    try:
        sql.execution_match("SELECT name FROM item", "SELECT name FROM item", db)
        gold_recovered = sql.execution_match("SELECT name FROM item", "SELECT name FROM item", db).score == 1.0
    finally:
        sql.execute = real
    # empty databases stop the stage, naming the file
    named = 0
    empty = db.parent / "empty.sqlite"
    empty.write_bytes(b"")
    try:
        sql.execute(empty, "SELECT 1")
    except sql.DatabaseUnavailable as e:
        named += str(empty) in str(e)
    comments = ["SELECT name /* ; */ FROM item", "SELECT name -- a; b\nFROM item", "SELECT [name] FROM item;"]
    comment_ok = sum(sql.execution_match(q, "SELECT name FROM item", db).score == 1.0 for q in comments)
    return {"sql_fault_cases": cases, "sql_faults_scored": scored, "sql_client_max_rss_mb": round(rss),
            "sql_fault_slowest_s": round(slowest, 1), "sql_gold_recovered_after_timeout": gold_recovered,
            "sql_empty_db_named": named, "sql_comment_queries_right": f"{comment_ok}/{len(comments)}"}


def params_errors() -> dict:
    """Bad params from a file, from `-S` and from a profile: every one a ParamsError naming the
    key (or the file), short, fast."""
    from act.errors import ParamsError, one_line
    from act.params import load_params, parse_overrides

    params = ROOT / "params.yaml"
    lol = "&l0 [" + ", ".join(["lol"] * 9) + "]"
    for i in range(1, 10):
        lol = f"&l{i} [{lol}, " + ", ".join([f"*l{i - 1}"] * 8) + "]"
    work = Path(tempfile.mkdtemp())
    bomb = work / "params.yaml"
    bomb.write_text(params.read_text().replace("\nseed: 0 ", f"\nseed: {lol} ", 1))
    cases = [(bomb, {}, [], str(bomb)), (params, {}, [f"seed={lol}"], "seed")]
    for key in ("roles.annotator.timeout_s", "evaluate.sql_timeout_s", "train.learning_rate"):
        cases += [(params, {key: v}, [], key) for v in (float("inf"), float("nan"))]
    cases += [(params, {"seed": v}, [], "seed") for v in (2**32, 2**64, -1)]
    cases += [(params, {}, [item], "seed") for item in ("seed.x=1", "seed=[1")]
    named, longest, slowest = 0, 0, 0.0
    for path, over, items, key in cases:
        t0 = time.monotonic()
        try:
            load_params(path, {**over, **parse_overrides(items)})
            line = ""
        except ParamsError as e:
            line = one_line(e)
        slowest = max(slowest, time.monotonic() - t0)
        named += key in line
        longest = max(longest, len(line))
    return {"params_cases": len(cases), "params_errors_naming_key": named, "params_longest_error": longest,
            "params_slowest_s": round(slowest, 2)}


def empty_splits() -> dict:
    """Corpora and params that empty a split: refused naming the split and the cause; nothing written."""
    from act.errors import InputError
    from act.params import load_params
    from stages import ingest

    work = Path(tempfile.mkdtemp())
    cases = [(["only"], {}), (["a", "a", "a"], {}), (["a", "b", "c"], {"ingest.custom.eval_conversations": 0})]
    refused = 0
    for i, (groups, over) in enumerate(cases):
        raw = work / f"c{i}.jsonl"
        raw.write_text("".join(json.dumps({"id": f"c{j}", "context": "x", "group": g, "messages": [
            {"role": "user", "content": f"q{j}?"}, {"role": "assistant", "content": "a"}]}) + "\n"
            for j, g in enumerate(groups)))
        out = work / f"out{i}"
        try:
            ingest.run(load_params(ROOT / "params.yaml", over), dataset="custom", raw=raw, out=out,
                       metrics_path=work / f"m{i}.json")
        except InputError as e:
            refused += "eval split would be empty" in str(e) and not out.exists()
    return {"empty_split_cases": len(cases), "empty_splits_refused_naming_cause": refused}


FAMILIES_23 = (output_ownership, sql_worker_faults, params_errors, empty_splits)
"""Issue 23's families (`--only issue23` runs just these)."""


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=4, help="kills per kind (HTTP client, ingest, writer)")
    ap.add_argument("--examples", type=int, default=150, help="inputs per property test")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--only", default="", help="run only these families: issue23 (outputs, SQL worker faults, "
                    "params errors, empty splits), or comma-separated http-replies, custom-bytes")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the retries' warnings are expected here
    t0 = time.monotonic()
    figures: dict = {}
    if args.only == "issue23":
        return _report_23(figures, t0, args.json)
    if args.only:
        return _run_only(args, figures, t0)
    figures.update(bad_inputs(args.examples))
    figures.update(sql_attacks())
    figures.update(http_faults())
    figures.update(http_kills(args.kills))
    figures.update(ingest_kills(args.kills))
    figures.update(writer_kills(args.kills))
    figures.update(http_replies())
    figures.update(custom_bytes(args.examples))
    figures["kills_survived"] = figures["http_kills"] + figures["ingest_kills"] + figures["writer_kills"]
    figures["seconds"] = round(time.monotonic() - t0, 1)
    rows = [
        ("bad inputs tried (parsers, scorers), crashes", f"{figures['inputs_tried']}, {figures['crashes']}"),
        ("HTTP faults injected (runs)", f"{figures['faults_injected']} ({figures['http_fault_runs']})"),
        ("kills survived (HTTP client, ingest, writer)",
         f"{figures['kills_survived']} ({figures['http_kills']}, {figures['ingest_kills']}, {figures['writer_kills']})"),
        ("paid calls repeated after a crash", figures["paid_calls_repeated_after_crash"]),
        ("outputs differing after a kill", figures["outputs_differing_after_kill"]),
        ("SQL attacks blocked", f"{figures['sql_attacks_blocked']} / {figures['sql_attacks']} "
                                f"(slowest {figures['sql_slowest_s']} s, limit {figures['sql_limit_s']} s)"),
    ]
    print("| figure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print("\n| HTTP scenario | requests | faults | seconds | failed as expected |\n|---|---|---|---|---|")
    for r in figures["http_scenarios"]:
        print(f"| {r['scenario']} | {r['requests']} | {r['faults']} | {r['seconds']} | {r['failed_as_expected']} |")
    _print_issue23_rel2(figures)
    print()
    _report_23(figures, t0, None)
    figures["seconds"] = round(time.monotonic() - t0, 1)
    print(f"\n{figures['seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def _report_23(figures: dict, t0: float, json_path: str | None) -> dict:
    """Issue 23's families: run, add to `figures`, print their table."""
    load = os.getloadavg()[0]
    for family in FAMILIES_23:
        figures.update(family())
    f = figures
    rows = [
        ("`--out` cases (refused / replaced as due), user files lost, leftovers",
         f"{f['out_cases']} ({f['out_verdicts_right']} right), {f['out_user_files_lost']}, {f['out_leftovers']}"),
        ("SQL worker faults scored (not raised)", f"{f['sql_faults_scored']} / {f['sql_fault_cases']} "
         f"(client max RSS {f['sql_client_max_rss_mb']} MB, slowest {f['sql_fault_slowest_s']} s)"),
        ("gold re-run after a transient timeout; empty DB named; `;` in comments",
         f"{f['sql_gold_recovered_after_timeout']}; {f['sql_empty_db_named']}; {f['sql_comment_queries_right']}"),
        ("bad params (alias bombs, inf/nan, seeds, malformed -S) naming the key",
         f"{f['params_errors_naming_key']} / {f['params_cases']} (longest {f['params_longest_error']} chars, "
         f"slowest {f['params_slowest_s']} s)"),
        ("empty splits refused naming the cause", f"{f['empty_splits_refused_naming_cause']} / {f['empty_split_cases']}"),
    ]
    print("| issue 23 figure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    figures.setdefault("seconds", round(time.monotonic() - t0, 1))
    print(f"\nload average at start: {load:.1f}")
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    main()
