"""Hugging Face import/export for Qwen2 and Llama checkpoints (local directories only).

A checkpoint directory holds ``config.json`` and either ``model.safetensors`` or sharded
``model-0000i-of-0000n.safetensors`` files with ``model.safetensors.index.json``. The
converter is chosen by the config's ``model_type`` (never by name prefixes), and each
family has a literal weight map from HF key templates to ours (``{}`` = layer index).
Our module names follow HF's, so every transform is the identity; RoPE uses HF's
half-split convention, so no q/k permutation is needed either.

Features we do not implement are refused with a clear error instead of loading a model
that silently computes something else: sliding-window attention, rope scaling other than
``llama3``, attention/MLP biases beyond Qwen2's q/k/v bias, activations other than SiLU,
mixture-of-experts families.

ARM's multimodal models export as plain HF models with the full unified vocabulary: the
separate visual head's rows are written into ``lm_head`` at the image-code ids (the logits
are identical), and ``arm_config.json`` beside ``config.json`` records the layout so
:func:`load_hf` splits the head again.

The weight maps are those of the built-in LM, :class:`arm_core.model.GPT` (registry kind
``lm``, name ``gpt``): :func:`load_hf` always builds that class, whatever other LMs plugins
register, and its exports (``save_lm``) record ``gpt``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from arm_tokenizer.framework.checkpoint import atomic_path, atomic_write_bytes
from safetensors import safe_open
from safetensors.torch import save_file

from arm_core.config import SUPPORTED_ROPE_SCALING, Config
from arm_core.model import GPT, rope_inv_freq

__all__ = ["WEIGHT_MAPS", "SUPPORTED_MODEL_TYPES", "UnsupportedCheckpointError",
           "config_from_hf", "config_to_hf", "load_hf", "save_hf", "load_hf_state_dict"]

_LAYER = {
    "model.layers.{}.input_layernorm.weight": "layers.{}.input_layernorm.weight",
    "model.layers.{}.self_attn.q_proj.weight": "layers.{}.self_attn.q_proj.weight",
    "model.layers.{}.self_attn.k_proj.weight": "layers.{}.self_attn.k_proj.weight",
    "model.layers.{}.self_attn.v_proj.weight": "layers.{}.self_attn.v_proj.weight",
    "model.layers.{}.self_attn.o_proj.weight": "layers.{}.self_attn.o_proj.weight",
    "model.layers.{}.post_attention_layernorm.weight": "layers.{}.post_attention_layernorm.weight",
    "model.layers.{}.mlp.gate_proj.weight": "layers.{}.mlp.gate_proj.weight",
    "model.layers.{}.mlp.up_proj.weight": "layers.{}.mlp.up_proj.weight",
    "model.layers.{}.mlp.down_proj.weight": "layers.{}.mlp.down_proj.weight",
    # old checkpoints store the rotary table; we recompute it
    "model.layers.{}.self_attn.rotary_emb.inv_freq": None,
}
_GLOBAL = {
    "model.embed_tokens.weight": "embed_tokens.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "lm_head.weight",
}

#: HF ``model_type`` -> {HF key template: our key template (None = drop)}.
WEIGHT_MAPS: dict[str, dict[str, str | None]] = {
    "llama": {**_GLOBAL, **_LAYER},
    "qwen2": {
        **_GLOBAL, **_LAYER,
        "model.layers.{}.self_attn.q_proj.bias": "layers.{}.self_attn.q_proj.bias",
        "model.layers.{}.self_attn.k_proj.bias": "layers.{}.self_attn.k_proj.bias",
        "model.layers.{}.self_attn.v_proj.bias": "layers.{}.self_attn.v_proj.bias",
    },
}
SUPPORTED_MODEL_TYPES = tuple(WEIGHT_MAPS)
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
ARM_CONFIG = "arm_config.json"


class UnsupportedCheckpointError(ValueError):
    """The checkpoint uses a feature this converter does not implement."""


def _rope(hf: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """``(rope_theta, rope_scaling)`` from a v4 (``rope_theta`` + ``rope_scaling``) or
    v5 (``rope_parameters``) style config."""
    params = dict(hf.get("rope_parameters") or {})
    theta = float(params.pop("rope_theta", hf.get("rope_theta", 10000.0)))
    scaling = hf.get("rope_scaling") or (params or None)
    if scaling is None:
        return theta, None
    scaling = {k: v for k, v in scaling.items() if k != "rope_theta"}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind not in SUPPORTED_ROPE_SCALING:
        raise UnsupportedCheckpointError(
            f"rope scaling type {kind!r} is not implemented (supported: "
            f"{list(SUPPORTED_ROPE_SCALING)}); remove rope_scaling or convert another checkpoint")
    if kind == "default":
        return theta, None
    if float(scaling.get("attention_factor") or 1.0) != 1.0:
        raise UnsupportedCheckpointError("rope attention_factor != 1 is not implemented")
    return theta, {"rope_type": kind, **{k: scaling[k] for k in (
        "factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")}}


def config_from_hf(hf: dict[str, Any], name: str = "hf") -> Config:
    """Translate a HF ``config.json`` dict into our :class:`Config` (text-only layout)."""
    mt = hf.get("model_type")
    if mt not in WEIGHT_MAPS:
        raise UnsupportedCheckpointError(
            f"model_type {mt!r} is not supported; supported: {list(SUPPORTED_MODEL_TYPES)}"
            + (" (mixture-of-experts models are not implemented)" if mt and "moe" in mt else ""))
    if hf.get("num_experts") or hf.get("num_local_experts"):
        raise UnsupportedCheckpointError("mixture-of-experts checkpoints are not supported")
    if hf.get("hidden_act", "silu") != "silu":
        raise UnsupportedCheckpointError(f"hidden_act {hf['hidden_act']!r} is not supported (only silu)")
    if hf.get("use_sliding_window"):
        raise UnsupportedCheckpointError("sliding-window attention (use_sliding_window=true) "
                                         "is not implemented")
    lt = hf.get("layer_types")
    if lt and any(t != "full_attention" for t in lt):
        raise UnsupportedCheckpointError(f"layer_types {sorted(set(lt))}: only full_attention "
                                         "is implemented")
    if mt == "llama" and hf.get("attention_bias"):
        raise UnsupportedCheckpointError("Llama attention_bias=true (bias on q/k/v/o) is not "
                                         "implemented; only Qwen2-style q/k/v bias")
    if hf.get("mlp_bias"):
        raise UnsupportedCheckpointError("mlp_bias=true is not implemented")
    theta, scaling = _rope(hf)
    n_head = int(hf["num_attention_heads"])
    return Config(
        name=name, vocab_size=int(hf["vocab_size"]), n_layer=int(hf["num_hidden_layers"]),
        n_head=n_head, n_query_groups=int(hf.get("num_key_value_heads") or n_head),
        n_embd=int(hf["hidden_size"]),
        head_size=int(hf.get("head_dim") or hf["hidden_size"] // n_head),
        intermediate_size=int(hf["intermediate_size"]), rope_theta=theta, rope_scaling=scaling,
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)), qkv_bias=mt == "qwen2",
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        max_seq_len=int(hf.get("max_position_embeddings", 4096)))


def config_to_hf(config: Config, model_type: str | None = None,
                 dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Translate our :class:`Config` into a HF ``config.json`` dict (read by transformers
    v4 through ``rope_theta``/``rope_scaling`` and by v5 through ``rope_parameters``)."""
    model_type = model_type or ("qwen2" if config.qkv_bias else "llama")
    if model_type not in WEIGHT_MAPS:
        raise UnsupportedCheckpointError(f"cannot export as {model_type!r}; supported: "
                                         f"{list(SUPPORTED_MODEL_TYPES)}")
    if model_type == "llama" and config.qkv_bias:
        raise UnsupportedCheckpointError("a model with q/k/v bias exports as qwen2, not llama")
    if model_type == "qwen2" and not config.qkv_bias:
        raise UnsupportedCheckpointError("Qwen2 always has q/k/v bias; export this model as llama")
    if config.image_position_slots:
        raise UnsupportedCheckpointError(
            f"image_position_slots={config.image_position_slots}: learned image positions have "
            "no Hugging Face Qwen2/Llama equivalent; export a model without them")
    if config.separate_visual_head and config.tie_embeddings:
        raise UnsupportedCheckpointError("a tied model with a separate visual head has no HF "
                                         "equivalent (its lm_head would differ from the embedding)")
    rope_params = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling:
        rope_params = {**config.rope_scaling, "rope_theta": config.rope_theta}
    hf: dict[str, Any] = {
        "architectures": [_ARCHITECTURES[model_type]], "model_type": model_type,
        "vocab_size": config.vocab_size, "hidden_size": config.n_embd,
        "intermediate_size": config.intermediate_size, "num_hidden_layers": config.n_layer,
        "num_attention_heads": config.n_head, "num_key_value_heads": config.n_query_groups,
        "head_dim": config.head_size, "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len, "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta, "rope_scaling": config.rope_scaling,
        "rope_parameters": rope_params, "tie_word_embeddings": config.tie_embeddings,
        "attention_dropout": 0.0, "initializer_range": config.init_std, "use_cache": True,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    if model_type == "llama":
        hf.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
    else:
        hf.update(use_sliding_window=False, sliding_window=None,
                  max_window_layers=config.n_layer)
    return hf


def _weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [path / s for s in shards]
    elif (path / "model.safetensors").exists():
        files = [path / "model.safetensors"]
    else:
        raise FileNotFoundError(f"{path}: no model.safetensors or model.safetensors.index.json "
                                "(only safetensors checkpoints are read; convert .bin first)")
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"{path}: shards listed in the index are missing: {missing}")
    return files


def _hf_to_ours_key(key: str, wmap: dict[str, str | None]) -> tuple[bool, str | None]:
    """Map one HF key through the literal template map: ``(known, our_key_or_None)``."""
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", key)
    template, layer = (f"model.layers.{{}}.{m.group(2)}", m.group(1)) if m else (key, None)
    if template not in wmap:
        return False, None
    ours = wmap[template]
    return True, (ours.format(layer) if ours and layer is not None else ours)


def load_hf_state_dict(path: str | Path, model_type: str,
                       dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Read every shard and rename keys to ours (no model built)."""
    wmap = WEIGHT_MAPS[model_type]
    sd: dict[str, torch.Tensor] = {}
    unknown = []
    for f in _weight_files(Path(path)):
        with safe_open(str(f), framework="pt") as fh:
            for key in fh.keys():
                known, ours = _hf_to_ours_key(key, wmap)
                if not known:
                    unknown.append(key)
                elif ours is not None:
                    t = fh.get_tensor(key)
                    sd[ours] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    if unknown:
        raise UnsupportedCheckpointError(
            f"{path}: {len(unknown)} weights have no mapping for model_type {model_type!r}, "
            f"e.g. {unknown[:4]}; the checkpoint uses features this converter does not know")
    return sd


def load_hf(path: str | Path, dtype: torch.dtype | None = None,
            device: torch.device | str = "cpu", max_seq_len: int | None = None) -> GPT:
    """Build a :class:`GPT` from a local HF Qwen2/Llama checkpoint directory.

    Args:
        path: Directory with ``config.json`` and safetensors weights.
        dtype: Cast floating weights (``None``: keep the checkpoint's).
        device: Where to put the model.
        max_seq_len: Override the context length (``max_position_embeddings``).

    The model is created on the meta device and the tensors are assigned directly
    (``assign=True``): no random init, no second copy of the weights.
    """
    path = Path(path)
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"{path}: no config.json (expected a HF model directory)")
    hf = json.loads((path / "config.json").read_text())
    config = config_from_hf(hf, name=path.name)
    if max_seq_len is not None:
        config = Config.from_dict({**config.to_dict(), "max_seq_len": max_seq_len})
    sd = load_hf_state_dict(path, hf["model_type"], dtype)
    if config.tie_embeddings:
        sd.pop("lm_head.weight", None)
    arm_file = path / ARM_CONFIG
    if arm_file.exists():                           # an ARM export: restore the layout
        arm = Config.load(arm_file)
        if arm.vocab_size != config.vocab_size:
            raise ValueError(f"{arm_file}: vocab_size {arm.vocab_size} disagrees with "
                             f"config.json's {config.vocab_size}")
        config = Config.from_dict({**config.to_dict(), **{k: getattr(arm, k) for k in (
            "name", "text_vocab_size", "image_offset", "image_codebook_size",
            "separate_visual_head")}})
        if config.separate_visual_head:
            full = sd.pop("lm_head.weight")
            sd["visual_head.weight"] = full[config.image_offset:config.image_end]
            sd["lm_head.weight"] = torch.cat([full[:config.image_offset], full[config.image_end:]])
    with torch.device("meta"):
        model = GPT(config)
    expected = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (config.json implies {tuple(expected[k].shape)})"
             for k, v in sd.items() if k in expected and v.shape != expected[k].shape]
    if wrong:
        raise ValueError(f"{path}: weights do not match config.json: {'; '.join(wrong[:4])}. Fix "
                         "config.json (vocab_size, hidden_size, intermediate_size, heads) or use "
                         "the config.json these weights were saved with")
    missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the config: missing {missing[:6]}, "
                         f"unexpected {unexpected[:6]}")
    model.inv_freq = rope_inv_freq(config)      # a buffer, left on meta by construction
    return model.to(device)


def _atomic_save(tensors: dict[str, torch.Tensor], dst: Path, metadata: dict[str, str]) -> None:
    # save_file streams to a path, so a multi-GiB shard is never held twice in memory
    with atomic_path(dst) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def _atomic_write_text(text: str, dst: Path) -> None:
    atomic_write_bytes(dst, text.encode("utf-8"))


def save_hf(model: GPT, path: str | Path, model_type: str | None = None,
            max_shard_bytes: int = 4 * 1024**3, dtype: torch.dtype | None = None) -> Path:
    """Write ``model`` as a HF checkpoint directory loadable by ``transformers``.

    Args:
        model: The model to export.
        path: Output directory (created).
        model_type: ``"qwen2"`` or ``"llama"``; default from ``qkv_bias``.
        max_shard_bytes: Split weights into shards of at most this size (with an index).
        dtype: Cast floating weights (default: keep).
    """
    config = model.config
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    ref_dtype = dtype or model.embed_tokens.weight.dtype
    hf = config_to_hf(config, model_type, ref_dtype)
    ours = {k: v for k, v in model.state_dict().items()}
    if config.separate_visual_head:            # fold the visual head into a full lm_head
        ours["lm_head.weight"] = model.head_weight_full()
        ours.pop("visual_head.weight")
    inverse = {}
    for hf_t, our_t in WEIGHT_MAPS[hf["model_type"]].items():
        if our_t is None:
            continue
        if "{}" in hf_t:
            for i in range(config.n_layer):
                inverse[our_t.format(i)] = hf_t.format(i)
        else:
            inverse[our_t] = hf_t
    tensors = {}
    for k, v in ours.items():
        if k not in inverse:
            raise ValueError(f"no HF name for weight {k!r} under model_type {hf['model_type']!r}")
        v = v.detach().to("cpu")
        tensors[inverse[k]] = (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
    # shard greedily in key order
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in tensors.items():
        nbytes = v.numel() * v.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += nbytes
    meta = {"format": "pt"}
    if len(shards) == 1:
        _atomic_save(shards[0], path / "model.safetensors", meta)
    else:
        n = len(shards)
        weight_map = {}
        for i, shard in enumerate(shards):
            name = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            _atomic_save(shard, path / name, meta)
            weight_map.update({k: name for k in shard})
        total = sum(v.numel() * v.element_size() for v in tensors.values())
        _atomic_write_text(json.dumps({"metadata": {"total_size": total},
                                       "weight_map": weight_map}, indent=2),
                           path / "model.safetensors.index.json")
    _atomic_write_text(json.dumps(hf, indent=2), path / "config.json")
    if config.image_codebook_size:
        _atomic_write_text(json.dumps(config.to_dict(), indent=2), path / ARM_CONFIG)
    return path
