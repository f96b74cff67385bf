"""File I/O with all-or-nothing semantics: an interrupted stage leaves no half-written output.

Every writer builds its output beside the destination under a temporary name and swaps it in
with `os.replace` only once it is complete. The temporary name carries the writer's pid
(`.<name>.tmp-<pid>-<random>`), so a later writer of the same destination removes what a killed
one left behind (its pid is gone) and never touches a running writer's work.

Ownership. A stage replaces only what it owns: every directory `atomic_dir` writes carries a
marker file (`OUTPUT_MARKER`, fixed content, so outputs stay byte-reproducible), and an existing
`--out` is replaced only when it holds that marker, is an empty directory, or is an output that
the repository's `dvc.lock` records for a stage (the rule for outputs written before markers
existed, and for what `dvc checkout` restores). Anything else at the destination -- a user's
corpus folder, a file, a symlink, the current directory -- stops the stage with an InputError
naming the path, before anything is written or removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from act.errors import InputError, RecordError


def _umask_mode(mode: int) -> int:
    """mkstemp/mkdtemp create private (0600/0700) entries; outputs get the usual permissions."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


_LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?:tmp|old)-(?:(?P<pid>\d+)(?:-|$))?")
LEGACY_STALE_S = 24 * 3600
"""A leftover without a pid in its name (older layout) is removed once this old."""


def pid_alive(pid: int) -> bool:
    """True while process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_leftovers(dest: str | os.PathLike) -> list[Path]:
    """Remove temporaries of `dest` (`.<name>.tmp-*`, `.<name>.old-*`) whose writer is gone: its
    pid is no running process (or, for names without a pid, it is over a day old). Returns them."""
    dest = Path(dest)
    removed: list[Path] = []
    if not dest.parent.is_dir():
        return removed
    for entry in dest.parent.iterdir():
        m = _LEFTOVER.match(entry.name)
        if not m or m.group("name") != dest.name:
            continue
        stale = False
        if m.group("pid"):
            stale = int(m.group("pid")) != os.getpid() and not pid_alive(int(m.group("pid")))
        else:
            with contextlib.suppress(OSError):
                stale = time.time() - entry.lstat().st_mtime > LEGACY_STALE_S
        if not stale:
            continue
        with contextlib.suppress(OSError):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed.append(entry)
    return removed


OUTPUT_MARKER = ".act-output"
"""The file every output directory carries: "a stage wrote this; a stage may replace it"."""
_MARKER_TEXT = "This directory is the output of an act-clarify stage; a later run of a stage replaces it.\n"


def _lock_outs(start: Path) -> set[Path]:
    """Absolute paths of the outs recorded in the nearest `dvc.lock` at or above `start`
    (outputs from before the ownership marker count as owned when DVC records them)."""
    for folder in (start, *start.parents):
        lock = folder / "dvc.lock"
        if lock.is_file():
            break
        if (folder / ".git").exists() or (folder / ".dvc").is_dir():
            return set()
    else:
        return set()
    import yaml

    try:
        data = yaml.load(lock.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return set()
    outs: set[Path] = set()
    stages = data.get("stages") if isinstance(data, dict) else None
    for entry in (stages or {}).values():
        for out in (entry.get("outs") or []) if isinstance(entry, dict) else []:
            if isinstance(out, dict) and isinstance(out.get("path"), str):
                outs.add(Path(os.path.abspath(folder / out["path"])))
    return outs


def owned_output(dest: Path) -> bool:
    """True if `dest` (absolute) may be replaced by a stage: absent, an empty directory, a
    directory holding OUTPUT_MARKER, or an out recorded in the repository's dvc.lock."""
    if not os.path.lexists(dest):
        return True
    if dest.is_symlink() or not dest.is_dir():
        return dest in _lock_outs(dest.parent) and not dest.is_symlink()
    if (dest / OUTPUT_MARKER).is_file():
        return True
    with os.scandir(dest) as entries:
        if next(entries, None) is None:
            return True
    return dest in _lock_outs(dest.parent)


def check_output_path(path: str | os.PathLike) -> Path:
    """`path` made absolute, if a stage may write its output there; else an InputError naming
    it (see "Ownership" above). Call it before expensive work to fail early; `atomic_dir` does."""
    dest = Path(os.path.abspath(path))
    cwd = Path(os.path.abspath(os.getcwd()))
    if dest == cwd or dest in cwd.parents or dest.parent == dest:
        raise InputError(f"output {path}: is the current directory or one above it; name a folder of its own "
                         f"(e.g. {Path(path) / 'out'})")
    if not owned_output(dest):
        what = ("a symbolic link" if dest.is_symlink() else "a directory" if dest.is_dir() else "a file")
        raise InputError(f"output {path}: {what} that no act stage wrote (no {OUTPUT_MARKER} marker, not an "
                         "out in dvc.lock); refusing to replace it. Remove it yourself or choose another --out")
    return dest


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory that replaces `path` only if the block succeeds.

    `path` must be the stage's own (`check_output_path`): checked before and again just before
    the swap, so nothing that is not a stage output is ever replaced. The output gets the
    ownership marker."""
    dest = check_output_path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=dest.parent))
    os.chmod(tmp, _umask_mode(0o777))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / OUTPUT_MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
    try:
        check_output_path(path)  # something else may have appeared there meanwhile
    except InputError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.lexists(dest):
        old = dest.parent / f".{dest.name}.old-{os.getpid()}"
        os.replace(dest, old)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file that replaces `path` only if the block succeeds."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=dest.parent)
    os.chmod(tmp, _umask_mode(0o666))
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def require_dir(path: str | os.PathLike, what: str) -> Path:
    """`path` as a Path if it is an existing directory; else an InputError naming it and `what`
    it should have been (e.g. "--adapter act"), so a typo never silently changes a result."""
    p = Path(path)
    if not p.is_dir():
        problem = "is not a directory" if p.exists() else "does not exist"
        raise InputError(f"{what}: {p} {problem}")
    return p


def check_safetensors(path: str | os.PathLike) -> None:
    """Every `*.safetensors` file in `path` (a file or a directory) is whole: its header parses and
    the file is as long as the header says. A truncated or corrupt file is an InputError naming it
    (the loaders' own errors do not)."""
    p = Path(path)
    files = sorted(p.glob("*.safetensors")) if p.is_dir() else [p] if p.suffix == ".safetensors" else []
    for f in files:
        size = f.stat().st_size
        with f.open("rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if n < 2 or 8 + n > size:
                raise InputError(f"{f}: truncated or not a safetensors file (header length {n}, file {size} bytes)")
            try:
                header = json.loads(fh.read(n))
                end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                raise InputError(f"{f}: corrupt safetensors header") from None
        if 8 + n + end > size:
            raise InputError(f"{f}: truncated: {size} bytes, the header describes {8 + n + end}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_file(path) as fh:
        json.dump(obj, fh, indent=2, sort_keys=True, ensure_ascii=False)
        fh.write("\n")


def _utf8_error(path: Path, e: UnicodeDecodeError, record: "int | str | None" = None) -> RecordError:
    return RecordError(str(path), record, None, f"not valid UTF-8 at byte {e.start} ({e.object[e.start:e.start + 4]!r}); "
                       "re-save the file as UTF-8")


def read_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise _utf8_error(p, e) from None
    except json.JSONDecodeError as e:
        raise RecordError(str(p), None, None, f"invalid JSON at line {e.lineno}: {e.msg}") from None


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_file(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object); a bad line raises RecordError naming file and line."""
    p = Path(path)
    with p.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _utf8_error(p, e, f"line {lineno}") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(str(p), f"line {lineno}", None, f"invalid JSON: {e.msg}") from None
            yield lineno, obj


def save_dataset(path: str | os.PathLike, splits: dict[str, list[dict]]) -> None:
    """Save rows per split as a `datasets.DatasetDict`, atomically. Empty splits are kept."""
    from datasets import Dataset, DatasetDict

    with atomic_dir(path) as tmp:
        dd = DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()})
        dd.save_to_disk(str(tmp))


def load_dataset_dict(path: str | os.PathLike):
    from datasets import load_from_disk

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no dataset here (did the upstream stage run?)")
    return load_from_disk(str(p))
