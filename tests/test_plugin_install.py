"""A third-party plugin end to end: pip install, list, train by YAML, uninstall, and a
plugin that raises at import leaving everything else working."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, installed, pip_install, pip_uninstall, run_script

TEMPLATE = ROOT / "examples" / "plugin-template"
FAST = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "0",
        "--trainer.enable_progress_bar", "false", "--data.init_args.batch_size", "4"]


@pytest.fixture
def template_installed():
    """Install the template for one test; always uninstall after it."""
    with installed(TEMPLATE, "arm-plugin-template"):
        yield


def test_install_list_train_then_uninstall(template_installed, tmp_path):
    listing = run_script("arm-tokenizer", "list", "quantizer")
    assert listing.returncode == 0, listing.stderr
    line = next(ln for ln in listing.stdout.splitlines() if ln.split()[1:2] == ["sign"])
    assert "arm_plugin_template.quantizer.SignQuantizer" in line and "arm-plugin-template" in line
    assert "prequant_penalty" in run_script("arm-tokenizer", "list", "tokenizer_loss").stdout
    described = run_script("arm-tokenizer", "describe", "sign")
    assert "dim: int = 10" in described.stdout, described.stdout

    config = str(TEMPLATE / "configs" / "shapes-sign.yaml")
    fit = run_script("arm-tokenizer", "fit", "--config", config, *FAST,
                     "--trainer.default_root_dir", str(tmp_path))
    assert fit.returncode == 0, fit.stderr[-3000:]

    own_tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                str(TEMPLATE / "tests")], capture_output=True, text=True, cwd=TEMPLATE)
    assert own_tests.returncode == 0, own_tests.stdout[-3000:] + own_tests.stderr[-2000:]

    pip_uninstall("arm-plugin-template")
    try:
        listing = run_script("arm-tokenizer", "list", "quantizer")
        assert " sign " not in listing.stdout
        fit = run_script("arm-tokenizer", "fit", "--config", config, *FAST)
        assert fit.returncode == 2
        assert "unknown component 'sign'" in fit.stderr and "Traceback" not in fit.stderr
        assert "shapes-sign.yaml:14" in fit.stderr  # the file and line of the class_path
    finally:  # the fixture uninstalls again; keep that a no-op success
        pip_install(TEMPLATE)


def test_plugin_that_raises_at_import_leaves_the_rest_working(tmp_path):
    site = tmp_path / "site"
    dist_info = site / "broken_arm_plugin-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-arm-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[arm.quantizers]\nexploding = broken_arm_plugin:Exploding\n")
    (site / "broken_arm_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    env = {"PYTHONPATH": str(site)}

    listing = run_script("arm-tokenizer", "list", "quantizer", env=env)
    assert listing.returncode == 0
    assert "fsq" in listing.stdout and "exploding" in listing.stdout and "import failed" in listing.stdout
    assert "broken-arm-plugin" in listing.stderr and "boom at import" in listing.stderr

    # The template's config with the built-in FSQ instead of the plugin's components.
    data = yaml.safe_load((TEMPLATE / "configs" / "shapes-sign.yaml").read_text())
    model = data["model"]["init_args"]
    model["quantizer"] = {"class_path": "fsq", "init_args": {"levels": [5, 5, 5]}}
    model["proj_in"]["init_args"]["out_dim"] = 3
    model["proj_out"]["init_args"]["in_dim"] = 3
    model["losses"] = [loss for loss in model["losses"] if loss["class_path"] != "prequant_penalty"]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(data))
    fit = run_script("arm-tokenizer", "fit", "--config", str(cfg), *FAST,
                     "--trainer.default_root_dir", str(tmp_path), env=env)
    assert fit.returncode == 0, fit.stderr[-3000:]

    cfg.write_text(cfg.read_text().replace("class_path: fsq", "class_path: exploding"))
    fit = run_script("arm-tokenizer", "fit", "--config", str(cfg), *FAST, env=env)
    assert fit.returncode == 2
    assert "boom at import" in fit.stderr and "broken-arm-plugin" in fit.stderr
    assert "Traceback" not in fit.stderr
