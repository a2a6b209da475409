"""Checks of a package's import layout (issue 32), shared by every ARM package's tests.

- :func:`import_graph` / :func:`find_cycle`: module-level import cycles among a package's
  modules, read with :mod:`ast` (nothing is imported). ``if TYPE_CHECKING:`` blocks and
  imports inside functions do not run at import time and are left out;
- :func:`unexplained_local_imports`: imports inside a function body without a
  ``# deferred: <why>`` comment. A function-local import defers a heavy or optional import,
  or breaks a cycle; the comment (on the line before its group of imports, or on the import)
  says which.

A package's test::

    import my_pkg
    from arm_tokenizer.testing.import_layout import check_import_layout

    def test_import_layout():
        check_import_layout(my_pkg, "my_pkg.core")

Standard library only: importing this costs nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

__all__ = ["modules", "import_graph", "find_cycle", "local_imports", "unexplained_local_imports",
           "format_unexplained", "assert_no_import_cycle", "assert_local_imports_explained", "check_import_layout"]

DEFERRED_TAG = "# deferred:"


def modules(root: Path, top: str) -> dict[str, tuple[Path, bool]]:
    """``{dotted name: (file, is_package)}`` of every module of package ``top`` under ``root``."""
    out = {}
    for path in sorted((root / top).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run when the module is imported (not in functions or classes'
    methods, not under ``if TYPE_CHECKING:``)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _runtime_imports(node.body)
            yield from _runtime_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _runtime_imports(block)
        elif isinstance(node, ast.ClassDef):
            yield from _runtime_imports(node.body)


def import_graph(root: Path, top: str) -> dict[str, set[str]]:
    """Module -> the modules of ``top`` it imports at import time.

    Importing ``a.b.c`` runs ``a/b/__init__.py`` first: a module outside package ``a.b``
    that imports ``a.b.c`` has an edge to ``a.b`` too."""
    mods = modules(root, top)
    graph = {}
    for name, (path, is_pkg) in mods.items():
        package = name if is_pkg else name.rpartition(".")[0]
        edges = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8")).body):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in mods)
                continue
            base = node.module or ""
            if node.level:  # relative: from .x import y
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                target = f"{base}.{alias.name}"
                edges.add(target if target in mods else base)
        for edge in list(edges):  # a.b.c runs a/b/__init__.py too (unless the importer is in a.b)
            parts = edge.split(".")
            edges.update(anc for anc in (".".join(parts[:i]) for i in range(2, len(parts)))
                         if not (name == anc or name.startswith(anc + ".")))
        graph[name] = {e for e in edges if e in mods and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def local_imports(tree: ast.AST) -> Iterator[tuple[list[ast.stmt], int]]:
    """``(statement list, index)`` of every import inside a function."""
    def walk(node: ast.AST, in_function: bool):
        for field in ("body", "orelse", "finalbody", "handlers"):
            block = getattr(node, field, None)
            if not isinstance(block, list):
                continue
            for i, child in enumerate(block):
                if in_function and isinstance(child, (ast.Import, ast.ImportFrom)):
                    yield block, i
                yield from walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))
    yield from walk(tree, False)


def unexplained_local_imports(root: Path, top: str) -> list[str]:
    """``file:line: import ...`` of every function-local import of package ``top`` with no
    ``# deferred: <why>`` comment on the line before its group of imports or on an import of
    the group up to it."""
    unexplained = []
    for path, _ in modules(root, top).values():
        lines = path.read_text(encoding="utf-8").splitlines()
        for block, i in local_imports(ast.parse("\n".join(lines))):
            first = i
            while first > 0 and isinstance(block[first - 1], (ast.Import, ast.ImportFrom)):
                first -= 1
            span = lines[block[first].lineno - 2: block[i].end_lineno]
            if not any(DEFERRED_TAG in line for line in span):
                unexplained.append(f"{path.relative_to(root)}:{block[i].lineno}: {lines[block[i].lineno - 1].strip()}")
    return unexplained


def format_unexplained(unexplained: list[str]) -> str:
    """The assertion message for :func:`unexplained_local_imports`'s list."""
    return (f"function-local imports without a '{DEFERRED_TAG} <why>' comment (move them to the "
            "top of the module, or say why not):\n" + "\n".join(unexplained))


def _source_root(package: ModuleType) -> Path:
    """The directory holding ``package`` (``src/`` of an installed-editable package)."""
    return Path(package.__file__).resolve().parent.parent


def assert_no_import_cycle(package: ModuleType, expect: str, min_modules: int = 10) -> None:
    """Fail with the cycle when ``package``'s modules import each other in a circle at module
    level; ``expect`` (a module that must be in the graph) and ``min_modules`` guard against a
    check that silently reads nothing."""
    graph = import_graph(_source_root(package), package.__name__)
    assert expect in graph and len(graph) >= min_modules, (
        f"import graph of {package.__name__} has {len(graph)} modules, {expect!r} "
        f"{'among' if expect in graph else 'not among'} them")
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def assert_local_imports_explained(package: ModuleType) -> None:
    """Fail listing every function-local import of ``package`` without ``# deferred: <why>``."""
    unexplained = unexplained_local_imports(_source_root(package), package.__name__)
    assert not unexplained, format_unexplained(unexplained)


def check_import_layout(package: ModuleType, expect: str, min_modules: int = 10) -> None:
    """Both checks: :func:`assert_no_import_cycle` and :func:`assert_local_imports_explained`."""
    assert_no_import_cycle(package, expect, min_modules)
    assert_local_imports_explained(package)
