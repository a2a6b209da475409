"""Helpers for the tests of arm-core and of arm-rl: tiny random LM exports (real files, built
in seconds) and the trainer section of a one-step YAML run.

An export is a folder holding the text tokenizer (``tt``), the visual tokenizer (``tok``) and
one or more LMs that point at both. Nothing here is trained; seed torch first for a
reproducible draw.
"""

from __future__ import annotations

from pathlib import Path

from arm_data.text_tokenizer import TextTokenizer
from arm_data.vocab import VocabLayout
from arm_tokenizer.testing.toys import tiny_projected_tokenizer

from arm_core.checkpoint import save_lm
from arm_core.config import Config
from arm_core.model import GPT

__all__ = ["one_step_trainer", "save_tiny_export", "save_tiny_lm"]


def save_tiny_lm(root: Path, layout: VocabLayout, name: str = "lm", **config) -> Path:
    """A random ``tiny`` GPT (256 positions; ``config`` overrides fields) for ``layout``,
    exported to ``root / name`` with the tokenizers already in ``root / "tt"`` and ``root / "tok"``."""
    cfg = Config.from_name("tiny", **{"max_seq_len": 256, **config}).with_vocab(
        layout.total_size, layout.image_offset, layout.codebook_size, text_vocab_size=layout.text_vocab_size)
    save_lm(root / name, GPT(cfg), cfg, layout=layout, text_tokenizer=root / "tt",
            visual_tokenizer_dir=root / "tok")
    return root / name


def save_tiny_export(root: Path, texts: list[str]) -> VocabLayout:
    """A text tokenizer trained on ``texts`` (400 pieces), a toy visual tokenizer (64 px images,
    4x4 tokens of 16 codes) and a random tiny LM (``root / "lm"``); returns the vocabulary layout."""
    text = TextTokenizer.train(texts, vocab_size=400)
    text.save(root / "tt")
    tiny_projected_tokenizer(image_size=64, patch_size=16).save_pretrained(root / "tok")
    layout = text.layout(codebook_size=16, max_grid_h=8, max_grid_w=8)
    save_tiny_lm(root, layout)
    return layout


def one_step_trainer(root: Path) -> dict:
    """The ``trainer:`` section of a config that fits one step on the CPU, logging CSV metrics
    to ``root / "logs" / "csv"``."""
    return {"accelerator": "cpu", "devices": 1, "max_steps": 1, "log_every_n_steps": 1,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": str(root / "logs"), "name": "csv"}},
            "enable_checkpointing": False, "enable_progress_bar": False,
            "num_sanity_val_steps": 0, "default_root_dir": str(root / "logs")}
