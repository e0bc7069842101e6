"""The import graph of benchsuite/, read statically (``ast``): no cycle, and every arrow points down the layers of
``LAYERS`` (README, "Architecture"). Every import counts, at module level or inside a function (a function-level
import still runs, and a cycle it closes only moves the failure to call time); imports under ``if TYPE_CHECKING:``
do not, since they never run (annotations only).

``LAYERS`` is the table a new module is added to: a module may import modules of its own layer or of the layers
below, never above; ``FORBIDDEN`` lists pairs that may not import each other even so. The checker runs on a small
synthetic package too (``tmp_path``), so that the test is seen to fail on a cycle and on an upward arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "benchsuite"

LAYERS: tuple[tuple[str, ...], ...] = (
    # bottom: leaves, no suite imports but these
    ("_version", "errors", "files", "data"),
    # pure helpers: tensors in, numbers out; problem definitions shared by backbones and rewards
    ("metrics", "domains", "weights", "distributed", "prompts", "tracking"),
    # what a sample is (its encoding, its metrics, its grid)
    ("grids", "spaces"),
    # backbones and rewards: never each other (FORBIDDEN)
    ("policies", "rewards"),
    # names -> lazily imported objects; the budgeted oracle wrapping a reward
    ("registry", "budget", "accounting"),
    # data -> built objects: task cards, run configs
    ("tasks", "config"),
    # algorithms (one file each), and the type checks of plugin objects against their base classes
    ("methods", "plugin_checks"),
    # one run
    ("evaluation", "export", "runner", "api", "diagnostics"),
    # many runs
    ("backends", "sweep", "tuning", "asktell"),
    # reads results, never the training code
    ("report",),
    # leaderboard tiers: specs as data, and the stages that tune, run, report and verify them
    ("leaderboard",),
    # entry points
    ("testing", "cli", "__main__", "benchsuite"),
)
"""Layers of benchsuite/, bottom first, by the first name below ``benchsuite.`` (``benchsuite`` is the package's
``__init__``)."""

FORBIDDEN: tuple[tuple[str, str], ...] = (
    ("policies", "rewards"),
    ("rewards", "policies"),
    ("methods", "rewards"),  # a method sees the reward only through the budgeted oracle
)
"""(importer, imported) pairs that are refused even where the layers would allow them."""

KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}
"""Single arrows (importer module, imported module) that break ``LAYERS`` today, each with the reason and the plan.
The test fails when one is no longer needed, so that the list only shrinks."""


# ---- the checker ------------------------------------------------------------------------------------------------
def _modules(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package ``__init__``) for every ``.py`` file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """``{importer: {imported: line}}`` over the modules of the package folder ``root``, at any depth of the code.

    ``import a.b`` and ``from a import b`` (``b`` a module) point at ``a.b``; ``from a import name`` at ``a``;
    relative imports are resolved against the importer (``from . import x`` in a package's ``__init__`` means the
    package itself). Imports of other packages are left out."""
    modules = _modules(root)
    top = root.name

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, (path, is_package) in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or _type_checking_only(node, parents):
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                           for alias in node.names]
            for target in targets:
                resolved = known(target) if target.split(".")[0] == top else None
                if resolved and resolved != name:
                    graph[name].setdefault(resolved, node.lineno)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted; a module importing itself
    is not counted (``import_graph`` leaves those out)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def _group(module: str) -> str:
    """``benchsuite.methods.ddpo`` -> ``methods``; the package itself -> its own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_violations(graph: dict[str, dict[str, int]], layers=LAYERS, forbidden=FORBIDDEN) -> list[str]:
    """One line per arrow that points up ``layers`` or joins a ``forbidden`` pair, and per module whose group is in
    no layer."""
    rank = {group: i for i, layer in enumerate(layers) for group in layer}
    problems = [f"{m}: not in any layer of LAYERS (add {_group(m)!r} to one)" for m in sorted(graph)
                if _group(m) not in rank]
    for importer in sorted(graph):
        for imported, line in sorted(graph[importer].items()):
            a, b = _group(importer), _group(imported)
            if a not in rank or b not in rank:
                continue
            if rank[b] > rank[a]:
                problems.append(f"{importer}:{line} imports {imported}: layer {b!r} is above {a!r}")
            elif (a, b) in forbidden:
                problems.append(f"{importer}:{line} imports {imported}: {a!r} never imports {b!r}")
    return problems


# ---- the suite --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph():
    return import_graph(PACKAGE)


def test_benchsuite_has_no_import_cycle(graph):
    assert find_cycles(graph) == []


def test_every_arrow_points_down_the_layers(graph):
    exceptions = {f"{a}:{graph[a][b]} imports {b}" for a, b in KNOWN_EXCEPTIONS if b in graph.get(a, {})}
    problems = layer_violations(graph)
    assert [p for p in problems if not any(p.startswith(e) for e in exceptions)] == []
    stale = [pair for pair in KNOWN_EXCEPTIONS if pair[1] not in graph.get(pair[0], {})]
    assert stale == [], "arrows that no longer exist: remove them from KNOWN_EXCEPTIONS"


def test_the_graph_sees_the_known_arrows(graph):
    """The checker reads what it should: module- and function-level imports, relative ones, ``from . import x``."""
    assert "benchsuite.registry" in graph["benchsuite.tasks"]  # from .registry import ...
    assert "benchsuite.methods.online" in graph["benchsuite.runner"]  # from .methods.online import ...
    assert "benchsuite.api" in graph["benchsuite"]  # from . import api, inside __getattr__
    assert "benchsuite.policies.base" in graph["benchsuite.methods.base"]  # from ..policies.base import ...
    assert "benchsuite.policies.base" not in graph["benchsuite.metrics.sampler"]  # under TYPE_CHECKING only


LAZY_SUITE_IMPORTS: dict[str, str] = {
    "benchsuite": "PEP 562: `import benchsuite` stays light, benchsuite.api is imported on first use",
    "benchsuite.cli": "each command imports its modules on use: the CLI starts without torch, mlflow or optuna",
}
"""Modules that may import suite modules inside functions, and why; anywhere else such an import is hoisted (optional
third-party dependencies such as diffusers, mlflow, optuna or rdkit are still imported where they are used)."""


def function_level_suite_imports(root: Path) -> dict[str, list[int]]:
    """``{module: [line, ...]}`` of the imports of ``root``'s own modules made inside a function."""
    out: dict[str, list[int]] = {}
    for name, (path, is_package) in _modules(root).items():
        tree = ast.parse(path.read_text(), str(path))
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(func):
                own = (isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").split(".")[0]
                                                               == root.name))
                own = own or (isinstance(node, ast.Import) and any(a.name.split(".")[0] == root.name
                                                                     for a in node.names))
                if own and node.lineno not in out.get(name, []):
                    out.setdefault(name, []).append(node.lineno)
    return out


def test_suite_modules_are_imported_inside_functions_only_where_lazy_on_purpose():
    found = function_level_suite_imports(PACKAGE)
    assert {m: lines for m, lines in found.items() if m not in LAZY_SUITE_IMPORTS} == {}
    lines = (PACKAGE / "cli.py").read_text().splitlines()
    uncommented = [n for n in found.get("benchsuite.cli", []) if not any(
        lines[i].strip().startswith("# on use") for i in range(n - 2, max(n - 6, 0), -1))]
    assert uncommented == [], "cli.py: say why above each block of lazy imports (# on use: ...)"


# ---- the checker on a synthetic package -------------------------------------------------------------------------
def _package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "pkg"
    for name, text in {"__init__.py": "", **files}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(text)
    return pkg


def test_checker_finds_a_cycle_closed_inside_a_function(tmp_path):
    pkg = _package(tmp_path, {
        "low.py": "def f():\n    from .high import g  # closes the cycle at call time\n",
        "high.py": "from . import low\n",
        "sub/__init__.py": "from . import leaf\n",  # the package importing its own module: no cycle
        "sub/leaf.py": "import os\n",
    })
    graph = import_graph(pkg)
    assert graph["pkg.high"] == {"pkg.low": 1} and graph["pkg.low"] == {"pkg.high": 2}
    assert graph["pkg.sub"] == {"pkg.sub.leaf": 1}
    assert find_cycles(graph) == [["pkg.high", "pkg.low"]]


def test_checker_ignores_type_checking_imports(tmp_path):
    pkg = _package(tmp_path, {
        "low.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .high import G\n",
        "high.py": "from .low import *\n",
    })
    assert find_cycles(import_graph(pkg)) == []


def test_checker_finds_upward_and_forbidden_arrows(tmp_path):
    pkg = _package(tmp_path, {
        "leaf.py": "",
        "policies/__init__.py": "",
        "policies/a.py": "from ..rewards.b import x\nfrom .. import leaf\n",
        "rewards/__init__.py": "",
        "rewards/b.py": "x = 1\n",
        "methods/__init__.py": "",
        "methods/m.py": "import pkg.leaf\n",
        "orphan.py": "",
    })
    layers = (("leaf",), ("policies", "rewards"), ("methods", "pkg"))
    graph = import_graph(pkg)
    graph["pkg.leaf"]["pkg.methods.m"] = 9  # an injected upward arrow
    assert layer_violations(graph, layers, (("policies", "rewards"),)) == [
        "pkg.orphan: not in any layer of LAYERS (add 'orphan' to one)",
        "pkg.leaf:9 imports pkg.methods.m: layer 'methods' is above 'leaf'",
        "pkg.policies.a:1 imports pkg.rewards.b: 'policies' never imports 'rewards'",
    ]
