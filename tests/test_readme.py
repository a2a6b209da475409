"""Every README example runs: python blocks are executed, referenced files exist."""

from __future__ import annotations

import re

from conftest import ROOT, run_script

README = (ROOT / "README.md").read_text()


def test_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})


RESULTS = ROOT / "benchmarks" / "results"


def test_referenced_configs_and_paths_exist():
    for text in (README, (RESULTS / "README.md").read_text()):
        for path in sorted(set(re.findall(
                r"(?<![\w/])((?:experiments/)?configs/[\w/.-]+\.yaml|examples/[\w/.-]+|scripts/[\w.]+"
                r"|benchmarks/results/[\w.]+)",
                text))):
            assert (ROOT / path).exists(), path


def test_the_bars_table_names_existing_write_ups():
    table = README.split("### Where the quality bars stand")[1].split("\n\n")[2]
    names = set(re.findall(r"`(\w+\.md)`", table))
    assert len(names) >= 5
    for name in names:
        assert (RESULTS / name).exists(), name


def test_registry_names_used_in_readme_are_registered():
    listing = run_script("arm-lm", "list").stdout
    names = {line.split()[1] for line in listing.splitlines()[1:] if line.strip()}
    for name in ["cnn", "linear", "fsq", "vq", "lfq", "residual_vq", "residual_fsq", "conv_decoder"]:
        assert name in names, name


def test_documented_error_message_is_what_the_cli_prints(tmp_path):
    cfg = tmp_path / "my.yaml"
    text = (ROOT / "configs/tokenizer/shapes-recon-only.yaml").read_text()
    cfg.write_text(text.replace("class_path: fsq", "class_path: fsqq", 1))
    proc = run_script("arm-tokenizer", "fit", "--config", str(cfg))
    assert proc.returncode == 2
    assert "quantizer.class_path: unknown component 'fsqq'. Did you mean: fsq" in proc.stderr
    assert "Traceback" not in proc.stderr
