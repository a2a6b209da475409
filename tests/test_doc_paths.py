"""Docstrings, comments, configs and READMEs cite only files that exist in the repository.

Every repo-relative path that starts with one of PREFIXES and ends in a file extension, in
the sources, configs, scripts, tests and READMEs of the workspace, must name an existing file
(or folder). Paths that are deliberately not in the repository (an example in an error
message, a test's missing-file input) are listed in ALLOWED with the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PREFIXES = ("scripts", "configs", "experiments", "benchmarks", "packages", "docs")
# a path starts at a word boundary that is not inside another path (a/configs/..., $OUT/...)
PATH = re.compile(r"(?<![\w./$~{-])((?:" + "|".join(PREFIXES) + r")/[\w./-]*\.[A-Za-z]\w*)")
SUFFIXES = {".py", ".yaml", ".yml", ".toml", ".md", ".sh"}
SKIP_PARTS = {"__pycache__", ".pytest_cache", "build", "dist", ".venv"}

ALLOWED = {
    "configs/x.yaml": "scripts/demo.py: parse_configs' docstring example",
    "configs/tokenizer/x.yaml": "arm_tokenizer/framework/config_check.py: an example error message",
    "configs/tokenizer/nope.yaml": "tests/test_demo_profiles.py: the missing-file case",
}


def _scanned() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / "pyproject.toml"]
    files += sorted((ROOT / "benchmarks").glob("*.py"))
    for top in ("packages", "configs", "scripts", "tests", "experiments"):
        for p in sorted((ROOT / top).rglob("*")):
            rel = p.relative_to(ROOT).parts
            if any(part in SKIP_PARTS or part.endswith(".egg-info") for part in rel):
                continue
            if p.is_file() and (p.suffix in SUFFIXES or p.name == "Makefile"):
                files.append(p)
    return files


def _citations() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in _scanned():
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            for path in PATH.findall(line):
                found.setdefault(path, []).append(f"{f.relative_to(ROOT)}:{n}")
    return found


def test_cited_repo_paths_exist():
    found = _citations()
    assert len(found) > 20  # the scan sees the repository
    missing = {p: where for p, where in found.items() if p not in ALLOWED and not (ROOT / p).exists()}
    assert not missing, "cited paths that are not in the repository:\n" + "\n".join(
        f"  {p}  ({', '.join(where)})" for p, where in sorted(missing.items()))


def test_allow_list_is_still_needed():
    found = _citations()
    stale = [p for p in ALLOWED if p not in found or (ROOT / p).exists()]
    assert not stale, f"ALLOWED entries no longer cited, or now existing: {stale}"


def test_lab_material_is_not_in_a_shipped_package():
    assert not list((ROOT / "packages").glob("*/src/*/experiments"))
    assert not (ROOT / "scripts" / "measure").exists()
    assert (ROOT / "experiments" / "README.md").is_file()
