"""How good is a visual tokenizer on ShapesWorld: reconstruction, parse-back, usage, semantics.

One function, :func:`evaluate_tokenizer`, and the shell command
``arm-data shapes eval-tokenizer --tokenizer DIR [--teacher DIR]``. It measures, on the
scenes of one split (``heldout`` by default):

- **reconstruction**: PSNR and SSIM of ``decode(encode(x))`` against ``x`` on 8-bit images
  (as they would be saved), through torchmetrics;
- **parse-back**: the ShapesWorld evaluator run on the reconstruction against the scene's
  own spec. ``parse_back_strict`` is the fraction of scenes whose reconstruction passes
  every clause, counted over the scenes whose *original* passes (the evaluator's own misses
  are not the tokenizer's); ``parse_back_score`` is the mean clause-level score. This is
  the ceiling of any text-to-image score reached through this tokenizer.
  ``parse_back_by_clause`` splits the score by clause kind (``count``, ``presence``: the
  object is found with the right shape, ``color``, ``size``, ``region``, ``relation``), so
  a low strict rate says what the reconstructions get wrong;
- **codebook usage**: the fraction of codes used at least once over the split's tokens;
- **semantics** (ARM's claim that the tokens are semantic): a linear probe on mean-pooled
  de-quantized token features classifies the color and the shape of single-object scenes
  (fit on the train split, tested on ``probe_split``, ``val`` by default: on ``heldout``
  single-object scenes every color comes with a shape it never had in training, so a probe
  that reads color alone is wrong on shape by construction), and, given the frozen text encoder of a
  teacher, zero-shot caption retrieval R@1 through a ridge map fit on the train split;
- **object probe** (``object_probe``): the same question asked of every object of scenes
  with any number of objects, read from the de-quantized tokens of the object's own 3x3
  neighbourhood, with the test accuracy split by the scene's object count (``single``,
  ``two``, ``three_plus``). The single-object probe can read 99% while an object's shape is
  lost once a neighbour shares its tokens; an LM answering "what color is the star?" in a
  crowded scene needs it there. ``shape_by_pair`` / ``color_by_pair`` split the same
  accuracy by whether the object's (color, shape) is a held-out pair (``heldout_pair``:
  tested on the ``heldout`` split, a reader fit on train must name the shape of a pair it
  never saw) or not (``seen_pair``); features that code shape jointly with color fail the
  first and pass the second.

arm-data depends on arm-tokenizer, so this lives here rather than in arm-tokenizer, whose
users may not have ShapesWorld.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from arm_tokenizer.images import pil_to_tensor, tensor_to_pil
from arm_tokenizer.probe import (
    fit_linear_probe,
    labels_to_ids,
    linear_probe_accuracy,
    pooled_token_embeddings,
    ridge_retrieval_at_1,
)

from arm_data.shapes.difficulty import get_difficulty
from arm_data.shapes.spec import COUNT_GROUPS, count_group
from arm_data.shapes.world import ShapesWorld

__all__ = ["evaluate_tokenizer", "object_neighbourhoods", "object_probe", "object_probe_features",
           "reconstruction_metrics", "scene_images", "shapes_scenes"]


def shapes_scenes(split: str, n: int, seed: int, size: int, single_object: bool = False,
                  difficulty: Any = "full") -> list[Any]:
    """The first ``n`` ShapesWorld samples of ``split`` at ``size`` px (only single-object
    scenes when ``single_object``) in a world of ``difficulty``: the scenes every tokenizer
    measurement here uses."""
    world = ShapesWorld(split=split, seed=seed, width=size, height=size, difficulty=difficulty)
    out, i = [], 0
    while len(out) < n:
        if i >= 50 * n:
            raise RuntimeError(f"found only {len(out)} of {n} single-object scenes in the first {i} "
                               f"samples of split {split!r}")
        s = world[i]
        i += 1
        if not single_object or len(s.spec.objects) == 1:
            out.append(s)
    return out


def scene_images(samples: Sequence[Any]) -> torch.Tensor:
    """The samples' images as one ``(B, 3, H, W)`` tensor in [-1, 1]."""
    return torch.stack([pil_to_tensor(s.image) for s in samples])


def object_neighbourhoods(features: torch.Tensor, samples: Sequence[Any], radius: int = 1) -> torch.Tensor:
    """Each object's token neighbourhood: ``(num_objects, (2 radius + 1)^2 * C)``, objects in
    scene order, from ``features`` ``(B, N, C)`` on a square grid of ``N`` tokens (one row
    per sample). The centre is the token under the object's centre; positions outside the
    grid are zeros."""
    b, n, c = features.shape
    g = math.isqrt(n)
    if g * g != n or b != len(samples):
        raise ValueError(f"object_neighbourhoods: need (B, N, C) features on a square grid for "
                         f"{len(samples)} samples, got {tuple(features.shape)}")
    r = int(radius)
    grid = torch.nn.functional.pad(features.view(b, g, g, c).permute(0, 3, 1, 2), (r, r, r, r))
    rows = []
    for k, sample in enumerate(samples):
        for o in sample.spec.objects:
            i, j = min(g - 1, int(o.y * g)), min(g - 1, int(o.x * g))
            rows.append(grid[k, :, i : i + 2 * r + 1, j : j + 2 * r + 1].permute(1, 2, 0).reshape(-1))
    return torch.stack(rows) if rows else features.new_zeros(0, (2 * r + 1) ** 2 * c)


def object_probe(features_of: Any, train: Sequence[Any], test: Sequence[Any], batch_size: int = 64,
                 radius: int = 1) -> dict[str, Any]:
    """Linear probes for each object's color and shape on its token neighbourhood, with
    ``features_of(images) -> (B, N, C)`` run over the ``train`` and ``test`` scenes in
    batches; see :func:`object_probe_features`."""

    def features(samples: Sequence[Any]) -> torch.Tensor:
        x = scene_images(samples)
        return torch.cat([features_of(x[i : i + batch_size]).float().cpu() for i in range(0, len(x), batch_size)])

    return object_probe_features(features(train), features(test), train, test, radius)


def object_probe_features(train_features: torch.Tensor, test_features: torch.Tensor, train: Sequence[Any],
                          test: Sequence[Any], radius: int = 1) -> dict[str, Any]:
    """Linear probes for each object's color and shape on its token neighbourhood
    (:func:`object_neighbourhoods` of the ``(B, N, C)`` features of each scene), fit on the
    objects of ``train``, tested on those of ``test``; accuracy per :data:`COUNT_GROUPS`
    entry of the test scene (``None`` where the test set has no such scene). Takes
    features already computed, so one forward pass serves several radii."""
    ftr = object_neighbourhoods(train_features.float(), train, radius)
    fte = object_neighbourhoods(test_features.float(), test, radius)
    groups = [count_group(s.spec.count) for s in test for _ in s.spec.objects]
    members = {g: [i for i, h in enumerate(groups) if h == g] for g in COUNT_GROUPS}
    out: dict[str, Any] = {"neighbourhood": f"{2 * radius + 1}x{2 * radius + 1}",
                           "n": {g: len(idx) for g, idx in members.items()}}
    held_pairs = set(test[0].difficulty.heldout_pairs) if test else set()  # the samples' own world
    held = [(o.color, o.shape) in held_pairs for s in test for o in s.spec.objects]
    pairs = {"heldout_pair": [i for i, h in enumerate(held) if h],
             "seen_pair": [i for i, h in enumerate(held) if not h]}
    out["n_by_pair"] = {k: len(idx) for k, idx in pairs.items()}
    for attr in ("color", "shape"):
        ytr_labels = [getattr(o, attr) for s in train for o in s.spec.objects]
        yte_labels = [getattr(o, attr) for s in test for o in s.spec.objects]
        classes = sorted(set(ytr_labels) | set(yte_labels))
        ytr, _ = labels_to_ids(ytr_labels, classes)
        yte, _ = labels_to_ids(yte_labels, classes)
        hit = (fit_linear_probe(ftr, ytr, len(classes))(fte).argmax(1) == yte).double()
        out[attr] = {g: float(hit[idx].mean()) if idx else None for g, idx in members.items()}
        out[f"{attr}_by_pair"] = {k: float(hit[idx].mean()) if idx else None for k, idx in pairs.items()}
    return out


def _u8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] quantized to 8 bits, as the image would be written to a PNG."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 255.0


def reconstruction_metrics(recon: torch.Tensor, images: torch.Tensor, samples: Sequence[Any]) -> dict[str, Any]:
    """PSNR/SSIM on 8-bit images and the evaluator's parse-back of ``recon`` (``(B, 3, H, W)``
    in [-1, 1]) against ``images`` and the ``samples``' specs (see the module docstring)."""
    # deferred: torchmetrics takes seconds to import and the evaluator pulls scipy; only here
    from torchmetrics.functional.image import (
        peak_signal_noise_ratio,
        structural_similarity_index_measure,
    )

    from arm_data.shapes.evaluator import clause_pass_rates, evaluate_t2i

    recon = recon.float().cpu()
    original = [evaluate_t2i(s.image, s.spec) for s in samples]
    rebuilt = [evaluate_t2i(tensor_to_pil(recon[i]), s.spec) for i, s in enumerate(samples)]
    ok = [b.strict for a, b in zip(original, rebuilt, strict=True) if a.strict]
    return {
        "psnr": float(peak_signal_noise_ratio(_u8(recon), _u8(images), data_range=1.0)),
        "ssim": float(structural_similarity_index_measure(_u8(recon), _u8(images), data_range=1.0)),
        "parse_back_strict": sum(ok) / len(ok) if ok else math.nan,
        "parse_back_score": sum(b.score for b in rebuilt) / len(rebuilt),
        "parse_back_by_clause": dict(sorted(clause_pass_rates(c for b in rebuilt for c in b.clauses).items())),
        "originals_strict": sum(a.strict for a in original) / len(original),
    }


@torch.no_grad()
def evaluate_tokenizer(
    tokenizer: Any,
    *,
    split: str = "heldout",
    n: int = 256,
    text_encoder: Any | None = None,
    probe_train: int = 400,
    probe_test: int = 200,
    probe_split: str = "val",
    object_probe_train: int = 600,
    object_probe_test: int = 300,
    seed: int = 0,
    batch_size: int = 64,
    decode_steps: int | None = None,
    difficulty: Any = "full",
) -> dict[str, Any]:
    """Measure ``tokenizer`` (a :class:`~arm_tokenizer.VisualTokenizer`) on ShapesWorld.

    Args:
        tokenizer: the tokenizer; its ``image_size`` sets the scene resolution (square).
        split: the ShapesWorld split to measure on (``heldout``: attribute combinations
            never seen in training).
        n: scenes for reconstruction, parse-back, usage and retrieval.
        text_encoder: anything with ``encode_text(list[str]) -> (N, D)`` (the teacher's
            frozen text tower); retrieval is skipped (``None``) without one.
        probe_train / probe_test: single-object scenes to fit / test the linear probe on
            (0 skips the probe).
        probe_split: the split the probes are tested on.
        object_probe_train / object_probe_test: scenes of any object count to fit / test the
            object probe on (0 skips it).
        seed: the worlds' seed.
        batch_size: images per forward pass.
        decode_steps: sampler steps for a generative (DiT) decoder.
        difficulty: the ShapesWorld the scenes come from (``full``, ``demo`` or Difficulty fields).

    Returns a JSON-ready dict (see the module docstring for each entry).
    """
    h, w = tokenizer.image_size
    if h != w:
        raise ValueError(f"evaluate_tokenizer: ShapesWorld scenes here are square; the tokenizer takes {h}x{w}")
    if n < 1:
        raise ValueError(f"evaluate_tokenizer: n must be >= 1, got {n}")
    was_training = tokenizer.training
    tokenizer.eval()
    try:
        samples = shapes_scenes(split, n, seed, h, difficulty=difficulty)
        x = scene_images(samples)
        counts = torch.zeros(tokenizer.codebook_size)
        recon = []
        kw = {"steps": decode_steps} if decode_steps else {}
        for i in range(0, n, batch_size):
            idx = tokenizer.encode(x[i : i + batch_size])
            counts += torch.bincount(idx.flatten().cpu(), minlength=tokenizer.codebook_size).float()
            recon.append(tokenizer.decode(idx, **kw).float().cpu())
        r = torch.cat(recon)
        result: dict[str, Any] = {
            "split": split, "difficulty": get_difficulty(difficulty).name, "n": n, "image_size": h, "tokens_per_image": tokenizer.tokens_per_image,
            "codebook_size": tokenizer.codebook_size,
            **reconstruction_metrics(r, x, samples),
            "codebook_usage": float((counts > 0).float().mean()),
            "probe_split": probe_split, "probe_color": None, "probe_shape": None, "retrieval_r1_ridge": None,
            "object_probe": None,
        }
        if probe_train > 0 and probe_test > 0:
            tr = shapes_scenes("train", probe_train, seed + 1, h, single_object=True, difficulty=difficulty)
            te = shapes_scenes(probe_split, probe_test, seed, h, single_object=True, difficulty=difficulty)
            ftr = pooled_token_embeddings(tokenizer, scene_images(tr), batch_size)
            fte = pooled_token_embeddings(tokenizer, scene_images(te), batch_size)
            for attr in ("color", "shape"):
                result[f"probe_{attr}"] = linear_probe_accuracy(
                    ftr, [getattr(s.spec.objects[0], attr) for s in tr],
                    fte, [getattr(s.spec.objects[0], attr) for s in te])
        if object_probe_train > 0 and object_probe_test > 0:
            result["object_probe"] = object_probe(
                lambda im: tokenizer(im).features,
                shapes_scenes("train", object_probe_train, seed + 3, h, difficulty=difficulty),
                shapes_scenes(probe_split, object_probe_test, seed, h, difficulty=difficulty), batch_size)
        if text_encoder is not None:
            fit = shapes_scenes("train", max(n, 256), seed + 2, h, difficulty=difficulty)
            f_fit = pooled_token_embeddings(tokenizer, scene_images(fit), batch_size)
            f_test = pooled_token_embeddings(tokenizer, x, batch_size)
            t_fit = text_encoder.encode_text([s.caption for s in fit]).float().cpu()
            t_test = text_encoder.encode_text([s.caption for s in samples]).float().cpu()
            result["retrieval_r1_ridge"] = ridge_retrieval_at_1(f_fit, t_fit, f_test, t_test,
                                                                [s.caption for s in samples])
        return result
    finally:
        tokenizer.train(was_training)
