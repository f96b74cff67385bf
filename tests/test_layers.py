"""The import layers hold: no circle anywhere, nothing imports a layer above its own.

Layers, lowest first: `act` (the method), `stages` (DVC stages, `python -m stages.x`), `flows`
(Prefect flows and the CLI). Inside `act`, packages and top-level modules are nodes of one graph
that must have no circle (e.g. `act.roles` -> `act.metrics` while `act.metrics` -> `act.roles`),
and a few edges are forbidden outright (FORBIDDEN, each with its reason). Every module of the three
packages is also a node of a module graph that must have no circle (`flows.pipeline` ->
`flows.cli` -> `flows.pipeline`). Imports are read with `ast`: module-level and lazy ones inside
functions alike, never those under `if TYPE_CHECKING:`. A failure names the file, line and import.

    python tests/test_layers.py          # every violation, one per line
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("act", "stages", "flows")
"""Lowest first: a package imports only its own layer and those before it."""

FORBIDDEN = {
    ("act.chat", "act.roles"): "chat templates sit below the model roles (the Message type lives in act.records)",
    ("act.roles", "act.metrics"): "roles sit below metrics (act.metrics.levels drives the roles); "
                                  "the judge's check-set scoring lives in act.metrics.checks",
}
"""(importer node, imported node) pairs of `act` that may not occur even without a circle."""


@dataclass(frozen=True)
class Import:
    source: str  # importing module, e.g. "act.metrics.checks"
    target: str  # imported project module, e.g. "act.metrics.action"
    file: str  # relative path of the importing file
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.target}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(name: str, root: Path = ROOT) -> str | None:
    """The project module a dotted name is (or lies in): `act.roles.base.Message` -> `act.roles.base`."""
    parts = name.split(".")
    if parts[0] not in LAYERS:
        return None
    for i in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:i])
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return ".".join(parts[:i])
    return None


def _under_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(path: Path, root: Path = ROOT) -> list[Import]:
    """The project imports of one file. `from pkg import sub` imports the submodule `pkg.sub`
    (and the package itself only when a name imported is not a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    me, rel = module_name(path, root), path.relative_to(root).as_posix()
    out: list[Import] = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or _under_type_checking(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = {resolve(a.name, root) for a in node.names}
        elif node.module and not node.level:
            targets = {resolve(f"{node.module}.{a.name}", root) for a in node.names}
        else:
            continue
        out.extend(Import(me, t, rel, node.lineno) for t in sorted(filter(None, targets)) if t != me)
    return out


def all_imports(root: Path = ROOT) -> list[Import]:
    return [imp for pkg in LAYERS if (root / pkg).is_dir()
            for path in sorted((root / pkg).rglob("*.py")) for imp in imports_of(path, root)]


def node_of(module: str) -> str:
    """The unit of `act`'s package graph: `act.roles.base` -> `act.roles`, `act.chat` -> `act.chat`."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "act" and len(parts) > 1 else module


def upward(imports: list[Import]) -> list[str]:
    """Imports from a lower layer to a higher one."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    return [f"{imp} (layer {imp.source.split('.')[0]} may not import {imp.target.split('.')[0]})"
            for imp in imports if rank[imp.target.split(".")[0]] > rank[imp.source.split(".")[0]]]


def forbidden(imports: list[Import]) -> list[str]:
    return [f"{imp} ({FORBIDDEN[(node_of(imp.source), node_of(imp.target))]})" for imp in imports
            if (node_of(imp.source), node_of(imp.target)) in FORBIDDEN]


def circles(imports: list[Import], key=lambda m: m) -> list[str]:
    """Each circle of the graph whose nodes are `key(module)`, as `a -> b -> a`, with the imports
    that make each of its edges."""
    import networkx as nx

    graph = nx.DiGraph()
    for imp in imports:
        a, b = key(imp.source), key(imp.target)
        if a != b:
            graph.add_edge(a, b)
            graph.edges[a, b].setdefault("imports", []).append(str(imp))
    out = []
    for cycle in nx.simple_cycles(graph):
        edges = list(zip(cycle, cycle[1:] + cycle[:1]))
        made = "; ".join(graph.edges[a, b]["imports"][0] for a, b in edges)
        out.append(" -> ".join([*cycle, cycle[0]]) + f"  [{made}]")
    return out


def violations(root: Path = ROOT) -> list[str]:
    imports = all_imports(root)
    act_imports = [i for i in imports if i.source.startswith("act.") and i.target.startswith("act.")]
    return (upward(imports) + forbidden(imports) + [f"module circle {c}" for c in circles(imports)]
            + [f"package circle {c}" for c in circles(act_imports, node_of)])


# ---------------------------------------------------------------------------------------- tests


def test_no_import_runs_up_a_layer():
    bad = upward(all_imports())
    assert not bad, "imports from a lower layer to a higher one:\n  " + "\n  ".join(bad)


def test_no_forbidden_import_inside_act():
    bad = forbidden(all_imports())
    assert not bad, "forbidden imports inside act/:\n  " + "\n  ".join(bad)


def test_no_module_imports_in_a_circle():
    bad = circles(all_imports())
    assert not bad, "import circles between modules:\n  " + "\n  ".join(bad)


def test_no_act_packages_import_in_a_circle():
    imports = [i for i in all_imports() if i.source.startswith("act.") and i.target.startswith("act.")]
    bad = circles(imports, node_of)
    assert not bad, "import circles between act/ packages:\n  " + "\n  ".join(bad)


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for pkg in LAYERS:
        for d in [root / pkg, *(p for p in (root / pkg).rglob("*") if p.is_dir())]:
            d.mkdir(parents=True, exist_ok=True)
            (d / "__init__.py").touch()
    return root


def test_the_checks_catch_each_kind_and_name_the_import(tmp_path):
    """A planted circle, upward import and forbidden edge each fail, naming file and line; a
    TYPE_CHECKING import and `from pkg import submodule` inside a package do not."""
    root = _tree(tmp_path, {
        "act/chat.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from flows import cli\n"
                       "def f():\n    from act.roles.base import Message\n",
        "act/roles/base.py": "from act.roles import offline\n",
        "act/roles/offline.py": "import act.metrics.action\n",
        "act/metrics/action.py": "",
        "act/metrics/levels.py": "from act.roles.base import Message\n",
        "stages/x.py": "\n\nfrom flows.cli import main\n",
        "flows/cli.py": "from flows import pipeline\n",
        "flows/pipeline.py": "def main():\n    from flows.cli import main\n",
    })
    found = violations(root)
    assert "stages/x.py:3 imports flows.cli (layer stages may not import flows)" in found
    assert any(v.startswith("act/chat.py:5 imports act.roles.base (chat templates") for v in found)
    assert any(v.startswith("act/roles/offline.py:1 imports act.metrics.action (roles sit below") for v in found)
    assert any(v.startswith("module circle flows.") and "flows/pipeline.py:2 imports flows.cli" in v for v in found)
    assert any(v.startswith("package circle ") and "act.roles" in v and "act.metrics" in v for v in found)
    assert not any("act/chat.py:3" in v for v in found)  # TYPE_CHECKING only
    assert not any(v.startswith("module circle act.roles") for v in found)  # base -> offline is no circle
    assert len(found) == 5, found


if __name__ == "__main__":
    found = violations()
    print("\n".join(found) or "no layer violations")
    sys.exit(1 if found else 0)
