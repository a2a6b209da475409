"""``hf_causal_lm``: any Hugging Face transformers causal LM as the caption LM of L_cap.

ARM (arXiv 2606.11188) trains its semantic tokenizer with L_cap: a frozen Qwen2.5-0.5B
reads the quantized tokens, through a trainable projection, as a prefix and is scored on
the caption's next-token NLL. This component loads such an LM, with its own tokenizer,
from a local directory or a hub id (``name_or_path``, as in transformers)::

    [BOS]  PREFIX(N')  [prompt]  caption ... EOS  pad ...
                                 ^ loss here ^     (prefix, prompt and padding masked)

The trainable projection (token features -> the LM's embedding width) and the optional
prefix pooling are :class:`~arm_tokenizer.losses.caption.CaptionLoss`'s ``adapter`` and
``prefix_pooling``, so the same loss drives this LM, the ShapesWorld teacher and arm-core's
``arm_lm``; this class scores a ``(B, N', hidden_size)`` prefix. Logits are computed only
at the caption positions (``logits_to_keep``), not over the prefix.

Memory of a full 32x32 = 1,024-token prefix on Qwen2.5-0.5B (24 layers, hidden h = 896,
14 heads, 2 KV heads of 64 -> K/V width 128, intermediate I = 4864, vocab 151,936), bf16,
SDPA attention (no S x S matrix kept), frozen weights, per image, sequence S = 1,024 +
~32 caption tokens = 1,056. With the weights frozen, a matmul keeps no copy of its input
(only its weight, which exists anyway), so what autograd keeps per token per layer is:

- the two RMSNorm inputs, upcast to fp32 by Qwen2RMSNorm: 2 x 896 x 4 B = 7,168 B;
- attention (SDPA / flash): q and the output (2 x 896 x 2 B), k and v (2 x 128 x 2 B),
  the fp32 log-sum-exp (14 x 4 B): 4,152 B;
- SwiGLU MLP: gate, up and silu(gate) (3 x 4,864 x 2 B): 29,184 B;
- total 40,512 B (+ 8 B of norm statistics), x 24 layers x 1,056 tokens = 1.03 GB
  (0.96 GiB) kept for backward, per image;
- logits at the 33 caption positions only: 33 x 151,936 x (2 B bf16 + 4 B fp32 + 4 B
  log-softmax) = 50 MB; over all 1,056 positions it would be 1.6 GB, which is why
  ``logits_to_keep`` is used;
- plus the weights once: 494 M parameters x 2 B = 0.99 GB (no gradients, no optimizer state).

These per-layer figures were measured on CPU with ``torch.autograd.graph.saved_tensors_hooks``
on Qwen2 layers of these dims (1.027 GB at S = 1,056); :func:`saved_activation_bytes` is the
same arithmetic, checked against such a measurement by the tests. A batch of 32 images at the full
prefix needs about 33 GB of activations. Pooling shortens S and the cost falls linearly:
``prefix_pooling: avg`` with ``prefix_pool: 2`` (256 + 32 tokens) 0.28 GB per image,
``resampler`` with 64 queries (96 tokens) 0.09 GB. Eager attention keeps the S x S scores
and probabilities too: 3.3 GB per image at the full prefix.

Errors, each one line at construction: transformers missing (``pip install
'arm-tokenizer[hf]'``); a directory without ``config.json`` or without a tokenizer; an
architecture that is not a causal LM (names the supported families); a hub id neither on
disk nor in the cache while offline (``HF_HUB_OFFLINE``) or with the hub unreachable
(a 3 s probe, no retry loop).
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from arm_tokenizer.framework.configurable import ComponentImportError
from arm_tokenizer.framework.hub import hub_offline, hub_unreachable_reason
from arm_tokenizer.teachers.base import CaptionLM
from arm_tokenizer.testing.hf_tiny_lm import tiny_qwen2_dir

__all__ = ["HFCausalLM", "TOKENIZER_FILES", "saved_activation_bytes"]

#: Files any transformers tokenizer is saved as; a caption LM directory needs one of them.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json",
                   "spiece.model", "sentencepiece.bpe.model", "vocab.txt")

# Families named first in the "unsupported architecture" error (any AutoModelForCausalLM works).
_EXAMPLE_FAMILIES = ("qwen2", "qwen3", "llama", "mistral", "gemma", "phi3", "gpt2")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _resolve(name_or_path: str, what: str) -> tuple[str, bool]:
    """``(source, local_only)``: a local directory, a cached hub snapshot, or a hub id to
    download. Raises one line when neither disk nor hub can supply it."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return str(p), True
    if p.exists():
        raise FileNotFoundError(f"hf_causal_lm: {what} {name_or_path!r} is a file; pass the directory that "
                                "holds config.json (or a hub id)")
    if name_or_path.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(name_or_path):
        raise FileNotFoundError(f"hf_causal_lm: {what} {name_or_path!r}: no such directory")
    # deferred: huggingface_hub comes with timm/transformers; only to fetch a hub id
    from huggingface_hub import snapshot_download

    try:  # already downloaded: load from the cache, never touch the network
        return snapshot_download(name_or_path, local_files_only=True), True
    except Exception:  # noqa: BLE001 - any cache miss means "not cached"
        pass
    how = (f"pass a local directory as {what} (e.g. after `hf download {name_or_path} --local-dir DIR` on "
           "a machine with network)")
    if hub_offline():
        raise FileNotFoundError(f"hf_causal_lm: {name_or_path!r} is not a local directory nor in the Hugging Face "
                                f"cache, and HF_HUB_OFFLINE is set; {how}")
    if hub_unreachable_reason() is not None:
        raise FileNotFoundError(f"hf_causal_lm: {name_or_path!r} is not a local directory nor in the Hugging Face "
                                f"cache, and the hub is unreachable; {how}")
    return name_or_path, False


def saved_activation_bytes(config: Any, seq_len: int, dtype_bytes: int = 2) -> int:
    """Bytes autograd keeps for backward in the decoder layers of a frozen Qwen2/Llama-style
    LM (RMSNorm upcast to fp32, SDPA attention, SwiGLU MLP) over one sequence of ``seq_len``
    tokens: the arithmetic of the module docstring. Logits and weights are not included."""
    h, i = int(config.hidden_size), int(config.intermediate_size)
    heads = int(config.num_attention_heads)
    head_dim = int(getattr(config, "head_dim", None) or h // heads)
    kv = int(config.num_key_value_heads) * head_dim
    per_token = (2 * h * 4 + 2 * 4  # two RMSNorm inputs in fp32 and their 1/rms
                 + (heads * head_dim + kv + kv + h) * dtype_bytes + heads * 4  # q, k, v, out, lse
                 + 3 * i * dtype_bytes)  # gate, up, silu(gate)
    return per_token * int(config.num_hidden_layers) * int(seq_len)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class HFCausalLM(CaptionLM):
    """A transformers causal LM (Qwen2.5-0.5B in ARM) scoring captions given a visual prefix.

    Args:
        name_or_path: local directory or hub id of the LM (``config.json`` + weights), as
            ``AutoModelForCausalLM.from_pretrained`` takes it.
        tokenizer: where its tokenizer is, if not saved beside the model (None: ``name_or_path``).
        dtype: weight dtype: ``float32`` (CPU), ``bfloat16`` (the paper, on GPU) or ``float16``.
        device: move the weights to this device once loaded (e.g. ``cuda``); None: CPU, and
            Lightning moves them with the rest of the model. The prefix is moved to the LM's
            device and the loss back to the prefix's.
        frozen: the paper trains the tokenizer through a frozen LM (no LM gradients, always
            eval). False lets ``CaptionLoss`` train the LM as well.
        prompt: text placed between the prefix and the caption, not scored (``""``: none).
        max_caption_tokens: captions are cut to this many tokens, EOS included.
        attn_implementation: transformers attention backend (``sdpa``, ``eager``,
            ``flash_attention_2``); None: transformers' default (SDPA).
    """

    def __init__(
        self,
        name_or_path: str = "Qwen/Qwen2.5-0.5B",
        tokenizer: str | None = None,
        dtype: Literal["float32", "bfloat16", "float16"] = "float32",
        device: str | None = None,
        frozen: bool = True,
        prompt: str = "",
        max_caption_tokens: int = 64,
        attn_implementation: str | None = None,
    ) -> None:
        super().__init__()
        if dtype not in _DTYPES:
            raise ValueError(f"hf_causal_lm: dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if device is not None:
            try:
                torch.device(device)
            except RuntimeError:
                raise ValueError(f"hf_causal_lm: device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from None
        if int(max_caption_tokens) < 1:
            raise ValueError(f"hf_causal_lm: max_caption_tokens must be >= 1, got {max_caption_tokens}")
        try:  # deferred: transformers is the optional [hf] extra, imported when this LM is built
            import transformers
            from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        except ImportError:
            raise ComponentImportError("hf_causal_lm needs Hugging Face transformers: pip install 'arm-tokenizer[hf]'",
                                       class_path=f"{__name__}.HFCausalLM", module="transformers") from None
        src, local = _resolve(str(name_or_path), "name_or_path")
        tok_src, tok_local = (src, local) if tokenizer is None else _resolve(str(tokenizer), "tokenizer")
        if local and not (Path(src) / "config.json").is_file():
            raise FileNotFoundError(f"hf_causal_lm: {name_or_path!r} has no config.json: not a transformers "
                                    "checkpoint (save one with model.save_pretrained(DIR))")
        if tok_local and Path(tok_src).is_dir() and not any((Path(tok_src) / f).is_file() for f in TOKENIZER_FILES):
            raise FileNotFoundError(
                f"hf_causal_lm: caption LM directory {str(tok_src)!r} has no tokenizer (none of "
                f"{', '.join(TOKENIZER_FILES[:3])}, ...); save it beside the model with "
                "tokenizer.save_pretrained(DIR) or pass tokenizer: <dir or hub id>")
        try:
            config = transformers.AutoConfig.from_pretrained(src, local_files_only=local)
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"hf_causal_lm: cannot read the config of {name_or_path!r}: {_one_line(e)}") from None
        if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
            raise ValueError(
                f"hf_causal_lm: {name_or_path!r} is a {config.model_type!r} model ({type(config).__name__}), not a "
                f"causal LM; supported: transformers' AutoModelForCausalLM families, e.g. "
                f"{', '.join(_EXAMPLE_FAMILIES)} ({len(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)} in all)")
        # transformers renamed from_pretrained's torch_dtype to dtype in 4.56
        major, minor = (int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
        dtype_key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
        kwargs: dict[str, Any] = {dtype_key: _DTYPES[dtype], "local_files_only": local}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        try:
            self.model = transformers.AutoModelForCausalLM.from_pretrained(src, config=config, **kwargs)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(tok_src, local_files_only=tok_local)
        except (OSError, ValueError, ImportError) as e:
            raise ValueError(f"hf_causal_lm: cannot load {name_or_path!r}: {_one_line(e)}") from None
        if device is not None:  # .to() rather than device_map: no dependency on accelerate
            self.model.to(torch.device(device))
        if self.tokenizer.eos_token_id is None:
            raise ValueError(f"hf_causal_lm: the tokenizer of {name_or_path!r} has no eos token; captions need one")
        self.name_or_path = str(name_or_path)
        self.frozen = bool(frozen)
        self.max_caption_tokens = int(max_caption_tokens)
        self.hidden_size = int(self.model.get_input_embeddings().embedding_dim)
        self.prompt_ids: list[int] = self.tokenizer(prompt, add_special_tokens=False)["input_ids"] if prompt else []
        self.bos_ids: list[int] = [self.tokenizer.bos_token_id] if self.tokenizer.bos_token_id is not None else []
        fixed = len(self.bos_ids) + len(self.prompt_ids) + self.max_caption_tokens
        max_pos = getattr(config, "max_position_embeddings", None)
        self.max_prefix = int(max_pos) - fixed if max_pos else None
        # older/remote-code models may lack logits_to_keep: then logits at every position
        self._keep_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        if self.frozen:
            self.model.requires_grad_(False)
            self.model.eval()

    @classmethod
    def example_args(cls) -> dict[str, Any]:
        return {"name_or_path": tiny_qwen2_dir()}

    def train(self, mode: bool = True) -> HFCausalLM:
        return super().train(mode and not self.frozen)

    def _embed_ids(self, ids: list[int], b: int, device: torch.device) -> torch.Tensor:
        emb = self.model.get_input_embeddings()
        return emb(torch.tensor(ids, dtype=torch.long, device=device)).unsqueeze(0).expand(b, -1, -1)

    def caption_ids(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids, mask)`` ``(B, T)``: ``caption EOS`` per text, right-padded (T = longest)."""
        if isinstance(texts, str):
            raise TypeError("hf_causal_lm.caption_loss expects a list of texts, got a single str")
        eos = int(self.tokenizer.eos_token_id)
        rows = [ids[: self.max_caption_tokens - 1] + [eos]
                for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
        t = max(len(r) for r in rows)
        ids = torch.full((len(rows), t), eos, dtype=torch.long)
        mask = torch.zeros((len(rows), t), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids, mask

    def caption_loss(self, prefix: torch.Tensor, texts: list[str]) -> torch.Tensor:
        if prefix.ndim != 3 or prefix.shape[-1] != self.hidden_size:
            raise ValueError(f"hf_causal_lm expects a prefix (B, N, {self.hidden_size}), got {tuple(prefix.shape)}")
        if len(texts) != prefix.shape[0]:
            raise ValueError(f"hf_causal_lm: {len(texts)} captions for a prefix batch of {prefix.shape[0]}")
        emb = self.model.get_input_embeddings()
        device, dtype = emb.weight.device, emb.weight.dtype
        b, n = prefix.shape[:2]
        ids, mask = (x.to(device) for x in self.caption_ids(texts))
        t = ids.shape[1]
        parts = [self._embed_ids(self.bos_ids, b, device)] if self.bos_ids else []
        parts.append(prefix.to(device=device, dtype=dtype))
        if self.prompt_ids:
            parts.append(self._embed_ids(self.prompt_ids, b, device))
        parts.append(emb(ids))
        x = torch.cat(parts, dim=1)
        # right padding: the caption ends the sequence, so its logits are the last t + 1
        attn = torch.cat([mask.new_ones(b, x.shape[1] - t), mask], dim=1)
        kw = {"logits_to_keep": t + 1} if self._keep_logits else {}
        logits = self.model(inputs_embeds=x, attention_mask=attn, use_cache=False, **kw).logits[:, -(t + 1):-1]
        target = ids.masked_fill(mask == 0, -100)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100)
        return loss.to(prefix.device)

    @torch.no_grad()
    def generate(self, prefix: torch.Tensor, max_new_tokens: int = 24) -> list[str]:
        """Greedy captions for a ``(B, N, hidden_size)`` prefix (full recompute: captions are short)."""
        emb = self.model.get_input_embeddings()
        device, dtype = emb.weight.device, emb.weight.dtype
        b = prefix.shape[0]
        parts = [self._embed_ids(self.bos_ids, b, device)] if self.bos_ids else []
        parts.append(prefix.to(device=device, dtype=dtype))
        if self.prompt_ids:
            parts.append(self._embed_ids(self.prompt_ids, b, device))
        x = torch.cat(parts, dim=1)
        eos = int(self.tokenizer.eos_token_id)
        out = torch.full((b, 0), eos, dtype=torch.long, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        for _ in range(int(max_new_tokens)):
            kw = {"logits_to_keep": 1} if self._keep_logits else {}
            nxt = self.model(inputs_embeds=x, use_cache=False, **kw).logits[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done |= nxt == eos
            if bool(done.all()):
                break
            x = torch.cat([x, emb(nxt)[:, None]], dim=1)
        return [self.tokenizer.decode([int(i) for i in row if int(i) != eos]) for row in out.cpu()]
