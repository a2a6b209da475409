"""The pipelines' check of user text: shape tokens and the specials the pipeline writes
itself get a message that says so (and which argument sets the grid), not "unknown token"."""

from __future__ import annotations

import pytest
import torch
from arm_core.config import Config
from arm_core.model import GPT
from arm_core.pipelines import Edit, PipelineError, TextToImage, Understand
from arm_data.text_tokenizer import TextTokenizer
from arm_tokenizer.testing.toys import tiny_projected_tokenizer
from PIL import Image

TEXTS = ["a red circle", "a blue square", "what color is it?", "make it blue", "red", "blue"]


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe-text")
    torch.manual_seed(0)
    text = TextTokenizer.train(TEXTS * 3, vocab_size=300)
    text.save(root / "tt")
    vis = tiny_projected_tokenizer().eval()
    layout = text.layout(codebook_size=vis.codebook_size, max_grid_h=8, max_grid_w=8)
    cfg = Config.from_name("tiny").with_vocab(layout.total_size, layout.image_offset,
                                              layout.codebook_size, text_vocab_size=layout.text_vocab_size)
    model = GPT(cfg)
    tt = root / "tt"
    tt = next(tt.glob("*.model")) if tt.is_dir() else tt
    return {cls: cls.from_model(model, layout, tt, vis) for cls in (TextToImage, Edit, Understand)}


def test_shape_token_in_a_prompt_names_the_grid_argument(pipes) -> None:
    t2i = pipes[TextToImage]
    with pytest.raises(PipelineError) as e:
        t2i("a red circle <h=4>")
    msg = str(e.value)
    assert "prompt 0 contains '<h=4>', a shape token" in msg, msg
    assert "not one of" not in msg, msg                   # it IS a token of the vocabulary
    assert "The pipeline adds the shape tokens itself" in msg, msg
    assert "grid=(h, w) argument" in msg and "visual tokenizer's grid, 4x4" in msg, msg
    assert "pass grid=(4, w)" in msg and "1..8 x 1..8" in msg, msg
    with pytest.raises(PipelineError, match=r"'<w=2>', a shape token \(columns.*pass grid=\(h, 2\)"):
        t2i(["a blue square", "<w=2> a red circle"])
    with pytest.raises(PipelineError, match=r"prompt 1 contains"):
        t2i(["a blue square", "<w=2> a red circle"])


def test_shape_token_in_edit_and_understand(pipes) -> None:
    img = Image.new("RGB", (32, 32), (200, 30, 30))
    with pytest.raises(PipelineError, match=r"instruction 0 contains '<h=2>', a shape token.*"
                                            r"grid=\(h, w\) argument for the edited image"):
        pipes[Edit](img, "make it blue <h=2>")
    with pytest.raises(PipelineError) as e:
        pipes[Understand](img, "<w=4> what color is it?")
    msg = str(e.value)
    assert "question 0 contains '<w=4>', a shape token" in msg, msg
    assert "the image's token grid (the visual tokenizer's, 4x4)" in msg, msg
    assert "pass grid" not in msg, msg                    # Understand has no grid argument


def test_specials_the_pipeline_adds_and_unknown_ones(pipes) -> None:
    t2i = pipes[TextToImage]
    with pytest.raises(PipelineError, match=r"'<boi>', which is a special token the pipeline adds "
                                            r"itself \(opens an image span.*remove it"):
        t2i("a <boi> circle")
    with pytest.raises(PipelineError, match=r"'<null>'.*pipeline adds itself.*unconditional"):
        t2i("<null>")
    with pytest.raises(PipelineError, match=r"'<foo>'.*not one of.*known.*shape tokens"):
        t2i("a <foo> circle")
    assert t2i._check_text("a red circle < 4 >", 0, "prompt") == "a red circle < 4 >"
