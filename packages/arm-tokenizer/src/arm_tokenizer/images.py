"""Image loading and pixel conversion shared by every ARM package.

One place decides how a file on disk becomes the ``float (3, H, W)`` tensor in ``[-1, 1]``
that tokenizer components take (see ``DESIGN.md``: pixels are always in ``[-1, 1]``):

* :func:`load_image` decodes a path, raw bytes or a binary stream into an **8-bit RGB**
  :class:`PIL.Image.Image`: it applies the EXIF orientation tag
  (:func:`PIL.ImageOps.exif_transpose`), composites any alpha (RGBA, LA, palette with a
  transparency entry, ...) onto a background (white by default), converts palette,
  grayscale, 1-bit, CMYK, YCbCr, LAB, HSV and 16/32-bit integer or float images to RGB,
  and refuses decompression bombs: the header's ``width * height`` is checked against
  ``max_pixels`` *before* any pixel is decoded, and Pillow's own
  :data:`PIL.Image.MAX_IMAGE_PIXELS` guard is translated into the same error.
  Every failure is an :class:`ImageLoadError` naming the file and a machine-readable
  ``reason`` (``"missing"``, ``"empty"``, ``"too_large"``, ``"corrupt"``), which is what
  ``arm_data``'s skip/raise policy counts.
* :func:`pil_to_tensor` / :func:`tensor_to_pil` convert between RGB images and
  ``[-1, 1]`` tensors (``x = 2 * (u8 / 255) - 1``; the inverse rounds and clamps).
* :func:`to_tensor_batch` turns a PIL image, a list of them or a tensor into a
  ``(B, 3, H, W)`` batch.
* :class:`ImageTransform` is the resize + crop policy: resize so the target is covered
  (aspect ratio kept), then a center or random crop; ``crop="pad"`` to fit inside and pad;
  or ``crop="none"`` to resize straight to the target (aspect ratio not kept). Sizes may be
  non-square. :func:`transform_for` maps a data module's ``resize`` policy
  (:data:`RESIZE_POLICIES`: ``center_crop``, ``pad``, ``resize``) onto it, and
  :func:`canonical_size` gives every ``image_size`` one spelling (int if square, else
  ``(height, width)``).
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageLoadError",
    "ImageSource",
    "ImageTooSmallError",
    "ImageTransform",
    "RESIZE_POLICIES",
    "ResizePolicy",
    "canonical_size",
    "check_size",
    "load_image",
    "pil_to_u8",
    "transform_for",
    "u8_to_tensor",
    "to_rgb",
    "pil_to_tensor",
    "tensor_to_pil",
    "to_tensor_batch",
    "luminance",
]

# 8192 x 8192: far above any training resolution, far below what exhausts memory
# (an RGB image of this size is 200 MB decoded).
DEFAULT_MAX_PIXELS = 8192 * 8192

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


class ImageLoadError(ValueError):
    """An image could not be loaded.

    Attributes:
        source: what was being loaded (a path, or the ``name`` given for bytes/streams).
        reason: ``"missing"`` (no such file), ``"empty"`` (zero bytes), ``"too_large"``
            (over the pixel limit: a possible decompression bomb) or ``"corrupt"``
            (not an image, truncated or undecodable).
    """

    REASONS = ("missing", "empty", "too_large", "corrupt")

    def __init__(self, source: str, reason: str, detail: str) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown ImageLoadError reason {reason!r}; choose from {self.REASONS}")
        self.source = source
        self.reason = reason
        self.detail = detail
        super().__init__(f"cannot load image {source!r} ({reason}): {detail}")


def _source_name(source: ImageSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return str(getattr(source, "name", "<stream>"))


def _pillow_pixels(err: Exception) -> int | None:
    """The pixel count in Pillow's decompression-bomb message ("Image size (N pixels) ...")."""
    m = re.search(r"\((\d+) pixels\)", str(err))
    return int(m.group(1)) if m else None


def _too_large(label: str, max_pixels: int | None, pixels: int | None, size: tuple[int, int] | None = None,
               pillow: Exception | None = None) -> ImageLoadError:
    """The ``too_large`` error: the image's pixel count, the limit that refused it, how to raise it."""
    count = f"{size[0]}x{size[1]} = {pixels} pixels" if size and pixels else (
        f"{pixels} pixels" if pixels else "its size")
    limit = Image.MAX_IMAGE_PIXELS
    if pixels is None:  # an unparseable Pillow message: pass it on as it is
        return ImageLoadError(label, "too_large", f"{pillow} (max_pixels={max_pixels})")
    if max_pixels is not None and pixels > max_pixels:
        return ImageLoadError(
            label, "too_large",
            f"{count} exceeds max_pixels={max_pixels} (possible decompression bomb); if the image "
            f"is trusted, raise the limit: max_pixels={pixels} or more (the max_pixels argument "
            f"of the reader or of load_image)",
        )
    if max_pixels is not None:  # within ours, but over twice Pillow's global limit: Pillow refuses
        return ImageLoadError(
            label, "too_large",
            f"{count} is within max_pixels={max_pixels} but over twice Pillow's global limit "
            f"PIL.Image.MAX_IMAGE_PIXELS={limit}, which Pillow enforces itself; to load it, also "
            f"raise that: PIL.Image.MAX_IMAGE_PIXELS = {pixels}",
        )
    hint = (f"pass max_pixels={pixels} or more to use that limit instead" if limit is None or pixels <= 2 * limit
            else f"raise it: PIL.Image.MAX_IMAGE_PIXELS = {pixels}")
    return ImageLoadError(
        label, "too_large",
        f"{count} exceeds Pillow's global limit PIL.Image.MAX_IMAGE_PIXELS={limit} (possible "
        f"decompression bomb; with max_pixels=None only Pillow's limit applies); if the image is "
        f"trusted, {hint}",
    )


def _bomb_filter(max_pixels: int | None) -> str:
    """Pillow only warns between 1x and 2x its global limit: with our own ``max_pixels`` that
    warning is moot (our check decides); without it, it is the guard, made an error."""
    return "ignore" if max_pixels is not None else "error"


def _open(source: ImageSource, label: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open lazily (header only) and check for empty input; no pixels are decoded here."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageLoadError(label, "missing", "no such file")
        if path.stat().st_size == 0:
            raise ImageLoadError(label, "empty", "file has zero bytes")
        fp: BinaryIO | str = os.fspath(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageLoadError(label, "empty", "zero bytes")
        fp = io.BytesIO(bytes(source))
    else:
        fp = source
    try:
        with warnings.catch_warnings():
            # Image.open already checks the header size against Pillow's global limit
            warnings.simplefilter(_bomb_filter(max_pixels), Image.DecompressionBombWarning)
            return Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _too_large(label, max_pixels, _pillow_pixels(e), pillow=e) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(label, "corrupt", _pillow_message(e, fp, label)) from e


def _pillow_message(err: Exception, fp: object, label: str) -> str:
    """``Type: message``, with the in-memory stream Pillow names (``<_io.BytesIO object at
    0x...>``) replaced by the image's name."""
    msg = str(err)
    if not isinstance(fp, str):
        msg = msg.replace(repr(fp), repr(label))
    return f"{type(err).__name__}: {msg}"


def _high_bit_depth_to_l(img: Image.Image) -> Image.Image:
    """Map a 16/32-bit integer or float single-channel image to 8-bit ``L``.

    Pillow's own ``convert("L")`` clips these modes at 255 instead of rescaling, which
    turns a 16-bit photo white, so the scaling is done here: ``I;16*`` by 1/257;
    ``I`` by 1/257 when values exceed 255 (16-bit data stored as 32-bit, as PNG decoders
    do) else unchanged; ``F`` by 255 when values lie within [0, 1] else clipped.
    """
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        out = arr.astype(np.float64) / 257.0
    elif img.mode == "I":
        out = arr.astype(np.float64)
        if out.size and out.max() > 255:
            out = out / 257.0
    else:  # "F"
        out = arr.astype(np.float64)
        if out.size and out.min() >= 0.0 and out.max() <= 1.0:
            out = out * 255.0
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))  # uint8 2-D -> "L"


def to_rgb(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert a decoded image of any Pillow mode to 8-bit RGB.

    Args:
        img: a decoded image (any mode).
        background: RGB colour that transparent pixels are composited onto.

    Returns:
        An ``RGB`` image of the same size (the input itself if it already is RGB).
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "F") or mode.startswith("I;16"):
        return _high_bit_depth_to_l(img).convert("RGB")
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        mode in ("P", "L", "RGB", "1") and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    # P, L, 1, CMYK, YCbCr, LAB, HSV, RGBX: Pillow's converters are exact enough here.
    return img.convert("RGB")


def load_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    name: str | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
    exif_orientation: bool = True,
) -> Image.Image:
    """Decode an image file into an 8-bit RGB PIL image.

    Args:
        source: a path, raw encoded bytes, or a binary stream positioned at the image.
        max_pixels: refuse images whose header declares more than this many pixels
            (``width * height``) before decoding them; ``None`` disables our check
            (Pillow's global :data:`PIL.Image.MAX_IMAGE_PIXELS` guard still applies).
        name: how to name the image in errors and warnings (defaults to the path, or
            ``<N bytes>``); pass e.g. ``"shard-000003.tar:000042.png"`` for tar members.
        background: RGB colour transparent pixels are composited onto.
        exif_orientation: apply the EXIF orientation tag (rotate/flip as a viewer would).

    Returns:
        A fully loaded ``RGB`` image (the file handle is closed).

    Raises:
        ImageLoadError: with ``reason`` ``"missing"``, ``"empty"``, ``"too_large"`` or
            ``"corrupt"`` and the file named.
    """
    label = _source_name(source, name)
    img = _open(source, label, max_pixels)
    try:
        w, h = img.size
        if max_pixels is not None and w * h > max_pixels:
            raise _too_large(label, max_pixels, w * h, size=(w, h))
        try:
            with warnings.catch_warnings():
                # some formats check sizes again while decoding (e.g. GIF frames)
                warnings.simplefilter(_bomb_filter(max_pixels), Image.DecompressionBombWarning)
                img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise _too_large(label, max_pixels, _pillow_pixels(e), pillow=e) from e
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
            # Truncated files raise OSError("image file is truncated ...") unless the global
            # ImageFile.LOAD_TRUNCATED_IMAGES is set; we never set it.
            raise ImageLoadError(label, "corrupt", f"{type(e).__name__}: {e}") from e
        if exif_orientation:
            try:
                img = ImageOps.exif_transpose(img)
            except Exception as e:  # malformed EXIF must not cost the sample its pixels
                warnings.warn(f"ignoring unreadable EXIF orientation of {label!r}: {e}", stacklevel=2)
        try:
            out = to_rgb(img, background)
        except (OSError, ValueError) as e:
            raise ImageLoadError(label, "corrupt", f"cannot convert mode {img.mode!r} to RGB: {e}") from e
        if out is img:
            out = img.copy()  # detach from the file object so the handle can be closed
        return out
    finally:
        img.close()


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An image (converted to RGB if needed) as ``float32 (3, H, W)`` in ``[-1, 1]``."""
    if img.mode != "RGB":
        img = to_rgb(img)
    arr = np.asarray(img, dtype=np.uint8)
    t = torch.from_numpy(arr.copy()).permute(2, 0, 1).to(torch.float32)
    return t.div_(127.5).sub_(1.0)


def luminance(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` images as their luma (ITU-R 601: 0.299 R + 0.587 G + 0.114 B, as
    Pillow's ``convert("L")``) repeated in all three channels: the same image without hue."""
    w = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (images * w).sum(1, keepdim=True).expand_as(images)


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """A ``(3, H, W)`` or ``(1, 3, H, W)`` tensor in ``[-1, 1]`` as an RGB image.

    Values are clamped to ``[-1, 1]`` and rounded to the nearest 8-bit level, so
    ``tensor_to_pil(pil_to_tensor(img))`` reproduces ``img`` exactly.
    """
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"tensor_to_pil takes one image; got a batch of shape {tuple(x.shape)}")
        x = x[0]
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor in [-1, 1]; got shape {tuple(x.shape)}")
    u8 = ((x.detach().to(torch.float32).cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return Image.fromarray(u8.permute(1, 2, 0).contiguous().numpy())  # uint8 (H, W, 3) -> "RGB"


def to_tensor_batch(
    images: Image.Image | Sequence[Image.Image] | torch.Tensor,
    transform: ImageTransform | None = None,
) -> torch.Tensor:
    """Turn one image, a list of images or a tensor into a ``(B, 3, H, W)`` batch in ``[-1, 1]``.

    Args:
        images: a PIL image, a sequence of PIL images, or a tensor of shape ``(3, H, W)``
            or ``(B, 3, H, W)`` already in ``[-1, 1]`` (returned as is, batched).
        transform: optional resize/crop applied to each PIL image first; needed when the
            images differ in size.

    Raises:
        ValueError: for an empty list, a wrong tensor shape, or differing image sizes.
    """
    if isinstance(images, torch.Tensor):
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected a (B, 3, H, W) or (3, H, W) tensor; got shape {tuple(images.shape)}")
        return images
    if isinstance(images, Image.Image):
        images = [images]
    if len(images) == 0:
        raise ValueError("to_tensor_batch got an empty list of images")
    if transform is not None:
        images = [transform(im) for im in images]
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        raise ValueError(
            f"images differ in size {sorted(sizes)}; pass transform=ImageTransform(size) to resize them"
        )
    return torch.stack([pil_to_tensor(im) for im in images])


ResizePolicy = Literal["center_crop", "pad", "resize"]
#: How a data module brings an image of any aspect ratio to its ``(height, width)``:
#: ``center_crop`` = resize to cover (aspect kept), cut the target out (at the centre, or at a
#: random offset for training crops); ``pad`` = resize to fit inside (aspect kept), pad the
#: rest with ``pad_color``; ``resize`` = stretch to the target (aspect not kept).
RESIZE_POLICIES: tuple[str, ...] = ("center_crop", "pad", "resize")


class ImageTooSmallError(ValueError):
    """A source image is smaller than a reader's ``min_side`` (e.g. one encoder patch)."""


def check_size(size: int | Sequence[int], field: str = "image_size") -> tuple[int, int]:
    """``size`` (an int for square, or ``(height, width)``) as a ``(height, width)`` pair.

    Raises:
        ValueError: naming ``field`` for anything that is not one or two positive ints.
    """
    if isinstance(size, bool):
        raise ValueError(f"{field} must be a positive int or [height, width]; got {size!r}")
    if isinstance(size, int):
        pair: tuple = (size, size)
    else:
        try:
            pair = tuple(size)
        except TypeError:
            raise ValueError(f"{field} must be a positive int or [height, width]; got {size!r}") from None
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"{field} must be a positive int or [height, width]; got {size!r}")
    return (int(pair[0]), int(pair[1]))


def canonical_size(size: int | Sequence[int], field: str = "image_size") -> int | tuple[int, int]:
    """One spelling per size: an ``int`` for square sizes, else a ``(height, width)`` tuple.

    Model and data module both store their ``image_size`` this way, so the hyper-parameters
    Lightning merges for the loggers agree however the YAML spelled the size
    (``64``, ``[64, 64]``, ``[32, 48]`` or ``(32, 48)``).
    """
    h, w = check_size(size, field)
    return h if h == w else (h, w)


def transform_for(
    size: int | tuple[int, int],
    resize: ResizePolicy = "center_crop",
    crop: Literal["center", "random"] = "center",
    **kwargs,
) -> ImageTransform:
    """The :class:`ImageTransform` of a data module's ``resize`` policy (see
    :data:`RESIZE_POLICIES`); ``crop`` places the ``center_crop`` cut (``random`` for training)."""
    if resize not in RESIZE_POLICIES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_POLICIES)}; got {resize!r}")
    if crop not in ("center", "random"):
        raise ValueError(f"crop must be 'center' or 'random'; got {crop!r}")
    mode = {"center_crop": crop, "pad": "pad", "resize": "none"}[resize]
    return ImageTransform(size, crop=mode, **kwargs)  # type: ignore[arg-type]


class ImageTransform:
    """Resize + crop/pad policy taking any image to a fixed ``(height, width)``.

    ``crop="center"`` / ``"random"``: scale the image (aspect ratio kept) by the smallest
    factor that covers the target, then cut the target out of its center / at a uniformly
    random offset. ``crop="pad"``: scale it (aspect ratio kept) by the largest factor that
    fits inside the target and pad the rest, centred, with ``pad_color``. ``crop="none"``:
    resize straight to the target, distorting the aspect ratio; nothing is cut off. An image
    already at the target size is returned unchanged.

    The work splits in two stages so that a cache can keep the expensive one:
    :meth:`resize` (decode-side, deterministic: the Pillow resize) and :meth:`place`
    (on the ``uint8`` tensor: the crop offset, which may be random, or the padding).
    ``place(u8(resize(img)))`` equals ``__call__(img)`` exactly.

    Example::

        t = ImageTransform((64, 96), crop="random")   # 64 high, 96 wide
        x = t.to_tensor(load_image("cat.jpg"))         # (3, 64, 96) in [-1, 1]
    """

    def __init__(
        self,
        size: int | tuple[int, int] = 256,
        crop: Literal["center", "random", "none", "pad"] = "center",
        resample: Literal["nearest", "bilinear", "bicubic", "lanczos", "box"] = "bicubic",
        antialias_reduce: bool = True,
        pad_color: tuple[int, int, int] = (0, 0, 0),
        min_side: int | None = None,
    ) -> None:
        """
        Args:
            size: output size; an int for square images or ``(height, width)``.
            crop: ``"center"`` or ``"random"`` (cover, then crop), ``"pad"`` (fit, then
                pad) or ``"none"`` (squash to the size).
            resample: Pillow resampling filter used for the resize.
            antialias_reduce: when shrinking by 2x or more, first reduce with a box filter
                (``Image.reduce``); faster on large photos and as alias-free.
            pad_color: RGB colour of the padding (``crop="pad"``).
            min_side: refuse (:class:`ImageTooSmallError`) source images whose shorter side
                is below this many pixels, e.g. one encoder patch; None = accept any.
        """
        if isinstance(size, int):
            size = (size, size)
        size = tuple(int(s) for s in size)  # type: ignore[assignment]
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"size must be a positive int or (height, width); got {size!r}")
        if crop not in ("center", "random", "none", "pad"):
            raise ValueError(f"crop must be one of 'center', 'random', 'none', 'pad'; got {crop!r}")
        if resample not in _RESAMPLE:
            raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}; got {resample!r}")
        if min_side is not None and min_side < 1:
            raise ValueError(f"min_side must be >= 1 or None; got {min_side}")
        self.height, self.width = size
        self.crop = crop
        self.resample = resample
        self.antialias_reduce = antialias_reduce
        self.pad_color = tuple(int(c) for c in pad_color)
        self.min_side = min_side

    @property
    def size(self) -> tuple[int, int]:
        """The output ``(height, width)``."""
        return (self.height, self.width)

    @property
    def deterministic(self) -> bool:
        """Whether the output depends on the image only (no random crop offset)."""
        return self.crop != "random"

    def __repr__(self) -> str:
        return f"ImageTransform(size={self.size}, crop={self.crop!r}, resample={self.resample!r})"

    def _resize(self, img: Image.Image, w: int, h: int) -> Image.Image:
        if (w, h) == img.size:
            return img
        reducing_gap = 2.0 if self.antialias_reduce else None
        return img.resize((w, h), _RESAMPLE[self.resample], reducing_gap=reducing_gap)

    def resize(self, img: Image.Image) -> Image.Image:
        """Stage one: RGB, then the policy's resize (cover, fit or stretch); no crop or pad yet.

        Raises:
            ImageTooSmallError: when the image's shorter side is below ``min_side``.
        """
        img = to_rgb(img)
        w, h = img.size
        if self.min_side is not None and min(w, h) < self.min_side:
            raise ImageTooSmallError(f"image is {w}x{h} (width x height), smaller than min_side={self.min_side} "
                                     f"pixels (one encoder patch); remove it or lower min_side")
        tw, th = self.width, self.height
        if (w, h) == (tw, th):
            return img
        if self.crop == "none":
            return self._resize(img, tw, th)
        if self.crop == "pad":
            scale = min(tw / w, th / h)
            return self._resize(img, min(tw, max(1, round(w * scale))), min(th, max(1, round(h * scale))))
        scale = max(tw / w, th / h)
        # ceil-ish rounding so the resized image always covers the target
        return self._resize(img, max(tw, round(w * scale)), max(th, round(h * scale)))

    def _offsets(self, rw: int, rh: int, generator: torch.Generator | None) -> tuple[int, int]:
        """(left, top) of the crop in a ``rw x rh`` image that covers the target."""
        tw, th = self.width, self.height
        if self.crop == "random":
            left = int(torch.randint(0, rw - tw + 1, (1,), generator=generator))
            top = int(torch.randint(0, rh - th + 1, (1,), generator=generator))
            return left, top
        return (rw - tw) // 2, (rh - th) // 2

    def place(self, u8: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Stage two, on a ``uint8 (3, h, w)`` tensor from :meth:`resize`: the crop (center or
        random) or the centred padding; returns ``uint8 (3, height, width)``."""
        th, tw = self.height, self.width
        rh, rw = int(u8.shape[-2]), int(u8.shape[-1])
        if (rh, rw) == (th, tw):
            return u8
        if self.crop == "pad":
            out = torch.tensor(self.pad_color, dtype=u8.dtype).view(3, 1, 1).repeat(1, th, tw)
            top, left = (th - rh) // 2, (tw - rw) // 2
            out[:, top:top + rh, left:left + rw] = u8
            return out
        if self.crop == "none":
            raise ValueError(f"place() got a {rh}x{rw} image for crop='none'; pass it through resize() first")
        left, top = self._offsets(rw, rh, generator)
        return u8[:, top:top + th, left:left + tw]

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> Image.Image:
        """Apply the policy to one image.

        Args:
            img: any PIL image (converted to RGB first).
            generator: random source for ``crop="random"`` (the global torch RNG if None,
                which DataLoader seeds per worker).
        """
        img = self.resize(img)
        tw, th = self.width, self.height
        if img.size == (tw, th):
            return img
        rw, rh = img.size
        if self.crop == "pad":
            canvas = Image.new("RGB", (tw, th), self.pad_color)
            canvas.paste(img, ((tw - rw) // 2, (th - rh) // 2))
            return canvas
        left, top = self._offsets(rw, rh, generator)
        return img.crop((left, top, left + tw, top + th))

    def to_tensor(self, img: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """Apply the policy and return ``float32 (3, height, width)`` in ``[-1, 1]``."""
        return pil_to_tensor(self(img, generator))


def pil_to_u8(img: Image.Image) -> torch.Tensor:
    """An RGB image as ``uint8 (3, H, W)`` (what caches keep: a quarter of float32's bytes)."""
    if img.mode != "RGB":
        img = to_rgb(img)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def u8_to_tensor(u8: torch.Tensor) -> torch.Tensor:
    """``uint8 (..., 3, H, W)`` -> ``float32`` in ``[-1, 1]``, exactly as :func:`pil_to_tensor`."""
    return u8.to(torch.float32).div_(127.5).sub_(1.0)
