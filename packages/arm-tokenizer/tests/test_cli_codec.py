"""``arm-tokenizer encode`` / ``decode``: a folder of images -> token file -> PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from arm_tokenizer.cli import EXTRA_COMMANDS
from arm_tokenizer.encoders.cnn import CNNEncoder
from arm_tokenizer.projections import LinearProjection
from arm_tokenizer.quantizers.fsq import FSQQuantizer
from arm_tokenizer.testing.toys import ToyDecoder
from arm_tokenizer.tokenizer import VisualTokenizer
from PIL import Image
from safetensors import safe_open


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    tok = VisualTokenizer(CNNEncoder(patch_size=4, width=8, max_width=16, out_dim=12), FSQQuantizer(levels=[4, 4, 3]),
                          ToyDecoder(in_dim=3, patch_size=4), proj_in=LinearProjection(12, 3), image_size=16)
    path = tmp_path_factory.mktemp("ckpt") / "tok"
    tok.save_pretrained(path)
    return path, tok.eval()


def _write_images(folder, n=3):
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / "sub" / "big.jpg")
    (folder / "notes.txt").write_text("not an image")


def test_encode_then_decode(ckpt, tmp_path, capsys):
    path, tok = ckpt
    _write_images(tmp_path / "imgs")
    out = tmp_path / "tokens.safetensors"
    rc = EXTRA_COMMANDS["encode"](["--checkpoint", str(path), "--images", str(tmp_path / "imgs"),
                                   "--out", str(out), "--batch-size", "2", "--recursive"])
    assert rc == 0 and "encoded 4 images" in capsys.readouterr().out
    with safe_open(str(out), framework="pt") as f:
        tokens = f.get_tensor("tokens")
        meta = f.metadata()
    assert tokens.shape == (4, 16) and tokens.dtype == torch.int32
    assert json.loads(meta["files"]) == ["img0.png", "img1.png", "img2.png", "sub/big.jpg"]
    assert json.loads(meta["grid"]) == [4, 4] and meta["codebook_size"] == "48"
    # Same ids as the Python API on the same image.
    img0 = Image.open(tmp_path / "imgs" / "img0.png")
    torch.testing.assert_close(tokens[0].long(), tok.encode(img0)[0])

    rc = EXTRA_COMMANDS["decode"](["--checkpoint", str(path), "--tokens", str(out), "--out", str(tmp_path / "png")])
    assert rc == 0
    written = sorted(p.relative_to(tmp_path / "png").as_posix() for p in (tmp_path / "png").rglob("*.png"))
    assert written == ["img0.png", "img1.png", "img2.png", "sub/big.png"]
    decoded = np.asarray(Image.open(tmp_path / "png" / "img0.png"))
    expected = tok.decode_to_pil(tokens[:1].long())[0]
    assert decoded.shape == (16, 16, 3) and np.array_equal(decoded, np.asarray(expected))


def test_bad_inputs_exit_2_with_one_line(ckpt, tmp_path, capsys):
    path, _ = ckpt
    (tmp_path / "empty").mkdir()
    cases = [
        (["encode", "--checkpoint", str(path), "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "t.safetensors")], "no images found"),
        (["encode", "--checkpoint", str(path), "--images", str(tmp_path / "nope"), "--out", str(tmp_path / "t.safetensors")], "not a directory"),
        (["encode", "--checkpoint", str(tmp_path / "nockpt"), "--images", str(tmp_path), "--out", str(tmp_path / "t.bin")], "must end in .safetensors"),
        (["decode", "--checkpoint", str(path), "--tokens", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path)], "no such file"),
    ]
    for argv, msg in cases:
        assert EXTRA_COMMANDS[argv[0]](argv[1:]) == 2
        assert msg in capsys.readouterr().err
    # Tokens out of the codebook's range.
    from safetensors.torch import save_file

    save_file({"tokens": torch.full((1, 16), 999, dtype=torch.int32)}, tmp_path / "bad.safetensors")
    assert EXTRA_COMMANDS["decode"](["--checkpoint", str(path), "--tokens", str(tmp_path / "bad.safetensors"),
                                     "--out", str(tmp_path / "o")]) == 2
    assert "[0, 48)" in capsys.readouterr().err
