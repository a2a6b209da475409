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
from arm_tokenizer.testing.import_layout import (
    assert_local_imports_explained,
    assert_no_import_cycle,
    find_cycle,
    import_graph,
    unexplained_local_imports,
)

SRC = Path(arm_tokenizer.__file__).resolve().parent.parent
# this package's moves (the table also holds the other ARM packages', tested there)
OURS = {old: new for old, new in MOVED_MODULES.items() if old.startswith("arm_tokenizer.")}


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


def test_cycle_finder_sees_a_cycle_through_a_package_init(tmp_path):
    """Importing ``cyc.sub.b`` runs ``cyc/sub/__init__.py`` first: a cycle through it counts."""
    sub = tmp_path / "cyc" / "sub"
    sub.mkdir(parents=True)
    (tmp_path / "cyc" / "__init__.py").write_text("")
    (tmp_path / "cyc" / "a.py").write_text("from cyc.sub.b import x\n")
    (sub / "__init__.py").write_text("from cyc.sub import c\n")
    (sub / "b.py").write_text("x = 1\n")
    (sub / "c.py").write_text("import cyc.a\n")
    assert import_graph(tmp_path, "cyc")["cyc.a"] == {"cyc.sub", "cyc.sub.b"}
    assert find_cycle(import_graph(tmp_path, "cyc")) == ["cyc.a", "cyc.sub", "cyc.sub.c", "cyc.a"]


def test_local_import_check_wants_a_reason(tmp_path):
    pkg = tmp_path / "loc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "def f():\n    import json\n\n"
        "def g():\n    # deferred: heavy\n    import json\n    import os\n\n"
        "def h():\n    import os  # deferred: heavy\n")
    assert unexplained_local_imports(tmp_path, "loc") == ["loc/__init__.py:2: import json"]


def test_no_import_cycle_in_arm_tokenizer():
    assert_no_import_cycle(arm_tokenizer, "arm_tokenizer.framework.registry", min_modules=51)


def test_every_function_local_import_says_why():
    """A function-local import defers a heavy or optional import, or breaks a cycle; a comment
    ``# deferred: <why>`` on the line before its group of imports (or on the import) says which."""
    assert_local_imports_explained(arm_tokenizer)


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
