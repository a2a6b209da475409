"""The paper's tokenizer at full size without its weights: real configs, towers built from them.

ARM's recipe (``configs/tokenizer/arm-siglip2-fsq.yaml``) names two checkpoints no test may
download: SigLIP2-SO400M-512 (``google/siglip2-so400m-patch16-512``, a transformers
``SiglipModel``, ``model_type: siglip``) and Qwen2.5-0.5B (``Qwen/Qwen2.5-0.5B``). This module
writes checkpoint directories holding their real ``config.json`` (transformers' own config
classes, the released dimensions below) and a small working tokenizer, and
:func:`without_weights` builds every transformers tower of ``hf_vision``, ``hf_text`` and
``hf_causal_lm`` from its config instead of reading weights: on the meta device (parameter
counts and shapes, no memory) or with random weights (memory measurements).

Everything above the weight read still runs as for real weights: the YAML, jsonargparse,
the registry, ``config.json`` resolution (family, tower, size checks) and the tokenizers.
Needs the ``hf`` extra (transformers).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from arm_tokenizer import hf_towers
from arm_tokenizer.quantizers import fsq as fsq_module
from arm_tokenizer.testing.hf_tiny import build_word_tokenizer
from arm_tokenizer.testing.hf_tiny_lm import tiny_qwen2_dir

__all__ = ["SIGLIP2_SO400M_512", "QWEN25_05B", "write_full_size_dirs", "without_weights"]

#: ``google/siglip2-so400m-patch16-512``'s ``config.json`` (SigLIP 2 release, Feb 2025):
#: both towers 1,152 wide, 27 layers, 16 heads, MLP 4,304; 16-px patches at 512 px (a 32x32
#: grid); a Gemma vocabulary of 256,000 and 64 text positions.
SIGLIP2_SO400M_512: dict[str, Any] = {
    "text_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_attention_heads": 16,
                    "num_hidden_layers": 27, "projection_size": 1152, "vocab_size": 256000,
                    "max_position_embeddings": 64},
    "vision_config": {"hidden_size": 1152, "image_size": 512, "intermediate_size": 4304,
                      "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 16},
}

#: ``Qwen/Qwen2.5-0.5B``'s ``config.json``: 24 layers, hidden 896, 14 query heads and 2 KV
#: heads of 64, SwiGLU 4,864, vocabulary 151,936, tied embeddings.
QWEN25_05B: dict[str, Any] = {
    "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "vocab_size": 151936,
    "bos_token_id": 151643, "eos_token_id": 151643, "use_sliding_window": False,
}


def write_full_size_dirs(root: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``root/siglip2-so400m-patch16-512`` and ``root/qwen2.5-0.5b``: each a
    ``config.json`` with the real dimensions plus a small working tokenizer (the towers
    need one to construct; its vocabulary is not the real one). No weights: build the
    towers inside :func:`without_weights`. Returns the two directories."""
    # deferred: transformers is the optional [hf] extra
    import transformers as tf
    from transformers import AutoTokenizer

    root = Path(root)
    siglip, qwen = root / "siglip2-so400m-patch16-512", root / "qwen2.5-0.5b"
    tf.SiglipConfig(**SIGLIP2_SO400M_512).save_pretrained(str(siglip))
    build_word_tokenizer(siglip, model_max_length=64)
    tf.Qwen2Config(**QWEN25_05B).save_pretrained(str(qwen))
    AutoTokenizer.from_pretrained(tiny_qwen2_dir()).save_pretrained(str(qwen))
    return siglip, qwen


@contextlib.contextmanager
def without_weights(device: str | torch.device = "meta", logit_scale: float = 4.7,
                    logit_bias: float = -16.5) -> Iterator[None]:
    """Inside: ``hf_vision`` / ``hf_text`` / ``hf_causal_lm`` build their transformers model
    from the checkpoint's ``config.json`` on ``device`` (``meta``: no memory; ``cpu``: random
    weights) instead of loading its weights, and ``hf_text`` reads ``logit_scale`` /
    ``logit_bias`` as given here (defaults: about the released SigLIP2's). Everything else is
    as with real weights. The default device is ``device`` while inside, so the trainable
    parts built there land on it too, except ``fsq``'s buffers (no parameters): the FSQ of
    vector-quantize-pytorch reads its codebook size with ``.item()``, which a meta tensor
    cannot answer, so it is built on the CPU."""
    # deferred: transformers is the optional [hf] extra
    import transformers as tf

    vq_fsq = fsq_module.FSQ

    def fsq_on_cpu(*args: Any, **kwargs: Any) -> Any:
        with torch.device("cpu"):
            return vq_fsq(*args, **kwargs)

    def load_tower(name_or_path: str, tower: Any, side: str, component: str, dtype: torch.dtype) -> Any:
        spec = tower.spec
        model_cls = getattr(tf, spec.vision_class if side == "vision" else spec.text_class)
        return model_cls._from_config(tower.config, dtype=dtype)

    def read_tensors(name_or_path: str, names: list[str], local_files_only: bool) -> dict[str, torch.Tensor]:
        values = {"logit_scale": logit_scale, "logit_bias": logit_bias}
        return {n: torch.tensor([values[n]], device="cpu") for n in names if n in values}

    def causal_lm_from_config(src: str, config: Any = None, **kwargs: Any) -> Any:
        dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))
        config = config if config is not None else tf.AutoConfig.from_pretrained(src)
        return tf.AutoModelForCausalLM.from_config(config, dtype=dtype)

    auto = tf.AutoModelForCausalLM
    saved = (hf_towers.load_tower, hf_towers.read_checkpoint_tensors, auto.__dict__.get("from_pretrained"))
    hf_towers.load_tower = load_tower
    hf_towers.read_checkpoint_tensors = read_tensors
    auto.from_pretrained = causal_lm_from_config  # type: ignore[method-assign]
    fsq_module.FSQ = fsq_on_cpu
    try:
        with torch.device(device):
            yield
    finally:
        hf_towers.load_tower, hf_towers.read_checkpoint_tensors = saved[0], saved[1]
        fsq_module.FSQ = vq_fsq
        if saved[2] is None:  # inherited from transformers' auto base class: drop our shadow
            del auto.from_pretrained
        else:
            auto.from_pretrained = saved[2]
