"""dvc.yaml's code deps are true: every project module a stage can import is a dep of that stage.

The imports are read with `ast` (module-level and lazy ones inside functions alike), starting at
`stages/<stage>.py` and following every `act.*` / `stages.*` module transitively, packages'
`__init__.py` included. A dep that is a directory (`act/roles`) covers every file under it.
A few modules are left out on purpose (EXEMPT, each with its reason; what they import is not
followed either), and a few modules read
data files beside them (DATA_FILES), which the stage must then list too.

    python tests/test_dag_contract.py [path/to/dvc.yaml]    # the uncovered files per stage
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("act", "stages")

EXEMPT = {
    "stages/common.py": "argument parsing and logging setup: no stage output depends on it",
    "act/tracking.py": "MLflow tracking and the metrics/timings epilogue, outside any output's content",
    "act/params.py": "the values a stage reads are deps through `params:`; the schema only parses them",
    "act/params_loader.py": "as act/params.py",
}
"""Modules every stage imports that are not code deps, and why."""

DATA_FILES = {
    "act/roles/prompted.py": ("act/prompts",),
    "act/chat.py": ("act/templates",),
}
"""Modules that read files beside them: a stage importing the module depends on those too."""


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """`act.roles.base` -> act/roles/base.py (or the package's __init__.py); None outside the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imported_modules(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Dotted names of every module `path` imports (`from a import b` also tries `a.b`), lazy
    imports inside functions included unless `top_level_only`; never those under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _type_checking_only(node, parents):
            continue
        if top_level_only and _inside_function(node, parents):
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _inside_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return True
    return False


def transitive_files(stage: str, root: Path = ROOT) -> set[str]:
    """Project files (relative, posix) that `python -m stages.<stage>` can execute or read.

    A module imported by name is followed through all its imports, lazy ones included. A package
    that only runs because one of its submodules is imported (`act.roles` for `act.roles.base`)
    is followed through its top-level imports only: its functions are not called that way."""
    todo: list[tuple[str, bool]] = [(f"stages.{stage}", False)]
    done: dict[str, bool] = {}  # module -> followed top-level only
    files: set[str] = set()
    while todo:
        name, top_only = todo.pop()
        parts = name.split(".")
        chain = [(".".join(parts[:i]), True) for i in range(1, len(parts))] + [(name, top_only)]
        for mod, only_top in chain:
            if mod in done and (done[mod] <= only_top):
                continue
            done[mod] = only_top
            path = module_file(mod, root)
            if path is None:
                continue
            rel = path.relative_to(root).as_posix()
            files.add(rel)
            files.update(DATA_FILES.get(rel, ()))
            if rel in EXEMPT:  # what it imports serves it alone
                continue
            todo.extend((m, False) for m in imported_modules(path, top_level_only=only_top))
    return files


def _trivial(rel: str, root: Path) -> bool:
    """A module holding nothing but a docstring and constants (e.g. a package's __init__)."""
    path = root / rel
    if not path.is_file():
        return False
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(n, (ast.Expr, ast.Assign, ast.AnnAssign)) and not isinstance(getattr(n, "value", None), ast.Call)
               for n in body)


def code_deps(dvc_yaml: Path) -> dict[str, list[str]]:
    """{stage: its literal (non-templated) deps}, foreach stages by their `do:` block."""
    stages = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages", {})
    out = {}
    for name, spec in stages.items():
        body = spec.get("do", spec)
        out[name] = [d for d in body.get("deps", []) if isinstance(d, str) and "${" not in d]
    return out


def covered(file: str, deps: list[str]) -> bool:
    return any(file == d.rstrip("/") or file.startswith(d.rstrip("/") + "/") for d in deps)


def uncovered(dvc_yaml: Path, root: Path = ROOT) -> dict[str, list[str]]:
    """{stage: project files it imports (or reads) that its deps miss}; {} when dvc.yaml is true."""
    missing = {}
    for stage, deps in code_deps(dvc_yaml).items():
        need = {f for f in transitive_files(stage, root) if f not in EXEMPT and not _trivial(f, root)}
        lack = sorted(f for f in need if not covered(f, deps))
        if lack:
            missing[stage] = lack
    return missing


def test_every_stage_has_a_module():
    for stage in code_deps(ROOT / "dvc.yaml"):
        assert (ROOT / "stages" / f"{stage}.py").is_file(), f"dvc.yaml stage {stage!r} has no stages/{stage}.py"


def test_dvc_yaml_deps_cover_every_imported_module():
    missing = uncovered(ROOT / "dvc.yaml")
    assert not missing, "dvc.yaml deps miss files the stage imports:\n" + "\n".join(
        f"  {stage}: {', '.join(files)}" for stage, files in missing.items())


def test_dvc_yaml_code_deps_exist():
    """A code dep naming a moved or deleted file would make DVC fail."""
    for stage, deps in code_deps(ROOT / "dvc.yaml").items():
        for d in deps:
            if d.split("/")[0] in PACKAGES:
                assert (ROOT / d).exists(), f"dvc.yaml stage {stage}: dep {d} does not exist"


def test_every_code_dep_is_imported():
    """The other direction: a code dep no module of the stage uses reruns the stage for nothing."""
    for stage, deps in code_deps(ROOT / "dvc.yaml").items():
        files = transitive_files(stage)
        for d in deps:
            if d.split("/")[0] in PACKAGES:
                assert any(covered(f, [d]) for f in files), f"dvc.yaml stage {stage}: {d} is not imported by it"


def test_no_stage_imports_another():
    """Stages share code through `act` (and stages.common), never through each other."""
    for path in sorted((ROOT / "stages").glob("*.py")):
        others = {m for m in imported_modules(path) if m.startswith("stages.")
                  and module_file(m) is not None and m not in ("stages.common", f"stages.{path.stem}")}
        assert not others, f"{path.relative_to(ROOT)} imports {sorted(others)}"


def test_import_direction_act_stages_flows():
    """act <- stages <- flows: act imports neither; flows reach stages only as `python -m` commands."""
    for path in sorted((ROOT / "act").rglob("*.py")):
        bad = {m for m in imported_modules(path) if m.split(".")[0] in ("stages", "flows")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    for path in sorted((ROOT / "flows").glob("*.py")):
        bad = {m for m in imported_modules(path) if m.split(".")[0] == "stages"}
        assert not bad, f"{path.relative_to(ROOT)} imports stage internals {sorted(bad)}"


def test_the_import_walk_sees_lazy_and_package_imports(tmp_path):
    """The walk itself: a lazy import inside a function, `from pkg import submodule`, a parent
    package's __init__ and a TYPE_CHECKING-only import (not followed)."""
    (tmp_path / "stages").mkdir()
    (tmp_path / "act" / "roles").mkdir(parents=True)
    (tmp_path / "stages" / "__init__.py").write_text('"""doc"""\n')
    (tmp_path / "stages" / "x.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from act import hidden\n"
        "def run():\n    from act.roles import base\n")
    (tmp_path / "act" / "__init__.py").write_text('"""doc"""\n')
    (tmp_path / "act" / "roles" / "__init__.py").write_text("from act.util import helper\n")
    (tmp_path / "act" / "roles" / "base.py").write_text("")
    (tmp_path / "act" / "util.py").write_text("def helper(): ...\n")
    (tmp_path / "act" / "hidden.py").write_text("")
    files = transitive_files("x", tmp_path)
    assert files == {"stages/__init__.py", "stages/x.py", "act/__init__.py", "act/roles/__init__.py",
                     "act/roles/base.py", "act/util.py"}
    dvc = tmp_path / "dvc.yaml"
    dvc.write_text(yaml.safe_dump({"stages": {"x": {"cmd": "c", "deps": ["stages/x.py", "act/roles"]}}}))
    assert uncovered(dvc, tmp_path) == {"x": ["act/util.py"]}


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "dvc.yaml"
    gaps = uncovered(target)
    for stage, files in gaps.items():
        print(f"{stage}: {', '.join(files)}")
    sys.exit(1 if gaps else 0)
