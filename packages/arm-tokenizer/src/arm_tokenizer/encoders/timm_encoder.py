"""Any timm ViT or ConvNet as a patch-token encoder (ARM's frozen SigLIP2 tower included).

ARM encodes images with a frozen SigLIP2 vision encoder (Tschannen et al., "SigLIP 2",
https://arxiv.org/abs/2502.14786); timm ships the family, e.g.
``vit_base_patch16_siglip_224.v2_webli`` or ``vit_so400m_patch16_siglip_512.v2_webli``.

- Weights: ``pretrained=True`` downloads them from the Hugging Face hub (timm's own code
  path); ``checkpoint_path`` loads a local state dict (``.safetensors``, or ``.pt``/``.pth``
  read with ``weights_only=True``) into the timm model, strictly — for example the image
  tower of the small SigLIP-style teacher trained on ShapesWorld.
- Features: the output of block/stage ``feature_layer`` through timm's
  ``forward_intermediates`` (ViTs: prefix/class tokens dropped; ConvNets: the feature map
  flattened), returned as patch tokens ``(B, N, C)`` in row-major grid order. Blocks after
  ``feature_layer`` and the classifier head are pruned (never computed, never stored).
- Normalization: inputs are the tokenizer's [-1, 1] images; ``forward`` maps them to the
  backbone's pretrained mean/std (timm's ``resolve_model_data_config``; SigLIP uses 0.5/0.5,
  i.e. exactly [-1, 1]).

A tokenizer saved with ``save_pretrained`` stores these encoder weights in its own
``model.safetensors`` (frozen or not) and records ``checkpoint_path=None, pretrained=False``
in its config, so the saved directory is self-contained (``weight_source_args``).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file

from arm_tokenizer.encoders.base import Encoder
from arm_tokenizer.framework.hub import (
    HubUnavailableError,
    hub_unreachable_reason,
    timm_cached_weights,
)

__all__ = ["TimmEncoder", "load_state_dict_file"]


def load_state_dict_file(path: str | os.PathLike, prefix: str = "") -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``).

    Torch files wrapping the weights under ``state_dict``/``model`` are unwrapped. With
    ``prefix``, only keys starting with it are kept, and it is stripped.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint_path {path!r} does not exist")
    if path.endswith(".safetensors"):
        sd: Any = load_file(path, device="cpu")
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
        for key in ("state_dict", "model"):
            if isinstance(sd, dict) and isinstance(sd.get(key), dict):
                sd = sd[key]
    if not isinstance(sd, dict):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(sd).__name__}")
    if prefix:
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sd:
            raise ValueError(f"{path}: no keys start with checkpoint_prefix {prefix!r}")
    return sd


def _pretrained_overlay(model_name: str) -> dict[str, Any]:
    """Where timm's hub download cannot work, fail in one line now (timm would retry the
    hub for about a minute); where the weights are cached and the hub is unreachable, point
    timm at the cached file so it never tries the network."""
    cached = timm_cached_weights(model_name)
    if cached is None:  # not a hub tag: timm's own URL download and error
        return {}
    reason = hub_unreachable_reason()
    if reason is None:
        return {}
    if cached:
        return {"pretrained_cfg_overlay": {"file": cached}}
    raise HubUnavailableError(
        f"TimmEncoder: pretrained weights of {model_name!r} are not in the local Hugging Face cache and "
        f"{reason}; pass checkpoint_path= to a local state dict (.safetensors/.pt), download them where "
        "there is internet, or set pretrained=False"
    )


def _onto_grid(m: torch.Tensor, fold: int) -> torch.Tensor:
    """A ``(B, C, H, W)`` map onto the token grid: folded by ``fold > 1`` (space-to-depth),
    repeated by ``-fold`` when it is coarser (nearest), as is when ``fold == 1``."""
    if fold > 1:
        return torch.nn.functional.pixel_unshuffle(m, fold)
    if fold < -1:
        return m.repeat_interleave(-fold, -2).repeat_interleave(-fold, -1)
    return m


def _format_keys(keys: list[str], limit: int = 20) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


class TimmEncoder(Encoder):
    """A timm backbone returning the patch tokens of one block/stage.

    Args:
        model_name: any ``timm.list_models()`` name, optionally with a pretrained tag
            (``vit_base_patch16_siglip_224.v2_webli``, ``resnet50.a1_in1k``, ``test_vit``).
        pretrained: download the tag's weights from the hub (needs internet).
        checkpoint_path: local state dict loaded into the model after creation (strict;
            the error lists missing/unexpected keys). Takes precedence over ``pretrained``.
        checkpoint_prefix: keep only the checkpoint keys with this prefix, stripped
            (e.g. ``"visual."`` for a dual-encoder checkpoint).
        frozen: freeze the weights (no gradients, always eval mode), as ARM does.
        feature_layer: which block (ViT) or stage (ConvNet) to take, Python-style index
            (-1 = last; -2 = second to last, ...).
        final_norm: apply the backbone's final norm to the taken features (ViTs).
        img_size: input resolution for ViTs (the position-embedding grid); None = the
            model's default. Ignored by ConvNets, which take any multiple of their stride.
        model_kwargs: extra ``timm.create_model`` arguments (e.g. ``{"depth": 2}`` or
            ``{"dynamic_img_size": true}``).
        extra_layers: other blocks/stages whose features are appended to each token's
            channels, after ``feature_layer``'s (whose grid the tokens keep). ConvNets: a finer
            map is folded onto the token grid by space-to-depth (a stride-2 stem under
            stride-4 tokens adds ``4 C`` channels), a coarser one repeated onto it (nearest).
            A semantic last stage keeps *what* is where but little of the outline; the early
            stages keep the outline (``experiments/feature_levels.py``). Empty: none.
    """

    weight_source_args: ClassVar[dict[str, Any]] = {"pretrained": False, "checkpoint_path": None}

    def __init__(
        self,
        model_name: str = "vit_base_patch16_siglip_224.v2_webli",
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        checkpoint_prefix: str = "",
        frozen: bool = True,
        feature_layer: int = -1,
        final_norm: bool = True,
        img_size: int | None = None,
        model_kwargs: dict[str, Any] | None = None,
        extra_layers: list[int] | None = None,
    ) -> None:
        super().__init__()
        # deferred: timm takes seconds to import, and discovery imports every registered class
        import timm
        from timm.data import resolve_model_data_config

        kwargs = dict(model_kwargs or {})
        if img_size is not None:
            kwargs["img_size"] = img_size
        self.model_name = model_name
        download = pretrained and checkpoint_path is None
        if download:
            kwargs.update(_pretrained_overlay(model_name))
        try:
            model = timm.create_model(model_name, pretrained=download, num_classes=0, **kwargs)
        except RuntimeError as e:
            if "Unknown model" in str(e):
                close = timm.list_models(f"*{model_name.split('.')[0].split('_')[0]}*")[:8]
                raise ValueError(f"unknown timm model {model_name!r}; similar: {close}") from None
            raise
        except TypeError as e:
            raise ValueError(f"timm model {model_name!r} rejected its arguments {sorted(kwargs)}: {e}") from None
        except OSError as e:  # hub download without network
            raise OSError(
                f"could not download pretrained weights for {model_name!r} ({e}); pass "
                "checkpoint_path= to a local state dict or pretrained=False"
            ) from e
        if checkpoint_path is not None:
            sd = load_state_dict_file(checkpoint_path, checkpoint_prefix)
            missing, unexpected = model.load_state_dict(sd, strict=False)
            if missing or unexpected:
                raise KeyError(
                    f"checkpoint {checkpoint_path!r} does not match timm model {model_name!r} "
                    f"(kwargs {kwargs}): missing keys [{_format_keys(list(missing))}]; "
                    f"unexpected keys [{_format_keys(list(unexpected))}]"
                )
        if not hasattr(model, "forward_intermediates"):
            raise ValueError(f"timm model {model_name!r} has no forward_intermediates(); pick another backbone")

        info = list(getattr(model, "feature_info", []))
        n_layers = len(model.blocks) if hasattr(model, "blocks") and hasattr(model, "patch_embed") else len(info)
        if not -n_layers <= feature_layer < n_layers:
            raise ValueError(f"feature_layer {feature_layer} out of range for {model_name!r} with {n_layers} layers")
        layer = feature_layer % n_layers
        extras = self._check_extras(extra_layers or [], n_layers, layer, model_name)
        # Prune what comes after the last taken layer: never computed, never stored.
        self._take = list(model.prune_intermediate_layers(sorted({layer, *extras}), prune_norm=not final_norm,
                                                          prune_head=True))
        # where each taken map lands in forward_intermediates' output (sorted by depth)
        self._order = [self._take.index(i) for i in (layer, *extras)]
        self.extra_layers = list(extra_layers or [])
        self.final_norm = final_norm
        self.model = model
        self.feature_layer = feature_layer

        self.is_vit = hasattr(model, "patch_embed") and hasattr(model, "blocks")
        if self.is_vit:
            ps = model.patch_embed.patch_size
            self.patch_size = int(ps[0] if isinstance(ps, (tuple, list)) else ps)
            self.out_dim = int(getattr(model, "embed_dim", model.num_features))
            size = getattr(model.patch_embed, "img_size", None)
            self._fixed_size = (
                None if getattr(model.patch_embed, "dynamic_img_pad", False) or getattr(model, "dynamic_img_size", False)
                or size is None else tuple(int(s) for s in size)
            )
        else:
            self.patch_size = int(info[layer]["reduction"])
            self.out_dim = int(info[layer]["num_chs"])
            self._fixed_size = None
        # how each extra layer meets the token grid: folded by f > 1, repeated by -f (coarser)
        self._folds: list[int] = []
        for d in extras:
            ratio = 1.0 if self.is_vit else self.patch_size / int(info[d]["reduction"])
            chs = self.out_dim if self.is_vit else int(info[d]["num_chs"])
            fold = round(ratio) if ratio >= 1 else -round(1 / ratio)
            self._folds.append(fold)
            self.out_dim += chs * fold * fold if fold > 0 else chs

        cfg = resolve_model_data_config(model)
        mean = torch.tensor(cfg.get("mean", (0.5, 0.5, 0.5)), dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(cfg.get("std", (0.5, 0.5, 0.5)), dtype=torch.float32).view(1, 3, 1, 1)
        # x in [-1,1] -> (x01 - mean) / std with x01 = (x + 1) / 2, folded into scale/shift.
        self.register_buffer("in_scale", 0.5 / std, persistent=False)
        self.register_buffer("in_shift", (0.5 - mean) / std, persistent=False)
        if frozen:
            self.freeze()

    @staticmethod
    def _check_extras(extras: list[int], n_layers: int, layer: int, model_name: str) -> list[int]:
        out: list[int] = []
        for d in extras:
            if not -n_layers <= d < n_layers or d % n_layers == layer or d % n_layers in out:
                raise ValueError(f"TimmEncoder({model_name}).extra_layers: {d} must name a layer of the "
                                 f"{n_layers}, other than feature_layer ({layer}) and not twice")
            out.append(d % n_layers)
        return out

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        return {"model_name": "test_vit", "img_size": 32, "frozen": False,
                "model_kwargs": {"depth": 2, "patch_size": 8, "embed_dim": 32, "num_heads": 2}}

    @property
    def default_image_size(self) -> tuple[int, int] | None:
        """The input size a ViT without dynamic sizes requires (None: any multiple of patch_size)."""
        return self._fixed_size

    def check_images(self, images: torch.Tensor) -> None:
        super().check_images(images)
        if self._fixed_size is not None and tuple(images.shape[-2:]) != self._fixed_size:
            h, w = self._fixed_size
            raise ValueError(
                f"TimmEncoder({self.model_name}) expects images (B, 3, {h}, {w}) (its img_size), got "
                f"{tuple(images.shape)}; set img_size= or model_kwargs={{'dynamic_img_size': True}}"
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            self.check_images(images)
        x = images * self.in_scale.to(images.dtype) + self.in_shift.to(images.dtype)
        maps = self.model.forward_intermediates(
            x, indices=self._take, norm=self.final_norm, stop_early=True,
            output_fmt="NCHW", intermediates_only=True,
        )
        feats = maps[self._order[0]]
        if self._folds:  # extra layers onto the token grid: finer folded (space-to-depth), coarser repeated
            extra = [maps[i] for i in self._order[1:]]
            feats = torch.cat([feats, *(_onto_grid(m, f) for m, f in zip(extra, self._folds, strict=True))], dim=1)
        return feats.flatten(2).transpose(1, 2)  # (B, C, h, w) -> (B, h*w, C)

    def extra_repr(self) -> str:
        return (f"model_name={self.model_name!r}, feature_layer={self.feature_layer}, "
                f"out_dim={self.out_dim}, patch_size={self.patch_size}, frozen={self.frozen}"
                + (f", extra_layers={self.extra_layers}" if self.extra_layers else ""))
