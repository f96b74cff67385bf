"""Errors that name exactly where bad input is: file, record and field; and the one-line report
a stage entry point gives for them (`run_cli`)."""

from __future__ import annotations

import os
import sys
import traceback
from typing import Callable


class RecordError(ValueError):
    """A malformed input record. The message names the file, the record and the field."""

    def __init__(self, file: str, record: "int | str | None", field: str | None, problem: str):
        self.file, self.record, self.field, self.problem = str(file), record, field, problem
        where = [f"file {self.file}"]
        if record is not None:
            where.append(f"record {record}")
        if field:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {problem}")


MAX_MESSAGE_CHARS = 2000
"""An error line is cut here (`one_line`): a message quoting input can never flood a terminal."""


def short(value: object, limit: int = 80) -> str:
    """A bounded repr of `value` for error messages: nested containers, long strings and big
    numbers are elided (`reprlib`), so a value built from YAML aliases that would take gigabytes
    to print costs a few bytes. Never longer than `limit` characters (plus an ellipsis)."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 2, 4, 4, 4, 4
    r.maxstring, r.maxother, r.maxlong = limit, limit, 40
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ParamsError(ValueError):
    """A bad params.yaml: unknown key, missing key or bad value. The message names the key."""


class InputError(RuntimeError):
    """A missing or unreadable input (a path given on the command line, a database that cannot
    be opened, a truncated weights file). The message names the path."""


def debug_enabled(argv: "list[str] | None" = None) -> bool:
    """Full tracebacks on: `--debug` on the command line or ACT_DEBUG=1 in the environment."""
    argv = sys.argv[1:] if argv is None else argv
    return "--debug" in argv or os.environ.get("ACT_DEBUG", "").strip().lower() in ("1", "true", "yes")


def run_cli(main: Callable[[], object]) -> None:
    """Run a stage's `main()` as a command: any failure prints one line, `error: <message>`, to
    stderr and exits 1 (130 on Ctrl-C); the full traceback only with --debug or ACT_DEBUG=1.
    `--debug` is taken off the arguments before `main` parses them."""
    debug = debug_enabled()
    if "--debug" in sys.argv[1:]:
        sys.argv = [sys.argv[0]] + [a for a in sys.argv[1:] if a != "--debug"]
    try:
        result = main()
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - the whole point is one clear line for any failure
        if debug:
            traceback.print_exc()
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(1)
    if isinstance(result, int) and result:
        sys.exit(result)


def one_line(e: BaseException) -> str:
    """The message of `e` on one line; errors of our own speak for themselves, others are named."""
    text = str(e)[: 4 * MAX_MESSAGE_CHARS]
    text = " ".join(text.split()) or "(no message)"
    if not isinstance(e, (RecordError, ParamsError, InputError)):
        text = f"{type(e).__name__}: {text}"
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."
