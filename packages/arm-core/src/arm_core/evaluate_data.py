"""Evaluating an ARM LM on your own data: per-task loss, VQA exact match, T2I alignment.

ShapesWorld has a rule-based judge (:mod:`arm_core.evaluate`); real data does not, so
``arm-lm evaluate`` measures three things on data you bring, each with its standard error:

* **Per-task loss** on a pre-tokenized shard set (``arm-data pretokenize``): every record
  becomes the documents the LM trains on (pair -> ``t2i`` and ``text``, vqa -> ``und``,
  edit -> ``edit``; :mod:`arm_data.datamodules.tokens`, no condition dropout), one
  document per row, and the loss is the mean next-token NLL over each task's loss tokens
  (the outputs: image tokens for T2I and editing, the answer for understanding). Its
  standard error treats documents as the sampling unit (the ratio estimator's
  ``sqrt(sum((y_i - r x_i)^2) / (n (n-1))) / mean(x)`` for NLL sums ``y_i`` over ``x_i``
  tokens), since tokens of one document are not independent.
* **VQA exact match** on a JSONL of questions, one object per line::

      {"image": "imgs/1.jpg", "question": "What colour is the car?", "answer": "red"}
      {"image": "imgs/2.jpg", "question": "How many dogs?", "answers": ["2", "two"], "kind": "count"}

  (image paths relative to the file). Greedy answers are compared after VQAv2-style
  normalisation (lower case, punctuation and articles dropped, number words as digits);
  a question counts as right when the answer matches one of its reference answers.
  Accuracy ± the binomial standard error, and per ``kind`` where lines give one.
* **T2I image-text alignment**: images generated from a prompt file (one prompt per
  line, or JSONL with ``"prompt"`` and optionally a reference ``"image"``) are scored by a
  dual encoder assembled from the registry (:class:`DualEncoder`): any image ``encoder``
  plus any ``text_encoder``, with the SigLIP head. Reported: the mean cosine similarity of
  each image to its prompt, the SigLIP match probability ``sigmoid(exp(t') cos + b)``
  where the pair carries ``t'`` and ``b``, and prompt R@1 (the image's own prompt scores
  highest among all prompts of the file); with reference images, the same for them as
  the ceiling the scorer reaches on real pairs.

Every figure comes with ``<name>_se``; :func:`evaluate_data` returns one JSON-ready dict.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import yaml
from arm_data.formats import ConditionDropout
from arm_data.shards import open_shards, read_shard
from arm_data.tasks import get_task, task_names
from arm_tokenizer.framework import registry
from arm_tokenizer.framework.deprecation import renamed_argument
from arm_tokenizer.images import ImageTransform, load_image, pil_to_tensor
from arm_tokenizer.siglip_export import load_siglip_head
from torch import nn

from arm_core.checkpoint import load_lm
from arm_core.evaluate import _mean, _se, normalize_answer
from arm_core.pipelines import TextToImage, Understand

__all__ = ["evaluate_task_loss", "read_vqa_file", "evaluate_vqa_file", "normalize_vqa_answer",
           "read_prompt_file", "DualEncoder", "score_alignment", "evaluate_t2i_alignment",
           "evaluate_data", "LOSS_TASKS"]

#: The built-in LM tasks whose loss can be measured on shards; any registered task
#: (:func:`arm_data.tasks.task_names`) can be, its special tokens in the LM's vocabulary.
LOSS_TASKS = ("t2i", "und", "edit", "text")
IGNORE_INDEX = -100


def _ratio_se(sums: Sequence[float], counts: Sequence[float]) -> float | None:
    """Standard error of ``sum(sums) / sum(counts)`` with documents as the sampling unit."""
    n = len(sums)
    if n < 2:
        return None
    r = sum(sums) / sum(counts)
    mean_x = sum(counts) / n
    var = sum((y - r * x) ** 2 for y, x in zip(sums, counts, strict=True)) / (n * (n - 1))
    return float(math.sqrt(var) / mean_x)


# ---------------------------------------------------------------------- per-task loss
def evaluate_task_loss(lm: Any, data_dir: str | os.PathLike, tasks: Sequence[str] = ("t2i", "und", "edit"),
                       batch_size: int = 8, max_documents: int | None = None,
                       device: str | torch.device = "cpu") -> dict[str, Any]:
    """Mean token loss per task of ``lm`` (an :class:`~arm_core.checkpoint.LMCheckpoint`) on
    the shards in ``data_dir`` (see the module docstring).

    Args:
        tasks: LM tasks to measure (``t2i``, ``und``, ``edit``, ``text`` or a registered
            task); a task whose records the shards do not hold is reported with ``documents: 0``.
        batch_size: documents per forward pass.
        max_documents: measure at most the first this many documents per task.
    """
    # deferred: the token data module imports lightning (seconds), only for this measurement
    from arm_data.datamodules.tokens import _Corpus, collate_rows

    known = task_names()
    bad = [t for t in tasks if t not in known]
    if bad or not tasks:
        raise ValueError(f"--loss-tasks: unknown task(s) {bad}; choose from {known} (a plugin's task needs its "
                         "package installed)")
    if lm.layout is None:
        raise ValueError(f"{lm.directory}: the LM has no vocabulary layout; per-task loss needs one")
    for t in tasks:  # a plugin task's own tokens exist only in LMs trained with it
        lacking = [tok for tok in get_task(t, aliases=False).vocab_tokens() if tok not in lm.layout.special_tokens]
        if lacking:
            raise ValueError(f"--loss-tasks {t}: the LM {lm.directory} was not trained with task {t!r} (its "
                             f"vocabulary lacks {lacking})")
    manifest, paths = open_shards(data_dir)
    layout = lm.layout
    if manifest.codebook_size != layout.codebook_size:
        raise ValueError(f"--data {str(data_dir)!r}: shards hold codes of a {manifest.codebook_size}-code "
                         f"tokenizer but the LM {lm.directory} knows {layout.codebook_size}; pre-tokenize "
                         "with the LM's visual tokenizer")
    gh, gw = manifest.grid
    if gh > layout.max_grid_h or gw > layout.max_grid_w:
        raise ValueError(f"--data {str(data_dir)!r}: {gh}x{gw} token grids exceed the LM's shape tokens "
                         f"({layout.max_grid_h}x{layout.max_grid_w})")
    records = [r for p in paths for r in read_shard(p)]
    seq_len = int(lm.config.max_seq_len)
    # the training data module's own record -> document code, without condition dropout
    corpus = _Corpus(records, lm.load_text_tokenizer(), layout, False, ConditionDropout(0, 0, 0, 0),
                     seq_len, list(tasks))
    model = lm.model.to(device).eval()
    out: dict[str, Any] = {}
    for task in tasks:
        items = corpus.docs[task][:max_documents] if max_documents else corpus.docs[task]
        sums: list[float] = []
        counts: list[float] = []
        for s in range(0, len(items), batch_size):
            docs = [corpus.build(task, it, None) for it in items[s:s + batch_size]]
            batch = collate_rows([[d] for d in docs], max(len(d) for d in docs), layout.pad_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.inference_mode():
                logits = model(batch["input_ids"], position_ids=batch["position_ids"], doc_ids=batch["doc_ids"])
            tgt = batch["targets"]
            valid = tgt != IGNORE_INDEX
            nll = F.cross_entropy(logits.float().flatten(0, 1), tgt.clamp_min(0).flatten(),
                                  reduction="none").view_as(tgt) * valid
            sums.extend(nll.sum(1).tolist())
            counts.extend(valid.sum(1).float().tolist())
        keep = [(y, x) for y, x in zip(sums, counts, strict=True) if x > 0]
        ys, xs = [y for y, _ in keep], [x for _, x in keep]
        loss = sum(ys) / sum(xs) if xs else None
        out[task] = {"documents": len(keep), "tokens": int(sum(xs)), "loss": loss, "loss_se": _ratio_se(ys, xs),
                     "perplexity": math.exp(loss) if loss is not None else None,
                     "too_long": corpus.too_long.get(task, 0)}
    return out


# ---------------------------------------------------------------------- VQA
_NUMBERS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten".split())}


def normalize_vqa_answer(text: str) -> str:
    """VQAv2-style: :func:`~arm_core.evaluate.normalize_answer` (case, punctuation,
    articles) and number words as digits (``"Two."`` -> ``"2"``)."""
    return " ".join(_NUMBERS.get(w, w) for w in normalize_answer(text).split())


@dataclass(frozen=True)
class VQAItem:
    """One question of a VQA file: the image path, the question, its accepted answers."""

    image: str
    question: str
    answers: tuple[str, ...]
    kind: str = ""
    where: str = ""


def _read_jsonl(path: Path, what: str) -> list[tuple[str, dict[str, Any]]]:
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r}: no such file")
    out = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            out.append((where, obj))
    if not out:
        raise ValueError(f"{what} {str(path)!r} holds no lines")
    return out


def _text_field(obj: dict[str, Any], name: str, where: str) -> str:
    v = obj.get(name)
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{where}: field {name!r} must be a non-empty string, got {v!r}")
    return v


def _image_field(obj: dict[str, Any], base: Path, where: str) -> str:
    p = Path(_text_field(obj, "image", where))
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise FileNotFoundError(f"{where}: image {str(p)!r} does not exist")
    return str(p)


def read_vqa_file(path: str | os.PathLike) -> list[VQAItem]:
    """The questions of a VQA JSONL (see the module docstring); errors name file and line."""
    path = Path(path)
    items = []
    for where, obj in _read_jsonl(path, "--vqa"):
        if "answers" in obj:
            ans = obj["answers"]
            if not isinstance(ans, list) or not ans or not all(isinstance(a, str) and a.strip() for a in ans):
                raise ValueError(f"{where}: field 'answers' must be a non-empty list of strings, got {ans!r}")
            answers = tuple(ans)
        else:
            answers = (_text_field(obj, "answer", where),)
        kind = obj.get("kind", "")
        items.append(VQAItem(_image_field(obj, path.parent, where), _text_field(obj, "question", where),
                             answers, str(kind), where))
    return items


def evaluate_vqa_file(und: Any, path: str | os.PathLike, *, max_new_tokens: int = 16, batch_size: int = 16,
                      progress: bool = False, keep_examples: int = 5) -> dict[str, Any]:
    """Greedy answers of the ``Understand`` pipeline ``und`` to the file's questions, scored
    by normalised exact match against any reference answer."""
    items = read_vqa_file(path)
    preds = und([it.image for it in items], [it.question for it in items], max_new_tokens=max_new_tokens,
                temperature=0.0, batch_size=batch_size, progress=progress)
    correct = [float(normalize_vqa_answer(p) in {normalize_vqa_answer(a) for a in it.answers})
               for it, p in zip(items, preds, strict=True)]
    by_kind: dict[str, list[float]] = defaultdict(list)
    for it, c in zip(items, correct, strict=True):
        if it.kind:
            by_kind[it.kind].append(c)
    out: dict[str, Any] = {"n": len(correct), "accuracy": _mean(correct), "accuracy_se": _se(correct)}
    if by_kind:
        out["by_kind"] = {k: {"n": len(v), "accuracy": _mean(v), "accuracy_se": _se(v)}
                          for k, v in sorted(by_kind.items())}
    out["examples"] = [{"question": it.question, "answers": list(it.answers), "prediction": p, "correct": bool(c)}
                       for it, p, c in list(zip(items, preds, correct, strict=True))[:keep_examples]]
    return out


# ---------------------------------------------------------------------- T2I alignment
def read_prompt_file(path: str | os.PathLike) -> tuple[list[str], list[str] | None]:
    """Prompts (and reference images, when every line gives one) from a ``.jsonl`` of
    ``{"prompt", "image"?}`` objects, or from a text file of one prompt per line."""
    path = Path(path)
    if path.suffix == ".jsonl":
        rows = _read_jsonl(path, "--t2i-prompts")
        prompts = [_text_field(obj, "prompt", where) for where, obj in rows]
        with_image = [("image" in obj) for _, obj in rows]
        if any(with_image) and not all(with_image):
            where = rows[with_image.index(False)][0]
            raise ValueError(f"{where}: no 'image' though other lines give a reference image; "
                             "give one on every line or on none")
        refs = [_image_field(obj, path.parent, where) for where, obj in rows] if all(with_image) else None
        return prompts, refs
    if not path.is_file():
        raise FileNotFoundError(f"--t2i-prompts {str(path)!r}: no such file")
    prompts = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not prompts:
        raise ValueError(f"--t2i-prompts {str(path)!r} holds no prompts")
    return prompts, None


class DualEncoder(nn.Module):
    """An image encoder and a text encoder from the registry, scored with the SigLIP head.

    The image embedding comes from the first of:

    1. ``head.embed_tokens(encoder(images)) -> (B, E)``, a SigLIP head given explicitly:
       the one a tokenizer's L_sig trained (:class:`~arm_tokenizer.losses.siglip.SigLIPLoss`,
       rebuilt from an export by ``arm_tokenizer.siglip_export.load_siglip_head``); it was
       trained on the tokenizer's reconstructed features, which L_feat makes approximate
       the encoder's own, so it is the head for ``hf_vision`` + ``hf_text`` (whose vision
       tower drops SigLIP's pooling head);
    2. ``encoder.embed_images(images) -> (B, E)``, where the image tower has a pooling
       head of its own (``hf_vision`` with ``keep_head=True``, which :meth:`from_registry`
       sets for an encoder that takes it when no head is given: then ``hf_vision`` +
       ``hf_text`` are the checkpoint's own dual encoder);
    3. ``text_encoder.embed_image_tokens(encoder(images)) -> (B, E)``, where the text
       encoder carries the image-side head it was trained with (``teacher_text``).

    Images are float ``(B, 3, H, W)`` in ``[-1, 1]`` as every ``arm.encoders`` component
    takes them. The logit scale ``t'`` and bias ``b`` come from the first of head, text
    encoder and encoder that has ``log_temperature`` / ``bias`` (or transformers'
    ``logit_scale`` / ``logit_bias``); without them only cosine scores are reported.

    Args:
        encoder: an ``arm.encoders`` component (patch tokens out).
        text_encoder: an ``arm.text_encoders`` component (``encode_text`` -> ``(B, E)``).
        head: a module with ``embed_tokens(patch_tokens) -> (B, E)`` (a SigLIP loss), or None.
        image_size: ``(height, width)`` the images are centre-cropped to before encoding;
            None = the encoder's ``image_size`` / ``img_size`` if it states one, else the
            images' own size.
    """

    def __init__(self, encoder: nn.Module, text_encoder: nn.Module, head: nn.Module | None = None,
                 image_size: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        self.encoder, self.text_encoder = encoder.eval(), text_encoder.eval()
        self.head = head.eval() if head is not None else None
        self.names = f"encoder {type(encoder).__name__} + text_encoder {type(text_encoder).__name__}" + (
            f" + head {type(head).__name__}" if head is not None else "")
        if not callable(getattr(text_encoder, "encode_text", None)):
            raise TypeError(f"{self.names}: the text encoder has no encode_text(texts)")
        if head is not None and not callable(getattr(head, "embed_tokens", None)):
            raise TypeError(f"{self.names}: the head has no embed_tokens(patch_tokens) (a SigLIP loss has)")
        if not (head is not None or _has_image_head(encoder)
                or callable(getattr(text_encoder, "embed_image_tokens", None))):
            raise TypeError(f"{self.names}: no image head: give a SigLIP head (--scorer-head TOKENIZER_DIR, a "
                            "tokenizer export trained with siglip_loss), or use an encoder with "
                            "embed_images(images) (hf_vision: keep_head: true) or a text encoder with "
                            "embed_image_tokens(patch_tokens)")
        size = image_size if image_size is not None else (
            getattr(encoder, "image_size", None) or getattr(encoder, "img_size", None))
        self.image_size = None if size is None else (
            (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1])))
        self.log_scale, self.bias = self._head_scalars()

    @classmethod
    def from_registry(cls, encoder: str, text_encoder: str | None, encoder_args: dict[str, Any] | None = None,
                      text_encoder_args: dict[str, Any] | None = None,
                      image_size: int | tuple[int, int] | None = None,
                      head_dir: str | None = None) -> DualEncoder:
        """Build both towers by registry name (``arm_tokenizer.framework.registry.create``); with
        ``head_dir`` (a tokenizer export holding ``siglip_head.json``) take its SigLIP head,
        and its text encoder unless ``text_encoder`` names one."""
        encoder_args = dict(encoder_args or {})
        if head_dir is None and "keep_head" not in encoder_args and _takes_keep_head(registry.get("encoder", encoder)):
            encoder_args["keep_head"] = True  # the tower's own image head (hf_vision drops it by default)
        enc = registry.create("encoder", encoder, **encoder_args)
        head = None
        if head_dir is not None:
            override = None if text_encoder is None else {"class_path": registry.find(
                "text_encoder", text_encoder).class_path, "init_args": dict(text_encoder_args or {})}
            head = load_siglip_head(head_dir, text_encoder=override).loss
            return cls(enc, head.text_encoder, head, image_size)
        if text_encoder is None:
            raise ValueError("the scorer needs a text encoder: --scorer-text-encoder NAME, or --scorer-head "
                             "TOKENIZER_DIR whose SigLIP head records one")
        return cls(enc, registry.create("text_encoder", text_encoder, **(text_encoder_args or {})),
                   None, image_size)

    def _head_scalars(self) -> tuple[float | None, float | None]:
        for module in (self.head, self.text_encoder, self.encoder):
            for scale_name, bias_name in (("log_temperature", "bias"), ("logit_scale", "logit_bias")):
                scale, bias = getattr(module, scale_name, None), getattr(module, bias_name, None)
                if isinstance(scale, torch.Tensor) and isinstance(bias, torch.Tensor) \
                        and scale.numel() == 1 and bias.numel() == 1:
                    return float(scale.detach()), float(bias.detach())
        return None, None

    def _device(self) -> torch.device:
        p = next(self.encoder.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    @torch.inference_mode()
    def embed_images(self, images: Sequence[Any]) -> torch.Tensor:
        """PIL images (or paths) -> ``(B, E)`` L2-normalised embeddings."""
        pil = [load_image(im) if isinstance(im, (str, os.PathLike)) else im.convert("RGB") for im in images]
        size = self.image_size or (pil[0].height, pil[0].width)
        t = ImageTransform(size, crop="center")
        x = torch.stack([pil_to_tensor(t(im)) for im in pil]).to(self._device())
        if self.head is not None:
            emb = self.head.embed_tokens(self.encoder(x))
        elif _has_image_head(self.encoder):
            emb = self.encoder.embed_images(x)
        else:
            emb = self.text_encoder.embed_image_tokens(self.encoder(x))
        return F.normalize(emb.float(), dim=-1)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> ``(B, E)`` L2-normalised embeddings."""
        return F.normalize(self.text_encoder.encode_text(list(texts)).float(), dim=-1)


def _has_image_head(encoder: nn.Module) -> bool:
    return callable(getattr(encoder, "embed_images", None)) and bool(getattr(encoder, "has_image_head", True))


def _takes_keep_head(cls: Any) -> bool:
    try:
        return "keep_head" in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def score_alignment(scorer: DualEncoder, images: Sequence[Any], prompts: Sequence[str],
                    batch_size: int = 32) -> dict[str, Any]:
    """Alignment of ``images[i]`` with ``prompts[i]`` (see the module docstring)."""
    if len(images) != len(prompts) or not prompts:
        raise ValueError(f"score_alignment: {len(images)} images for {len(prompts)} prompts")
    img = torch.cat([scorer.embed_images(images[s:s + batch_size]) for s in range(0, len(images), batch_size)])
    distinct = sorted(set(prompts))
    txt = torch.cat([scorer.embed_texts(distinct[s:s + batch_size]) for s in range(0, len(distinct), batch_size)])
    txt = txt.to(img.device)
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"{scorer.names}: image embeddings have {img.shape[1]} dimensions but text embeddings "
                         f"{txt.shape[1]}; the two towers do not share an embedding space (use the image and text "
                         "towers of one dual-encoder checkpoint)")
    own = torch.tensor([distinct.index(p) for p in prompts], device=img.device)
    sim = img @ txt.t()                                      # (N, distinct prompts)
    cos = sim.gather(1, own[:, None]).squeeze(1)
    hit = (sim.argmax(1) == own).float()
    out: dict[str, Any] = {"n": len(prompts), "cosine": _mean(cos.tolist()), "cosine_se": _se(cos.tolist()),
                           "prompt_r1": _mean(hit.tolist()), "prompt_r1_se": _se(hit.tolist()),
                           "prompts_compared": len(distinct)}
    if scorer.log_scale is not None:
        prob = torch.sigmoid(cos * math.exp(scorer.log_scale) + scorer.bias)
        out.update(siglip_prob=_mean(prob.tolist()), siglip_prob_se=_se(prob.tolist()))
    return out


def evaluate_t2i_alignment(t2i: Any, scorer: DualEncoder, prompts_path: str | os.PathLike, *,
                           guidance_scales: Sequence[float] | None = None, temperature: float = 1.0,
                           top_k: int | None = None, seed: int = 0, batch_size: int = 16,
                           progress: bool = False, cfg_scales: Sequence[float] | None = None) -> dict[str, Any]:
    """Generate one image per prompt at each of ``guidance_scales`` (default 1) and score its
    alignment (keys ``cfg=S``). ``cfg_scales``: the deprecated name of ``guidance_scales``."""
    guidance_scales = renamed_argument("evaluate_t2i_alignment", "cfg_scales", "guidance_scales", cfg_scales,
                                       guidance_scales, (1.0,))
    prompts, refs = read_prompt_file(prompts_path)
    out: dict[str, Any] = {}
    for s in guidance_scales:
        images = t2i(prompts, guidance_scale=float(s), temperature=temperature, top_k=top_k, seed=seed,
                     batch_size=batch_size, progress=progress)
        out[f"cfg={float(s):g}"] = score_alignment(scorer, images, prompts)
    if refs is not None:
        out["reference"] = score_alignment(scorer, refs, prompts)
    return out


# ---------------------------------------------------------------------- all of it
def evaluate_data(lm_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None, *,
                  data: str | None = None, loss_tasks: Sequence[str] = ("t2i", "und", "edit"),
                  max_documents: int | None = None, vqa: str | None = None, t2i_prompts: str | None = None,
                  scorer: DualEncoder | None = None, guidance_scales: Sequence[float] | None = None,
                  temperature: float = 1.0, top_k: int | None = None, seed: int = 0, batch_size: int = 16,
                  max_new_tokens: int = 16, device: str = "cpu", progress: bool = True,
                  cfg_scales: Sequence[float] | None = None) -> dict[str, Any]:
    """Load an exported LM once and run the measures asked for (see the module docstring);
    T2I alignment at each of ``guidance_scales`` (default 1; ``cfg_scales``: its deprecated
    name; the ``settings`` entry keeps the key ``cfg_scales``)."""
    guidance_scales = renamed_argument("evaluate_data", "cfg_scales", "guidance_scales", cfg_scales,
                                       guidance_scales, (1.0,))

    if not (data or vqa or t2i_prompts):
        raise ValueError("nothing to evaluate: give --data, --vqa and/or --t2i-prompts")
    if t2i_prompts and scorer is None:
        raise ValueError("--t2i-prompts needs a scorer: --scorer-encoder NAME with --scorer-text-encoder NAME "
                         "and/or --scorer-head TOKENIZER_DIR")
    if any(float(s) <= 0 for s in guidance_scales):
        raise ValueError(f"guidance scales must be > 0, got {list(guidance_scales)}")
    t0 = time.perf_counter()
    lm = load_lm(lm_dir, device=device)
    res: dict[str, Any] = {"settings": {
        "lm": str(lm.directory), "data": data, "loss_tasks": list(loss_tasks) if data else None,
        "max_documents": max_documents, "vqa": vqa, "t2i_prompts": t2i_prompts,
        "scorer": scorer.names if scorer is not None else None, "cfg_scales": [float(s) for s in guidance_scales],
        "temperature": temperature, "top_k": top_k, "seed": seed}}
    if data:
        res["loss"] = evaluate_task_loss(lm, data, loss_tasks, batch_size=batch_size,
                                         max_documents=max_documents, device=device)
    if vqa or t2i_prompts:
        vis = lm.load_visual_tokenizer(tokenizer_dir, device=device)
        if vqa:
            res["vqa"] = evaluate_vqa_file(Understand(lm, vis, device), vqa, max_new_tokens=max_new_tokens,
                                           batch_size=batch_size, progress=progress)
        if t2i_prompts:
            scorer = scorer.to(device)
            res["t2i"] = evaluate_t2i_alignment(TextToImage(lm, vis, device), scorer, t2i_prompts,
                                                guidance_scales=guidance_scales, temperature=temperature, top_k=top_k,
                                                seed=seed, batch_size=batch_size, progress=progress)
    res["summary"] = _summary(res)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res


def _summary(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "loss" in res:
        out["loss"] = {t: r["loss"] for t, r in res["loss"].items()}
        out["loss_se"] = {t: r["loss_se"] for t, r in res["loss"].items()}
    if "vqa" in res:
        out["vqa"] = {"accuracy": res["vqa"]["accuracy"], "accuracy_se": res["vqa"]["accuracy_se"]}
    if "t2i" in res:
        out["t2i"] = {k: {m: r.get(m) for m in ("cosine", "cosine_se", "prompt_r1", "prompt_r1_se",
                                                 "siglip_prob", "siglip_prob_se") if m in r}
                      for k, r in res["t2i"].items()}
    return out


def parse_component_args(text: str | None, flag: str) -> dict[str, Any]:
    """``--scorer-*-args``: a YAML/JSON mapping (``{model_name: resnet10t, checkpoint_path: x}``)."""
    if not text:
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{flag}: not valid YAML/JSON ({getattr(e, 'problem', e)})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag}: expected a mapping such as '{{name: value, ...}}', got {text!r}")
    return value


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """``--scorer-image-size``: ``N`` or ``H,W``."""
    if not text:
        return None
    parts = re.split(r"[,x]", text)
    try:
        size = [int(p) for p in parts]
    except ValueError:
        size = []
    if len(size) not in (1, 2) or min(size) < 1:
        raise ValueError(f"--scorer-image-size: expected N or H,W with positive integers, got {text!r}")
    return (size[0], size[-1])
