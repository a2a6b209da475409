"""The training CLIs check the transformers checkpoints a config names before importing
Lightning: missing weights offline are one line, and Lightning is never imported for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from arm_tokenizer.framework.hub import HubUnavailableError
from arm_tokenizer.framework.weights_preflight import check_checkpoints, checkpoint_locations

REPO = Path(__file__).resolve().parents[3]
PAPER = REPO / "configs" / "tokenizer" / "arm-siglip2-fsq.yaml"
SIGLIP2 = "google/siglip2-so400m-patch16-512"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_paper_config_names_its_three_towers():
    found = checkpoint_locations(["--config", str(PAPER)])
    assert {(c, w) for c, w, _ in found} == {("hf_vision", SIGLIP2), ("hf_text", SIGLIP2),
                                             ("hf_causal_lm", "Qwen/Qwen2.5-0.5B")}


def test_missing_weights_offline_is_one_line_naming_the_file(offline):
    with pytest.raises(HubUnavailableError) as e:
        check_checkpoints(["--config", str(PAPER)])
    msg = str(e.value)
    assert "\n" not in msg and SIGLIP2 in msg and "HF_HUB_OFFLINE" in msg and str(PAPER) in msg


def test_local_directories_and_cached_ids_pass(offline, tmp_path):
    # the cache layout huggingface_hub writes: models--org--name/snapshots/<rev>/config.json
    for repo in (SIGLIP2, "Qwen/Qwen2.5-0.5B"):
        snap = offline / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc123"
        snap.mkdir(parents=True)
        (snap / "config.json").write_text("{}")
    check_checkpoints(["--config", str(PAPER)])
    local = tmp_path / "siglip2"
    local.mkdir()
    cfg = tmp_path / "local.yaml"
    cfg.write_text(f"model:\n  init_args:\n    encoder:\n      class_path: hf_vision\n"
                   f"      init_args: {{name_or_path: {local}}}\n")
    check_checkpoints(["--config", str(cfg)])


def test_a_flag_that_may_move_a_checkpoint_leaves_the_check_to_the_components(offline):
    for flag in ("--model.init_args.encoder.init_args.name_or_path=/data/siglip2",
                 "--model.init_args.losses", "--model"):
        assert checkpoint_locations(["--config", str(PAPER), flag, "x"]) == []
        check_checkpoints(["--config", str(PAPER), flag, "x"])
    # other flags do not
    assert checkpoint_locations(["--config", str(PAPER), "--trainer.max_steps", "3"])


def test_the_cli_fails_before_importing_lightning(tmp_path):
    code = ("import sys\nfrom arm_tokenizer.cli import main\n"
            f"try:\n    main(['fit', '--config', {str(PAPER)!r}])\n"
            "except SystemExit as e:\n    print('lightning' in sys.modules, e.code)\n")
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.split() == ["False", "2"], proc.stdout + proc.stderr
    assert proc.stderr.count("arm-tokenizer: error:") == 1 and "Traceback" not in proc.stderr
