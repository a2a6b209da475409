"""A third-party task end to end (examples/task-plugin): pip install, pre-tokenize
ShapesWorld for it from the CLI, train the LM a few steps from YAML with it in the task mix,
uninstall, and the same commands stop with a one-line error naming the task."""

from __future__ import annotations

import json
import math

import pytest
import torch
from arm_tokenizer.testing.toys import tiny_random_tokenizer
from conftest import ROOT, installed, pip_install, pip_uninstall, run_script

PLUGIN = ROOT / "examples" / "task-plugin"
CONFIG = PLUGIN / "configs" / "caption-lm.yaml"


@pytest.fixture
def plugin_installed():
    """Install the example task for one test; always uninstall after it."""
    with installed(PLUGIN, "arm-caption-task"):
        yield


@pytest.fixture
def tokenizer_dir(tmp_path):
    """A tiny random visual tokenizer (32 px -> a 4x4 grid of 64 codes)."""
    torch.manual_seed(0)
    vt = tiny_random_tokenizer(image_size=32)
    vt.save_pretrained(tmp_path / "vt")
    return tmp_path / "vt"


def _pretokenize(tok, out):
    return run_script("arm-data", "pretokenize", "--tokenizer", str(tok), "--source", "shapes:train",
                      "--tasks", "caption,vqa", "--count", "12", "--questions", "1", "--workers", "0",
                      "--no-progress", "--out", str(out))


def _fit(shards, root):
    return run_script("arm-lm", "fit", "--config", str(CONFIG), "--trainer.max_steps", "3",
                      "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root / "logs"),
                      "--trainer.logger", "CSVLogger", "--trainer.logger.init_args.save_dir", str(root / "logs"),
                      "--data.init_args.data_dir", str(shards), "--model.init_args.export_dir", str(root / "lm"))


def test_plugin_task_pretokenize_and_fit_then_uninstall(plugin_installed, tokenizer_dir, tmp_path):
    from arm_data.vocab import DEFAULT_SPECIAL_TOKENS

    shards = tmp_path / "tokens"
    pre = _pretokenize(tokenizer_dir, shards)
    assert pre.returncode == 0, pre.stderr[-3000:]
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["settings"]["tasks"] == ["pair", "vqa"]  # caption reads t2i's pair records
    text = run_script("arm-data", "train-text-tokenizer", "--shards", str(shards), "--vocab-size", "300")
    assert text.returncode == 0, text.stderr[-3000:]

    fit = _fit(shards, tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    rows = [ln.split(",") for ln in next((tmp_path / "logs").rglob("metrics.csv")).read_text().splitlines()]
    for name in ("train/loss", "train/loss_caption"):  # the plugin task's own loss is logged too
        col = rows[0].index(name)
        losses = [float(r[col]) for r in rows[1:] if r[col]]
        assert losses and all(math.isfinite(x) for x in losses), name
    # the plugin's token is appended after the built-in specials, whose ids do not move
    vocab = json.loads((tmp_path / "lm" / "config.json").read_text())["vocab"]
    assert vocab["special_tokens"] == [*DEFAULT_SPECIAL_TOKENS, "<caption>"]

    pip_uninstall("arm-caption-task")
    try:
        pre = _pretokenize(tokenizer_dir, tmp_path / "again")
        assert pre.returncode == 2, pre.stderr[-2000:]
        assert "unknown task 'caption'" in pre.stderr and "Install the package that provides it" in pre.stderr
        assert "Traceback" not in pre.stderr
        fit = _fit(shards, tmp_path / "again")
        assert fit.returncode == 2, fit.stderr[-2000:]
        assert "unknown tasks ['caption']" in fit.stderr and "Install the package" in fit.stderr
        assert "Traceback" not in fit.stderr
    finally:  # the fixture uninstalls again; keep that a no-op success
        pip_install(PLUGIN)
