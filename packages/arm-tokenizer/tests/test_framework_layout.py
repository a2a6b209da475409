"""The package's layout stays what issue 32 made it.

- no import cycle among ``arm_tokenizer`` modules (module-level imports; ``if TYPE_CHECKING:``
  blocks and imports inside functions do not run at import time and are left out);
- every import inside a function says why it is there (``# deferred: <why>``);
- the framework modules moved to ``arm_tokenizer.framework`` and the LightningModules to
  ``lightning_module.py``: each old path still imports, warns, and is the *same* module object;
- class paths stored in files before the move (saved ``config.yaml``, export ``config.json``)
  still resolve, without a warning.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import arm_tokenizer
import pytest
from arm_tokenizer.framework import config_check, configurable
from arm_tokenizer.framework.deprecation import MOVED_MODULES, current_path

SRC = Path(arm_tokenizer.__file__).resolve().parent.parent
# this package's moves (the table also holds the other ARM packages', tested there)
OURS = {old: new for old, new in MOVED_MODULES.items() if old.startswith("arm_tokenizer.")}


# -- reading imports with ast ------------------------------------------------------------------
def _modules(root: Path, top: str) -> dict[str, tuple[Path, bool]]:
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


def _runtime_imports(body: list[ast.stmt]):
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
    """Module -> the modules of ``top`` it imports at import time."""
    mods = _modules(root, top)
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


def test_cycle_finder_sees_a_cycle(tmp_path):
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from cyc import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nimport cyc.c\nif TYPE_CHECKING:\n    import cyc.a\n")
    (pkg / "c.py").write_text("def f():\n    from cyc import a\nfrom cyc.a import thing\n")
    assert import_graph(tmp_path, "cyc")["cyc.b"] == {"cyc.c"}  # TYPE_CHECKING left out
    assert find_cycle(import_graph(tmp_path, "cyc")) == ["cyc.a", "cyc.b", "cyc.c", "cyc.a"]
    (pkg / "c.py").write_text("def f():\n    from cyc import a\n")  # deferred: no cycle
    assert find_cycle(import_graph(tmp_path, "cyc")) is None


def test_no_import_cycle_in_arm_tokenizer():
    graph = import_graph(SRC, "arm_tokenizer")
    assert "arm_tokenizer.framework.registry" in graph and len(graph) > 50  # it sees the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _local_imports(tree: ast.AST):
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


def test_every_function_local_import_says_why():
    """A function-local import defers a heavy or optional import, or breaks a cycle; a comment
    ``# deferred: <why>`` on the line before its group of imports (or on the import) says which."""
    unexplained = []
    for path, _ in _modules(SRC, "arm_tokenizer").values():
        lines = path.read_text(encoding="utf-8").splitlines()
        for block, i in _local_imports(ast.parse("\n".join(lines))):
            first = i
            while first > 0 and isinstance(block[first - 1], (ast.Import, ast.ImportFrom)):
                first -= 1
            span = lines[block[first].lineno - 2: block[i].end_lineno]
            if not any("# deferred:" in line for line in span):
                unexplained.append(f"{path.relative_to(SRC)}:{block[i].lineno}: {lines[block[i].lineno - 1].strip()}")
    assert not unexplained, ("function-local imports without a '# deferred: <why>' comment (move them "
                             "to the top of the module, or say why not):\n" + "\n".join(unexplained))


# -- moved modules -----------------------------------------------------------------------------
def test_every_moved_module_exists_and_its_old_file_is_a_shim():
    assert len(OURS) == 14
    for old, new in OURS.items():
        new_file = SRC / (new.replace(".", "/") + ".py")
        old_file = SRC / (old.replace(".", "/") + ".py")
        assert new_file.is_file(), new
        assert f'alias_module(__name__, "{new}")' in old_file.read_text(), old


def test_old_module_paths_warn_and_are_the_same_module():
    """In a fresh interpreter (the old paths are not imported yet): each old path warns once
    and *is* the new module, also as its parent package's attribute."""
    script = f"""
import importlib, json, sys, warnings
moved = {OURS!r}
out = {{}}
for old, new in moved.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = importlib.import_module(old)
    parent, _, child = old.rpartition(".")
    out[old] = {{
        "same": mod is sys.modules[new] is sys.modules[old] is getattr(sys.modules[parent], child),
        "warnings": [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)
                     and old in str(w.message)],
    }}
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) == set(OURS)
    for old, new in OURS.items():
        assert result[old]["same"], f"{old} is not the module object {new}"
        assert result[old]["warnings"] == [
            f"module {old} moved to {new}; import it from there (the old path goes in the next release)"]


def test_old_path_in_this_process_is_the_new_module():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("arm_tokenizer.registry")
    from arm_tokenizer.framework import registry

    assert old is registry
    # a plugin that patches the old path patches the one registry (its caches are shared)
    assert old.list_kinds is registry.list_kinds


def test_current_path_maps_moved_modules_only():
    assert current_path("arm_tokenizer.module.TokenizerTrainer") == "arm_tokenizer.lightning_module.TokenizerTrainer"
    assert current_path("arm_tokenizer.teachers.trainer.TeacherTrainer") == (
        "arm_tokenizer.teachers.lightning_module.TeacherTrainer")
    assert current_path("arm_tokenizer.registry") == "arm_tokenizer.framework.registry"
    # a longer name that only starts like a moved module is another module
    assert current_path("arm_tokenizer.modules.X") == "arm_tokenizer.modules.X"
    assert current_path("arm_tokenizer.quantizers.fsq.FSQQuantizer") == "arm_tokenizer.quantizers.fsq.FSQQuantizer"


@pytest.mark.parametrize("stored, new_module", [
    ("arm_tokenizer.module.TokenizerTrainer", "arm_tokenizer.lightning_module"),
    ("arm_tokenizer.vae_module.VAETrainer", "arm_tokenizer.decoders.lightning_module"),
    ("arm_tokenizer.teachers.trainer.TeacherTrainer", "arm_tokenizer.teachers.lightning_module"),
    ("arm_tokenizer.progress.StepProgress", "arm_tokenizer.framework.progress"),
])
def test_stored_old_class_paths_resolve_without_warning(stored, new_module):
    """A config.yaml saved by LightningCLI before the move replays; an export loads."""
    cls = getattr(importlib.import_module(new_module), stored.rsplit(".", 1)[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert configurable.import_class(stored) is cls
        path, resolved = config_check.resolve_class(stored)
    assert resolved is cls
    assert path == f"{new_module}.{cls.__name__}"  # the translated YAML names the new home
