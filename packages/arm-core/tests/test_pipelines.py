"""Pipelines on a tiny LM trained (in the fixture) on a few ARM-format sequences.

The LM memorises: two captions -> two image-code grids, two images -> their colour
names, one edit. If the pipelines build prompts that differ from the training format, or
decode the wrong span, these answers come out wrong.
"""

from __future__ import annotations

import pytest
import torch
from arm_core.checkpoint import load_lm, save_lm
from arm_core.config import Config
from arm_core.lightning_module import lm_loss
from arm_core.model import GPT
from arm_core.pipelines import Edit, PipelineError, TextToImage, Understand
from arm_data.formats import ImageTokens, TaskFormatter
from arm_data.text_tokenizer import TextTokenizer
from arm_tokenizer.encoders.cnn import CNNEncoder
from arm_tokenizer.projections import LinearProjection
from arm_tokenizer.quantizers.fsq import FSQQuantizer
from arm_tokenizer.testing.toys import ToyDecoder
from arm_tokenizer.tokenizer import VisualTokenizer
from PIL import Image

CAPTIONS = ["a red circle", "a blue square"]
QUESTION = "what color is it?"
ANSWERS = ["red", "blue"]
EDIT = "make it blue"


def _images() -> list[Image.Image]:
    red = Image.new("RGB", (32, 32), (230, 30, 30))
    blue = Image.new("RGB", (32, 32), (30, 30, 230))
    blue.paste((250, 250, 250), (0, 0, 16, 16))
    return [red, blue]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    torch.manual_seed(0)
    text = TextTokenizer.train(CAPTIONS * 3 + [QUESTION, EDIT] + ANSWERS * 3, vocab_size=300)
    text.save(root / "tt")
    vis = VisualTokenizer(CNNEncoder(patch_size=8, width=8, max_width=16, out_dim=16),
                          FSQQuantizer(levels=[2, 2, 2, 2]), ToyDecoder(in_dim=16, patch_size=8),
                          proj_in=LinearProjection(16, 4), proj_out=LinearProjection(4, 16),
                          image_size=32).eval()
    layout = text.layout(codebook_size=vis.codebook_size, max_grid_h=8, max_grid_w=8)
    imgs = _images()
    codes = vis.encode(imgs)
    assert not torch.equal(codes[0], codes[1])
    A, B = (ImageTokens(c, 4, 4) for c in codes)
    wide = ImageTokens(torch.arange(16) % vis.codebook_size, 2, 8)
    fmt = TaskFormatter(layout, text)
    seqs = [fmt.t2i(CAPTIONS[0], A), fmt.t2i(CAPTIONS[1], B), fmt.t2i(None, A),
            fmt.und(A, QUESTION, ANSWERS[0]), fmt.und(B, QUESTION, ANSWERS[1]),
            fmt.edit(A, EDIT, B), fmt.edit(A, None, A), fmt.edit(None, None, A),
            fmt.edit(None, EDIT, B), fmt.t2i(CAPTIONS[0], wide)]
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), layout.pad_id)
    tgt = torch.full((len(seqs), T), -100)
    for i, s in enumerate(seqs):
        x, m = s.as_tensors()
        ids[i, : len(x)] = x
        t = torch.where(m, x, torch.full_like(x, -100))
        tgt[i, : len(x) - 1] = t[1:]
    cfg = Config.from_name("tiny", n_embd=64, intermediate_size=128).with_vocab(
        layout.total_size, layout.image_offset, layout.codebook_size,
        text_vocab_size=layout.text_vocab_size)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = lm_loss(model(ids), tgt)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    vis.save_pretrained(root / "tok")
    save_lm(root / "lm", model, cfg, layout=layout, text_tokenizer=root / "tt",
            visual_tokenizer_dir=root / "tok")
    save_lm(root / "lm-noref", model, cfg, layout=layout, text_tokenizer=root / "tt")
    lm = load_lm(root / "lm")
    return dict(lm=lm, vis=vis, codes=codes, imgs=imgs, layout=layout, root=root)


def test_text_to_image_follows_prompt(setup) -> None:
    pipe = TextToImage(setup["lm"], setup["vis"])
    for scale in (1.0, 1.5):
        images, codes = pipe(CAPTIONS, guidance_scale=scale, temperature=0, return_codes=True)
        assert torch.equal(codes, setup["codes"]), scale
    assert [im.size for im in images] == [(32, 32), (32, 32)]
    # batching (with a progress bar) does not change results
    _, codes1 = pipe(CAPTIONS, temperature=0, batch_size=1, progress=True, return_codes=True)
    assert torch.equal(codes1, setup["codes"])
    # sampling: seeded, reproducible, several images per prompt
    a = pipe(CAPTIONS[0], temperature=1.0, seed=3, num_images_per_prompt=2, return_codes=True)[1]
    b = pipe(CAPTIONS[0], temperature=1.0, seed=3, num_images_per_prompt=2, return_codes=True)[1]
    assert a.shape == (2, 16) and torch.equal(a, b)


def test_text_to_image_other_aspect_ratio(setup) -> None:
    pipe = TextToImage(setup["lm"], setup["vis"])
    images, codes = pipe(CAPTIONS[0], grid=(2, 8), temperature=0, return_codes=True)
    assert codes.shape == (1, 16) and images[0].size == (64, 16)   # PIL size is (w, h)
    assert codes[0].tolist() == (torch.arange(16) % 16).tolist()


def test_understand_answers(setup) -> None:
    und = Understand(setup["lm"], setup["vis"])
    assert und(setup["imgs"], [QUESTION, QUESTION]) == ANSWERS
    assert und(None, [QUESTION], image_codes=setup["codes"][1:]) == ["blue"]


def test_edit_two_branch_guidance(setup) -> None:
    edit = Edit(setup["lm"], setup["vis"])
    for ts, is_ in ((1.0, 1.0), (1.5, 1.0), (1.5, 1.25)):
        out, codes = edit(setup["imgs"][0], EDIT, text_guidance_scale=ts, image_guidance_scale=is_,
                          temperature=0, return_codes=True)
        assert torch.equal(codes[0], setup["codes"][1]), (ts, is_)
        assert out[0].size == (32, 32)


def test_bad_input_errors(setup) -> None:
    lm, vis = setup["lm"], setup["vis"]
    t2i, und, edit = TextToImage(lm, vis), Understand(lm, vis), Edit(lm, vis)
    with pytest.raises(PipelineError, match=r"context of 128.*shorten"):
        t2i("red " * 200)
    with pytest.raises(PipelineError, match=r"'<boi>'.*is a special token.*remove it"):
        t2i("a <boi> circle")
    with pytest.raises(PipelineError, match=r"'<foo>'.*not one of.*known"):
        t2i("a <foo> circle")
    with pytest.raises(PipelineError, match=r"grid 9x4 .*1\.\.8"):
        t2i("a red circle", grid=(9, 4))
    with pytest.raises(PipelineError, match=r"15 tokens but the grid 4x4 needs 16"):
        und(None, QUESTION, image_codes=[list(range(15))])
    with pytest.raises(PipelineError, match=r"codes span \[0, 99\].*\[0, 16\)"):
        und(None, QUESTION, image_codes=[[99] + [0] * 15])
    with pytest.raises(PipelineError, match="2 source images for 3 instructions"):
        edit(setup["imgs"], [EDIT] * 3)
    with pytest.raises(PipelineError, match="no prompts"):
        t2i([])
    with pytest.raises(PipelineError, match="context"):
        und(setup["imgs"][0], QUESTION, max_new_tokens=500)


def test_from_pretrained_checks_tokenizer_vocabulary(setup, monkeypatch) -> None:
    """A visual tokenizer with another codebook than the LM: a clear error."""
    import arm_tokenizer.tokenizer as tk

    other = VisualTokenizer(CNNEncoder(patch_size=8, width=8, max_width=16, out_dim=16),
                            FSQQuantizer(levels=[2, 2, 2]), ToyDecoder(in_dim=16, patch_size=8),
                            proj_in=LinearProjection(16, 3), proj_out=LinearProjection(3, 16),
                            image_size=32)
    monkeypatch.setattr(tk.VisualTokenizer, "from_pretrained", classmethod(lambda cls, d: other))
    with pytest.raises(ValueError, match=r"has 8 codes but the LM .* 16"):
        TextToImage.from_pretrained(setup["root"] / "lm", tokenizer_dir=setup["root"])
    with pytest.raises(ValueError, match="no visual tokenizer found"):
        load_lm(setup["root"] / "lm-noref").load_visual_tokenizer()


def test_from_pretrained_and_cli(setup, tmp_path, capsys) -> None:
    """The exported LM + the tokenizer it references, loaded from disk (and via `arm-lm generate`)."""
    from arm_core.cli import EXTRA_COMMANDS

    pipe = TextToImage.from_pretrained(setup["root"] / "lm")      # tokenizer: the referenced one
    assert torch.equal(pipe(CAPTIONS, temperature=0, return_codes=True)[1], setup["codes"])
    gen = EXTRA_COMMANDS["generate"]
    assert gen(["t2i", "--lm", str(setup["root"] / "lm"), "--prompt", *CAPTIONS,
                "--temperature", "0", "--cfg", "1.5", "--out", str(tmp_path / "out")]) == 0
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 2 and Image.open(files[0]).size == (32, 32)
    setup["imgs"][0].save(tmp_path / "red.png")
    assert gen(["understand", "--lm", str(setup["root"] / "lm"), "--image", str(tmp_path / "red.png"),
                "--prompt", QUESTION]) == 0
    assert "A: red" in capsys.readouterr().out


def test_from_model_in_memory(setup) -> None:
    """RL and the demo wrap a live model without exporting it."""
    lm = setup["lm"]
    pipe = TextToImage.from_model(lm.model, setup["layout"], lm.text_tokenizer_path, setup["vis"])
    assert torch.equal(pipe(CAPTIONS, temperature=0, return_codes=True)[1], setup["codes"])
    from arm_data.vocab import VocabLayout

    other = VocabLayout(text_vocab_size=setup["layout"].text_vocab_size + 1, codebook_size=16,
                        max_grid_h=8, max_grid_w=8)
    with pytest.raises(ValueError, match="not the layout's"):
        Understand.from_model(lm.model, other, lm.text_tokenizer_path, setup["vis"])
