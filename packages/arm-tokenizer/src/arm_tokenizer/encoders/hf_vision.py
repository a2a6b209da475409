"""SigLIP, SigLIP2 and CLIP vision towers in Hugging Face transformers format (``hf_vision``).

ARM encodes images with a frozen SigLIP2 vision tower (Tschannen et al., "SigLIP 2",
https://arxiv.org/abs/2502.14786); its released checkpoints are in transformers format,
e.g. ``google/siglip2-so400m-patch16-512``. This encoder loads such a checkpoint (a local
directory or a hub id, ``name_or_path`` as in transformers; a whole dual encoder or the
vision tower alone) and returns its last layer's patch tokens ``(B, h*w, C)`` in row-major
grid order (the encoder contract of :mod:`arm_tokenizer.encoders.base`).

Any resolution and aspect ratio the model supports:

- SigLIP / CLIP: fixed-size position grids, bicubically interpolated to the image's patch
  grid (transformers' ``interpolate_pos_encoding``); CLIP's class token is dropped and its
  ``post_layernorm`` applied to the patch tokens (SigLIP's last hidden state has it already).
- SigLIP2 (NaFlex): the image is cut into ``patch x patch`` pixel patches (the layout of
  transformers' ``Siglip2ImageProcessor``), passed with ``spatial_shapes = (h, w)`` and an
  all-ones ``pixel_attention_mask``, so the learned position grid is resized to exactly the
  image's grid; no padding patches. At most ``max_num_patches`` patches (the checkpoint's
  ``preprocessor_config.json``, 256 by default as in transformers).

A size the tower cannot take (not a multiple of the patch, smaller than one patch, more
patches than a NaFlex model's maximum) is refused at construction for ``image_size``, and
again for any other size given to ``forward``. The image-embedding head (SigLIP's
attention-pooling head, CLIP's ``visual_projection``) is never computed by ``forward``: the
tokenizer uses patch tokens only, so by default it is removed (not stored either). With
``keep_head=True`` it is kept for :meth:`HFVisionEncoder.embed_images`, the model's own
L2-normalised image embedding (what transformers' ``get_image_features`` returns, normalised),
so ``hf_vision`` + ``hf_text`` form the checkpoint's dual encoder (e.g. the T2I alignment
scorer of ``arm-lm evaluate``). Inputs are the tokenizer's ``[-1, 1]`` images; ``forward`` maps
them to the checkpoint's mean/std (its ``preprocessor_config.json``, else the family's).

A tokenizer saved with ``save_pretrained`` stores these weights in its own
``model.safetensors``; its portable config replaces ``name_or_path`` by the tower's
``hf_config`` (architecture only), so the export loads with no checkpoint and no internet.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch

from arm_tokenizer import hf_towers as hft  # imports transformers lazily: an optional extra
from arm_tokenizer.encoders.base import Encoder
from arm_tokenizer.testing.hf_tiny import tiny_hf_dir

__all__ = ["HFVisionEncoder"]

COMPONENT = "hf_vision"
NAFLEX_DEFAULT_MAX_PATCHES = 256  # transformers' Siglip2ImageProcessor default


def _pair(size: int | tuple[int, int] | list[int], what: str) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    if isinstance(size, (tuple, list)) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return int(size[0]), int(size[1])
    raise ValueError(f"{COMPONENT}: {what} must be an int or [height, width], got {size!r}")


class HFVisionEncoder(Encoder):
    """A transformers SigLIP / SigLIP2 / CLIP vision tower returning its patch tokens.

    Args:
        name_or_path: a local checkpoint directory or a Hugging Face hub id (as in
            transformers' ``from_pretrained``), holding a dual encoder or its vision tower.
            Hub ids are looked up in the local cache first; ``HF_HUB_OFFLINE=1`` is honoured.
        image_size: the input size, ``int`` (square) or ``[height, width]``, checked at
            construction; None = the tower's native size. Other valid sizes still work.
        frozen: freeze the tower (no gradients, always eval mode), as ARM does.
        dtype: weights and compute dtype: ``float32``, ``bfloat16`` or ``float16``
            (features are returned in the input's dtype).
        device: move the tower there at construction (e.g. ``cuda``); None = leave it on the
            CPU (Lightning moves it with the model).
        max_num_patches: NaFlex (SigLIP2) only: the most patches an image may have; None = the
            checkpoint's ``preprocessor_config.json``, else 256.
        image_mean: per-channel mean the tower expects (pixels in [0, 1]); None = the
            checkpoint's image-processor config, else the family's.
        image_std: per-channel std, as ``image_mean``.
        hf_config: the vision tower's transformers config as a dict, to build it with random
            weights instead of loading ``name_or_path`` (what portable exports record; the
            weights then come from the export's ``model.safetensors``).
        keep_head: keep the image-embedding head (SigLIP / SigLIP2: the attention-pooling head;
            CLIP: ``visual_projection``) for :meth:`embed_images`. Default False because the
            tokenizer never uses it (it only takes patch tokens); ``forward`` never computes it.
    """

    weight_source_args: ClassVar[dict[str, Any]] = {"name_or_path": None}

    def __init__(
        self,
        name_or_path: str | None = None,
        image_size: int | tuple[int, int] | None = None,
        frozen: bool = True,
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        device: str | None = None,
        max_num_patches: int | None = None,
        image_mean: tuple[float, float, float] | None = None,
        image_std: tuple[float, float, float] | None = None,
        hf_config: dict[str, Any] | None = None,
        keep_head: bool = False,
    ) -> None:
        super().__init__()
        torch_dtype = hft.parse_dtype(dtype, COMPONENT)
        if max_num_patches is not None and (isinstance(max_num_patches, bool) or not isinstance(max_num_patches, int)
                                            or max_num_patches < 1):
            raise ValueError(f"{COMPONENT}: max_num_patches must be a positive int, got {max_num_patches!r}")
        if (name_or_path is None) == (hf_config is None):
            raise ValueError(f"{COMPONENT}: pass exactly one of name_or_path (a checkpoint directory or hub id) "
                             "and hf_config (a saved tower config)")
        preprocessor: dict[str, Any] = {}
        if name_or_path is not None:
            tower = hft.resolve_tower(name_or_path, "vision", COMPONENT, with_head=keep_head)
            family, config = tower.family, tower.config
            preprocessor = hft.read_preprocessor_config(name_or_path, tower.local_files_only)
            model = None  # loaded once the size is known to fit (fail before reading weights)
        else:
            hft.import_transformers(COMPONENT)
            model = hft.build_tower_from_config(hf_config, "vision", COMPONENT, torch_dtype, with_head=keep_head)
            config = model.config
            family = config.model_type.removesuffix("_vision_model")
        spec = hft.FAMILIES[family]
        self.family = family
        self.name_or_path = name_or_path
        self.patch_size = int(config.patch_size)
        self.out_dim = int(config.hidden_size)
        self.naflex = family == "siglip2"
        if self.naflex:
            native_side = int(round(config.num_patches ** 0.5)) * self.patch_size
            self.max_num_patches = int(max_num_patches or preprocessor.get("max_num_patches")
                                       or NAFLEX_DEFAULT_MAX_PATCHES)
        else:
            native_side = int(config.image_size)
            self.max_num_patches = None
        self.image_size = _pair(image_size, "image_size") if image_size is not None else (native_side, native_side)
        self._check_size(*self.image_size, "image_size")

        if model is None:
            model = hft.load_tower(name_or_path, tower, "vision", COMPONENT, torch_dtype)
        vm = getattr(model, "vision_model", model)  # transformers 4.x wraps the tower, 5.x does not
        if keep_head and family != "clip" and not getattr(vm, "use_head", False):
            raise ValueError(f"{COMPONENT}: keep_head=True, but the {spec.label} vision tower of "
                             f"{name_or_path or 'hf_config'} has no attention-pooling head (vision_use_head is false)")
        if getattr(vm, "use_head", False):  # the pooling head: forward never computes it
            vm.use_head = False
            if not keep_head:  # nor is it stored unless embed_images needs it
                del vm.head
        self.keep_head = bool(keep_head)
        self.model = model
        self.hf_config = model.config.to_dict()
        self.dtype = dtype

        mean = image_mean if image_mean is not None else preprocessor.get("image_mean", spec.mean)
        std = image_std if image_std is not None else preprocessor.get("image_std", spec.std)
        self.image_mean = [float(m) for m in mean]
        self.image_std = [float(s) for s in std]
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ValueError(f"{COMPONENT}: image_mean/image_std must be 3 numbers (std > 0), got "
                             f"{self.image_mean} / {self.image_std}")
        m = torch.tensor(self.image_mean).view(1, 3, 1, 1)
        s = torch.tensor(self.image_std).view(1, 3, 1, 1)
        # x in [-1,1] -> (x01 - mean) / std with x01 = (x + 1) / 2, folded into scale/shift.
        self.register_buffer("in_scale", 0.5 / s, persistent=False)
        self.register_buffer("in_shift", (0.5 - m) / s, persistent=False)
        if device is not None:
            self.to(device)
        if frozen:
            self.freeze()

    # ------------------------------------------------------------------ sizes
    def _check_size(self, height: int, width: int, what: str) -> None:
        p = self.patch_size
        name = f"{COMPONENT} ({self.family}, {self.name_or_path or 'hf_config'})"
        if height < p or width < p:
            raise ValueError(f"{name}: {what} {height}x{width} is smaller than one {p}x{p} patch")
        if height % p or width % p:
            raise ValueError(f"{name}: {what} {height}x{width} is not a multiple of the patch size {p}; "
                             f"use e.g. {height // p * p or p}x{width // p * p or p}")
        n = (height // p) * (width // p)
        if self.max_num_patches is not None and n > self.max_num_patches:
            raise ValueError(f"{name}: {what} {height}x{width} makes {n} patches of {p}x{p}, more than this "
                             f"NaFlex model's max_num_patches {self.max_num_patches}")

    @property
    def default_image_size(self) -> tuple[int, int]:
        """The size checked at construction (``image_size``)."""
        return self.image_size

    def check_images(self, images: torch.Tensor) -> None:
        super().check_images(images)
        if tuple(images.shape[-2:]) != self.image_size:
            self._check_size(int(images.shape[-2]), int(images.shape[-1]), "image size")

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            self.check_images(images)
        x = (images * self.in_scale.to(images.dtype) + self.in_shift.to(images.dtype)).to(self.model.dtype)
        tokens = self._run_tower(x)[0].last_hidden_state
        if self.family == "clip":  # class token first; CLIP normalises only its pooled output
            tokens = self._tower.post_layernorm(tokens[:, 1:])
        return tokens.to(images.dtype)

    @property
    def has_image_head(self) -> bool:
        """Whether :meth:`embed_images` works (``keep_head=True``)."""
        return self.keep_head

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 3, H, W)`` in ``[-1, 1]`` -> the model's own image embedding ``(B, E)``,
        L2-normalised, float32: SigLIP / SigLIP2 the attention-pooling head's output, CLIP
        ``visual_projection`` of the pooled class token (transformers' ``get_image_features``)."""
        if not self.keep_head:
            raise RuntimeError(f"{COMPONENT} ({self.family}, {self.name_or_path or 'hf_config'}): embed_images needs "
                               "the image-embedding head; build the encoder with keep_head=True")
        if not torch.compiler.is_compiling():
            self.check_images(images)
        x = (images * self.in_scale.to(images.dtype) + self.in_shift.to(images.dtype)).to(self.model.dtype)
        out, mask = self._run_tower(x)
        if self.family == "clip":
            emb = self.model.visual_projection(out.pooler_output)
        elif self.naflex:
            emb = self._tower.head(out.last_hidden_state, mask)
        else:
            emb = self._tower.head(out.last_hidden_state)
        return torch.nn.functional.normalize(emb.float(), dim=-1)

    def _run_tower(self, x: torch.Tensor) -> tuple[Any, torch.Tensor | None]:
        """The tower's output (no head) for normalised pixels, and the NaFlex patch mask."""
        if self.naflex:
            return self._forward_naflex(x)
        # The tower itself, not CLIPVisionModelWithProjection: its projection is not wanted here.
        return self._tower(pixel_values=x, interpolate_pos_encoding=True), None

    @property
    def _tower(self) -> torch.nn.Module:
        return getattr(self.model, "vision_model", self.model)

    def _forward_naflex(self, x: torch.Tensor) -> tuple[Any, torch.Tensor]:
        b, c, height, width = x.shape
        p = self.patch_size
        h, w = height // p, width // p
        # (B, C, h, p, w, p) -> (B, h, w, p, p, C) -> (B, h*w, p*p*C): Siglip2ImageProcessor's layout.
        patches = x.reshape(b, c, h, p, w, p).permute(0, 2, 4, 3, 5, 1).reshape(b, h * w, p * p * c)
        mask = torch.ones(b, h * w, dtype=torch.long, device=x.device)
        shapes = torch.tensor([[h, w]], dtype=torch.long, device=x.device).expand(b, 2)
        return self.model(pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=shapes), mask

    # ------------------------------------------------------------------ config
    @classmethod
    def example_args(cls) -> dict[str, Any]:
        return {"name_or_path": tiny_hf_dir("siglip2"), "image_size": [16, 24], "frozen": False}

    def get_config(self, portable: bool = False) -> dict[str, Any]:
        cfg = super().get_config(portable=portable)
        if portable:
            # Rebuild from the architecture alone: the weights travel in the export.
            args = cfg["init_args"]
            args.update(hf_config=self.hf_config, image_mean=self.image_mean, image_std=self.image_std,
                        image_size=list(self.image_size), device=None)
            if self.naflex:
                args["max_num_patches"] = self.max_num_patches
        return cfg

    def extra_repr(self) -> str:
        return (f"family={self.family}, name_or_path={self.name_or_path!r}, image_size={self.image_size}, "
                f"out_dim={self.out_dim}, patch_size={self.patch_size}, frozen={self.frozen}, "
                f"keep_head={self.keep_head}")
