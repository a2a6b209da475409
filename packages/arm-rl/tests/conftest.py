"""Tiny fixtures: a random tiny arm-core LM export + a toy visual tokenizer + a text tokenizer
trained on ShapesWorld train text, so rollouts, rewards and the trainer run for real in seconds.

ARM_TEST_SEED (environment, default 0) seeds the tests: ``_seed_each_test`` (autouse) calls
``torch.manual_seed`` / ``random.seed`` / ``numpy.random.seed`` with it before every test, and
``tiny_lm`` and the training tests take their seed from ``arm_test_seed``. Run e.g.
``ARM_TEST_SEED=1 pytest packages/arm-rl/tests`` to check that no test relies on one lucky draw
(tests that pin their own seed for a bit-exact same-process comparison keep it).
"""

from __future__ import annotations

import pytest
import torch

# ARM_TEST_SEED: one seed for every suite (arm_tokenizer.testing.seeding)
from arm_tokenizer.testing.seeding import _seed_each_test, arm_test_seed  # noqa: E402, F401


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory, arm_test_seed):  # noqa: F811  (the imported fixture)
    from arm_core.checkpoint import save_lm
    from arm_core.config import Config
    from arm_core.model import GPT
    from arm_data.shapes import ShapesWorld
    from arm_data.text_tokenizer import TextTokenizer
    from arm_tokenizer.encoders.cnn import CNNEncoder
    from arm_tokenizer.projections import LinearProjection
    from arm_tokenizer.quantizers.fsq import FSQQuantizer
    from arm_tokenizer.testing.toys import ToyDecoder
    from arm_tokenizer.tokenizer import VisualTokenizer

    root = tmp_path_factory.mktemp("rl")
    torch.manual_seed(arm_test_seed)
    world = ShapesWorld("train", 0, 64, 64)
    texts = [t for i in range(30) for t in (world[i].caption, world[i].edit.instruction,
                                            *[q.question for q in world[i].qa])]
    texts += ["yes", "no", "Is there a red circle?"] * 3
    text = TextTokenizer.train(texts, vocab_size=400)
    text.save(root / "tt")
    vis = VisualTokenizer(CNNEncoder(patch_size=16, width=8, max_width=16, out_dim=16),
                          FSQQuantizer(levels=[2, 2, 2, 2]), ToyDecoder(in_dim=16, patch_size=16),
                          proj_in=LinearProjection(16, 4), proj_out=LinearProjection(4, 16),
                          image_size=64)
    vis.save_pretrained(root / "tok")
    layout = text.layout(codebook_size=16, max_grid_h=8, max_grid_w=8)
    cfg = Config.from_name("tiny", max_seq_len=256).with_vocab(
        layout.total_size, layout.image_offset, layout.codebook_size,
        text_vocab_size=layout.text_vocab_size)
    save_lm(root / "lm", GPT(cfg), cfg, layout=layout, text_tokenizer=root / "tt",
            visual_tokenizer_dir=root / "tok")
    # a reference of another shape, for the mismatch error
    other = Config.from_name("tiny", max_seq_len=256, n_layer=1).with_vocab(
        layout.total_size, layout.image_offset, layout.codebook_size,
        text_vocab_size=layout.text_vocab_size)
    save_lm(root / "other", GPT(other), other, layout=layout, text_tokenizer=root / "tt",
            visual_tokenizer_dir=root / "tok")
    return root
