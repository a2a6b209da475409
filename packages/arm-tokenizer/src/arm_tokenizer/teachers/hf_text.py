"""SigLIP, SigLIP2 and CLIP text towers in Hugging Face transformers format (``hf_text``).

ARM's L_sig scores the quantized image embedding against a frozen SigLIP2 text encoder
(:class:`~arm_tokenizer.losses.siglip.SigLIPLoss`). This component loads the text tower of a
transformers-format checkpoint (a local directory or a hub id, ``name_or_path`` as in
transformers) with the tokenizer saved beside it (``AutoTokenizer`` from the same place),
and returns L2-normalized text embeddings ``(B, embed_dim)``:

- SigLIP / SigLIP2: the tower's pooled output (its last position through the text head),
  with the texts padded to ``max_length`` and no attention mask, as the family was trained
  in big_vision (64 tokens for the released checkpoints);
- CLIP: ``CLIPTextModelWithProjection``'s ``text_embeds`` (pooled at the end-of-text token,
  through the text projection), dynamic padding with the attention mask.

It also carries the pair's logit scale and bias from the checkpoint (``logit_scale`` and
``logit_bias`` of the dual model, kept as ``log_temperature`` and ``bias`` buffers; CLIP has
no bias: 0), as the ShapesWorld ``teacher_text`` does.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

import torch
import torch.nn.functional as F

from arm_tokenizer import hf_towers as hft  # imports transformers lazily: an optional extra
from arm_tokenizer.teachers.base import TextEncoder, cached_text_embeddings
from arm_tokenizer.testing.hf_tiny import tiny_hf_dir

__all__ = ["HFTextEncoder"]

COMPONENT = "hf_text"


class HFTextEncoder(TextEncoder):
    """A transformers SigLIP / SigLIP2 / CLIP text tower with its tokenizer: texts -> ``(B, E)``.

    Args:
        name_or_path: a local checkpoint directory or a Hugging Face hub id holding the dual
            encoder (or its text tower) and its tokenizer files. Hub ids are looked up in the
            local cache first; ``HF_HUB_OFFLINE=1`` is honoured.
        frozen: freeze the tower (no gradients, always eval mode); ``SigLIPLoss`` freezes its
            text encoder in any case.
        dtype: weights and compute dtype: ``float32``, ``bfloat16`` or ``float16``
            (embeddings are returned in float32).
        device: move the tower there at construction; None = leave it on the CPU (Lightning
            moves it with the model).
        max_length: tokens per text (longer texts are truncated); None = the tower's
            ``max_position_embeddings``.
        log_temperature: override the checkpoint's ``logit_scale`` (log of the temperature);
            needed for a text-tower-only checkpoint, which does not store it.
        bias: override the checkpoint's ``logit_bias`` (CLIP: 0).
        cache_size: when frozen, remember the embeddings of up to this many distinct texts
            (captions repeat every epoch); 0 disables the cache.
    """

    def __init__(
        self,
        name_or_path: str,
        frozen: bool = True,
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        device: str | None = None,
        max_length: int | None = None,
        log_temperature: float | None = None,
        bias: float | None = None,
        cache_size: int = 8192,
    ) -> None:
        super().__init__()
        torch_dtype = hft.parse_dtype(dtype, COMPONENT)
        tower = hft.resolve_tower(name_or_path, "text", COMPONENT)
        tf = hft.import_transformers(COMPONENT)

        def load_tokenizer(local: bool) -> Any:
            return tf.AutoTokenizer.from_pretrained(name_or_path, local_files_only=local)

        try:
            self.tokenizer = hft.fetch(name_or_path, COMPONENT, load_tokenizer, "tokenizer files")
        except (OSError, ValueError) as exc:
            if isinstance(exc, hft.HubUnavailableError):
                raise
            raise ValueError(f"{COMPONENT}: no usable tokenizer in {name_or_path} ({str(exc).splitlines()[0]}); "
                             "the text tower needs the tokenizer files it was trained with beside config.json") from None

        scale_bias = hft.read_checkpoint_tensors(name_or_path, ["logit_scale", "logit_bias"], tower.local_files_only)
        if log_temperature is None:
            if "logit_scale" not in scale_bias:
                raise ValueError(f"{COMPONENT}: {name_or_path} stores no logit_scale (a text-tower-only checkpoint?); "
                                 "pass log_temperature= (and bias=) explicitly")
            log_temperature = float(scale_bias["logit_scale"].float().reshape(-1)[0])
        if bias is None:
            if tower.family == "clip":
                bias = 0.0  # CLIP's softmax loss has no bias
            elif "logit_bias" in scale_bias:
                bias = float(scale_bias["logit_bias"].float().reshape(-1)[0])
            else:
                raise ValueError(f"{COMPONENT}: {name_or_path} stores no logit_bias; pass bias= explicitly")

        self.model = hft.load_tower(name_or_path, tower, "text", COMPONENT, torch_dtype)
        self.family = tower.family
        self.name_or_path = name_or_path
        config = self.model.config
        self.embed_dim = int(config.projection_dim if tower.family == "clip" else
                             getattr(config, "projection_size", None) or config.hidden_size)
        limit = int(config.max_position_embeddings)
        if max_length is not None and not 1 <= max_length <= limit:
            raise ValueError(f"{COMPONENT}: max_length must be in [1, {limit}] (the tower's positions), got {max_length}")
        self.max_length = int(max_length or limit)
        self.cache_size = int(cache_size)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.register_buffer("log_temperature", torch.tensor(float(log_temperature)))
        self.register_buffer("bias", torch.tensor(float(bias)))
        if device is not None:
            self.to(device)
        self.frozen = bool(frozen)
        if frozen:
            self.requires_grad_(False)
            self.eval()

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        return {"name_or_path": tiny_hf_dir("siglip2")}

    def train(self, mode: bool = True) -> HFTextEncoder:
        return super().train(False if getattr(self, "frozen", False) else mode)

    @property
    def logit_scale(self) -> torch.Tensor:
        """``exp(log_temperature)``: the multiplier of the cosine similarities."""
        return self.log_temperature.exp()

    # ------------------------------------------------------------------ encoding
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Texts -> L2-normalized float32 embeddings ``(B, embed_dim)`` on the tower's device."""
        if isinstance(texts, str):
            raise TypeError(f"{COMPONENT}.encode_text expects a list of texts, got a single str")
        texts = list(texts)
        if not self.frozen or self.cache_size <= 0:
            return self._encode(texts)
        return cached_text_embeddings(self._cache, texts, self._encode, self.cache_size,
                                      self.log_temperature.device)

    def _encode(self, texts: list[str]) -> torch.Tensor:
        padding = True if self.family == "clip" else "max_length"
        batch = self.tokenizer(texts, padding=padding, truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        device = self.log_temperature.device
        if self.family == "clip":
            out = self.model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
        else:  # no mask: SigLIP(2) pools the last position of max_length-padded text, as trained
            out = self.model(input_ids=batch["input_ids"].to(device))
        emb = out.text_embeds if self.family == "clip" else out.pooler_output
        return F.normalize(emb.float(), dim=-1)

    def extra_repr(self) -> str:
        return (f"family={self.family}, name_or_path={self.name_or_path!r}, embed_dim={self.embed_dim}, "
                f"max_length={self.max_length}, frozen={self.frozen}")
