"""Tests of arm_tokenizer.images: every pixel mode, EXIF orientation, bombs, bad files, transforms."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from arm_tokenizer.images import (
    ImageLoadError,
    ImageTransform,
    load_image,
    pil_to_tensor,
    tensor_to_pil,
    to_rgb,
    to_tensor_batch,
)
from PIL import Image


def _gradient(w: int = 12, h: int = 8) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.arange(w)[None, :] * 20
    arr[..., 1] = np.arange(h)[:, None] * 30
    arr[..., 2] = 77
    return Image.fromarray(arr)


def _save(img: Image.Image, path, **kw) -> str:
    img.save(path, **kw)
    return str(path)


def test_rgb_png_roundtrip_exact(tmp_path):
    img = _gradient()
    out = load_image(_save(img, tmp_path / "a.png"))
    assert out.mode == "RGB" and out.size == (12, 8)
    assert np.array_equal(np.asarray(out), np.asarray(img))


def test_bytes_and_stream_sources(tmp_path):
    img = _gradient()
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert np.array_equal(np.asarray(load_image(buf.getvalue())), np.asarray(img))
    buf.seek(0)
    assert np.array_equal(np.asarray(load_image(buf)), np.asarray(img))


def test_exif_orientation_6_rotates(tmp_path):
    # Orientation 6 = "rotate 90 CW to display": a 12x8 stored image is shown 8 wide, 12 high.
    img = _gradient(12, 8)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(img, tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.size == (8, 12)
    expected = np.asarray(img.transpose(Image.Transpose.ROTATE_270)).astype(int)
    assert np.abs(np.asarray(out).astype(int) - expected).mean() < 6  # JPEG noise only
    raw = load_image(path, exif_orientation=False)
    assert raw.size == (12, 8)


def test_exif_orientation_3_and_8(tmp_path):
    img = _gradient(12, 8)
    for tag, transpose in [(3, Image.Transpose.ROTATE_180), (8, Image.Transpose.ROTATE_90)]:
        exif = Image.Exif()
        exif[0x0112] = tag
        path = _save(img, tmp_path / f"o{tag}.png", exif=exif.tobytes())
        assert np.array_equal(np.asarray(load_image(path)), np.asarray(img.transpose(transpose)))


def test_palette_with_transparency_composited_on_white(tmp_path):
    p = Image.new("P", (4, 4), 0)
    p.putpalette([255, 0, 0] + [0, 0, 255] + [0, 0, 0] * 254)
    p.putpixel((0, 0), 1)
    path = _save(p, tmp_path / "p.png", transparency=0)  # index 0 (red) is transparent
    out = np.asarray(load_image(path))
    assert tuple(out[0, 0]) == (0, 0, 255)
    assert tuple(out[1, 1]) == (255, 255, 255)


def test_palette_without_transparency(tmp_path):
    p = Image.new("P", (3, 3), 1)
    p.putpalette([0, 0, 0] + [10, 200, 30] + [0, 0, 0] * 254)
    out = np.asarray(load_image(_save(p, tmp_path / "p.gif")))
    assert tuple(out[2, 2]) == (10, 200, 30)


def test_grayscale_and_la_and_1bit(tmp_path):
    g = Image.new("L", (3, 3), 100)
    assert tuple(np.asarray(load_image(_save(g, tmp_path / "g.png")))[0, 0]) == (100, 100, 100)
    la = Image.new("LA", (3, 3), (100, 0))  # fully transparent
    la.putpixel((1, 1), (40, 255))
    out = np.asarray(load_image(_save(la, tmp_path / "la.png")))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 1]) == (40, 40, 40)
    b = Image.new("1", (3, 3), 1)
    assert tuple(np.asarray(load_image(_save(b, tmp_path / "b.png")))[0, 0]) == (255, 255, 255)


def test_rgba_half_alpha_composited(tmp_path):
    rgba = Image.new("RGBA", (2, 2), (0, 0, 0, 128))
    out = np.asarray(load_image(_save(rgba, tmp_path / "a.png"))).astype(int)
    assert np.all(np.abs(out - 127) <= 1)
    black_bg = np.asarray(load_image(tmp_path / "a.png", background=(0, 0, 0)))
    assert np.all(black_bg == 0)


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = np.asarray(load_image(_save(cmyk, tmp_path / "c.jpg", quality=95))).astype(int)
    assert out[..., 0].mean() > 230 and out[..., 1].mean() < 25 and out[..., 2].mean() < 25


@pytest.mark.parametrize("mode", ["I;16", "I"])
def test_16bit_scaled_not_clipped(tmp_path, mode):
    arr = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    img = Image.fromarray(arr) if mode == "I;16" else Image.fromarray(arr.astype(np.int32))
    assert img.mode == mode
    path = _save(img, tmp_path / ("d.png" if mode == "I;16" else "d.tif"))  # PNG cannot store mode I
    out = np.asarray(load_image(path))
    assert out.shape == (1, 3, 3)
    assert out[0, :, 0].tolist() == [0, 100, 255]  # scaled by 1/257, not clipped at 255
    # the in-memory conversion too, independent of how PNG stores it
    assert np.asarray(to_rgb(img))[0, :, 0].tolist() == [0, 100, 255]


def test_float_image_in_unit_range():
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert f.mode == "F"
    assert np.asarray(to_rgb(f))[0, :, 0].tolist() == [0, 128, 255]


def test_zero_byte_missing_corrupt_truncated(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty.png") as e:
        load_image(tmp_path / "empty.png")
    assert e.value.reason == "empty"
    with pytest.raises(ImageLoadError) as e:
        load_image(tmp_path / "nope.png")
    assert e.value.reason == "missing"
    (tmp_path / "junk.png").write_bytes(b"this is not an image at all")
    with pytest.raises(ImageLoadError) as e:
        load_image(tmp_path / "junk.png")
    assert e.value.reason == "corrupt" and "junk.png" in str(e.value)
    data = (tmp_path / "full.png")
    _save(_gradient(64, 64), data)
    raw = data.read_bytes()
    (tmp_path / "trunc.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageLoadError) as e:
        load_image(tmp_path / "trunc.png")
    assert e.value.reason == "corrupt"
    buf = io.BytesIO()
    _gradient(64, 64).save(buf, format="JPEG")
    with pytest.raises(ImageLoadError) as e:
        load_image(buf.getvalue()[:300], name="shard.tar:k.jpg")
    assert e.value.reason == "corrupt" and "shard.tar:k.jpg" in str(e.value)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    path = _save(Image.new("L", (300, 200)), tmp_path / "big.png")
    with pytest.raises(ImageLoadError, match="max_pixels=50000") as e:
        load_image(path, max_pixels=50_000)
    assert e.value.reason == "too_large" and "big.png" in str(e.value)
    assert load_image(path, max_pixels=60_000).size == (300, 200)


def test_pillow_global_bomb_limit_translated(tmp_path, monkeypatch):
    path = _save(Image.new("L", (300, 200)), tmp_path / "big.png")
    # 60,000 px: > 2x the limit is Pillow's error; between 1x and 2x Pillow only warns
    for limit in (10_000, 40_000):
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(ImageLoadError) as e:
            load_image(path, max_pixels=None)
        assert e.value.reason == "too_large" and "big.png" in str(e.value)


def test_tensor_roundtrip_and_range():
    img = _gradient()
    t = pil_to_tensor(img)
    assert t.shape == (3, 8, 12) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert t[2, 0, 0].item() == pytest.approx(77 / 127.5 - 1)
    assert np.array_equal(np.asarray(tensor_to_pil(t)), np.asarray(img))
    clamped = np.asarray(tensor_to_pil(torch.tensor([3.0, -3.0, 0.0])[None, :, None, None].expand(1, 3, 2, 2)))
    assert clamped[0, 0].tolist() == [255, 0, 128]  # clamped to [-1, 1], 0 -> 127.5 rounds to 128
    with pytest.raises(ValueError, match="shape"):
        tensor_to_pil(torch.zeros(1, 8, 8))


def test_to_tensor_batch():
    a, b = _gradient(), _gradient()
    assert to_tensor_batch(a).shape == (1, 3, 8, 12)
    assert to_tensor_batch([a, b]).shape == (2, 3, 8, 12)
    t = torch.zeros(3, 4, 4)
    assert to_tensor_batch(t).shape == (1, 3, 4, 4)
    with pytest.raises(ValueError, match="differ in size"):
        to_tensor_batch([a, _gradient(5, 5)])
    assert to_tensor_batch([a, _gradient(5, 5)], transform=ImageTransform(4)).shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="empty"):
        to_tensor_batch([])


def test_transform_center_crop_non_square():
    # 40 wide x 20 high; target 10 high x 10 wide: scale 0.5 -> 20x10, center crop cols 5..15
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, 10:30] = 255  # white middle half
    out = ImageTransform((10, 10), crop="center", resample="nearest")(Image.fromarray(arr))
    assert out.size == (10, 10)
    assert np.asarray(out).min() == 255  # only the white middle remains
    wide = ImageTransform((8, 16), crop="center")(Image.fromarray(arr))
    assert wide.size == (16, 8)  # PIL size is (width, height)


def test_transform_random_crop_reproducible_and_varied():
    img = _gradient(40, 10)
    t = ImageTransform(10, crop="random", resample="nearest")
    outs = {np.asarray(t(img, torch.Generator().manual_seed(s))).tobytes() for s in range(20)}
    assert len(outs) > 3  # different offsets
    a = t(img, torch.Generator().manual_seed(3))
    b = t(img, torch.Generator().manual_seed(3))
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_transform_none_squashes_and_validates():
    img = _gradient(40, 10)
    assert ImageTransform((6, 7), crop="none")(img).size == (7, 6)
    assert ImageTransform(8).to_tensor(img).shape == (3, 8, 8)
    with pytest.raises(ValueError, match="crop must be one of"):
        ImageTransform(8, crop="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        ImageTransform((0, 4))
