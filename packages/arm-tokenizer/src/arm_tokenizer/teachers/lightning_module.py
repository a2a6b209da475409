"""``TeacherTrainer``: trains the small ShapesWorld teachers, then exports them frozen.

ARM trains its tokenizer against a frozen SigLIP2 (sigmoid-loss dual encoder) and a frozen
LLM that captions images. Neither can be downloaded here, so this module trains both in
miniature on image–caption batches (``{"images": (B,3,H,W) in [-1,1], "captions": [str]}``,
e.g. arm-data's ``shapes_world`` datamodule):

- a SigLIP-style dual encoder (Zhai et al. 2023, https://arxiv.org/abs/2303.15343): a timm
  image tower whose mean-pooled patch tokens go through a head to the joint space, and a
  :class:`~arm_tokenizer.teachers.modules.TextTower` over a sentencepiece vocabulary,
  trained with the sigmoid loss (learnable ``t'`` from ``log 10``, ``b`` from ``-10``);
- a captioning LM (:class:`~arm_tokenizer.teachers.modules.CaptionDecoder`) that reads the
  image tower's patch tokens through a linear adapter as a prefix (CoCa-like: its NLL
  also trains the image tower, which makes the patch tokens more descriptive).

Loss = ``sig_weight * L_sigmoid + caption_weight * L_caption_nll`` (``+ pixel_weight *
L_pixel`` when ``pixel_weight > 0``: a small conv decoder rebuilds the image from the patch
tokens, an L1 loss, so the tokens keep where things are and what their outlines look like.
SigLIP2 gets local, dense patch features from its extra decoder and self-distillation /
masked-prediction losses; this term is our stand-in for those at toy scale. The pixel head
is a training aid and is not exported).

**Colour-free views** (``gray_prob > 0``): during training each image is, with probability
``gray_prob``, replaced by its luminance (grey in all three channels) and the
``gray_drop_words`` (the data's colour words) are removed from its caption, so the losses
ask the tower to name shape, size and place from outlines alone. Without them a tower can
code shape jointly with hue ("yellow square" features), and a reader trained on the
colour-shape pairs it saw cannot name the shape of a pair it did not see. A grey view
shows no colour, so it adds no colour-shape pair to the training data. The sentencepiece model
is trained in :meth:`setup` from the captions of the first ``spm_corpus_batches`` training
batches (deterministic: the caption *set* is sorted). When training ends, the teacher
directory is written to ``output_dir`` (see :mod:`arm_tokenizer.teachers.frozen`), ready
for ``TimmEncoder``, ``teacher_text`` and ``teacher_caption_lm``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from arm_tokenizer.decoders.conv import ConvDecoder
from arm_tokenizer.images import luminance
from arm_tokenizer.losses.contrastive import caption_match_labels, sigmoid_contrastive_loss
from arm_tokenizer.teachers.directory import save_teacher
from arm_tokenizer.teachers.modules import (
    DEFAULT_IMAGE_TOWER,
    DEFAULT_IMAGE_TOWER_KWARGS,
    CaptionDecoder,
    TextTower,
    build_image_tower,
    image_tower_mean_std,
    patch_tokens,
)
from arm_tokenizer.teachers.spm import SpmText, train_spm

__all__ = ["TeacherTrainer"]


class TeacherTrainer(pl.LightningModule):
    """Trains the SigLIP-style dual encoder and the captioning LM; exports the teacher.

    Args:
        output_dir: where the teacher directory is written when training ends.
        image_tower: timm model name of the image tower (built with ``pretrained=False``).
        image_tower_kwargs: timm kwargs; default a 3-block width-128 ViT with 8-px patches at
            64 px and no class token (64 patch tokens).
        embed_dim: width of the joint image–text embedding.
        vocab_size: sentencepiece vocabulary upper bound (also the embedding rows).
        text_dim: text tower width.
        text_depth: text tower blocks.
        text_heads: text tower attention heads.
        max_text_len: maximum sentencepiece ids per caption.
        caption_dim: captioning LM hidden size.
        caption_depth: captioning LM blocks.
        caption_heads: captioning LM attention heads.
        sig_weight: weight of the sigmoid loss.
        caption_weight: weight of the caption NLL.
        pixel_weight: weight of the dense pixel-reconstruction term (0: off, no pixel head).
        pixel_head_channels: width of the pixel head's conv decoder at the token grid.
        init_log_temperature: initial ``t'`` (SigLIP: ``log 10``).
        init_bias: initial ``b`` (SigLIP: ``-10``).
        dedupe_captions: identical caption strings in a batch count as positives.
        spm_model: path to an existing sentencepiece model (pad 0, unk 1, bos 2, eos 3);
            default: train one in :meth:`setup` from the training captions.
        spm_corpus_batches: training batches whose captions train the sentencepiece model.
        lr: AdamW peak learning rate.
        weight_decay: AdamW weight decay (matrices only).
        warmup_steps: linear warm-up steps before the cosine decay.
        gray_prob: probability that a training image is shown as a colour-free (luminance)
            view with the ``gray_drop_words`` removed from its caption; 0 = off.
        gray_drop_words: the words a colour-free view's caption loses (whole words, any
            case): every colour word the captions use, synonyms included. Required when
            ``gray_prob > 0``: a caption that names a colour the image no longer shows would
            teach the tower to guess hue from shape.
        image_size: side of the (square) training images in pixels: sets the token grid the
            pixel head decodes from (a ViT tower's own ``img_size`` kwarg takes precedence).
    """

    def __init__(
        self,
        output_dir: str = "runs/teacher",
        image_tower: str = DEFAULT_IMAGE_TOWER,
        image_tower_kwargs: dict[str, Any] | None = None,
        embed_dim: int = 128,
        vocab_size: int = 256,
        text_dim: int = 128,
        text_depth: int = 1,
        text_heads: int = 4,
        max_text_len: int = 48,
        caption_dim: int = 128,
        caption_depth: int = 2,
        caption_heads: int = 4,
        sig_weight: float = 1.0,
        caption_weight: float = 1.0,
        pixel_weight: float = 0.0,
        pixel_head_channels: int = 64,
        init_log_temperature: float = math.log(10.0),
        init_bias: float = -10.0,
        dedupe_captions: bool = True,
        spm_model: str | None = None,
        spm_corpus_batches: int = 40,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 20,
        gray_prob: float = 0.0,
        gray_drop_words: Sequence[str] | None = None,
        image_size: int = 64,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 <= gray_prob <= 1.0:
            raise ValueError(f"TeacherTrainer: gray_prob must be in [0, 1], got {gray_prob}")
        words = [str(w).strip() for w in (gray_drop_words or ()) if str(w).strip()]
        if gray_prob > 0 and not words:
            raise ValueError("TeacherTrainer: gray_prob > 0 needs gray_drop_words (the captions' colour "
                             "words): a grey view whose caption still names a colour teaches hue from shape")
        self._drop_words = (re.compile(r"\b(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
                                       + r")\b", re.IGNORECASE) if words else None)
        self._gray_seed = torch.initial_seed() % (2**31)     # seed_everything's seed
        self.output_dir = output_dir
        kwargs = dict(DEFAULT_IMAGE_TOWER_KWARGS if image_tower_kwargs is None else image_tower_kwargs)
        self.image_tower = build_image_tower(image_tower, kwargs)
        self.mean, self.std = image_tower_mean_std(self.image_tower)
        with torch.no_grad():
            size = int(kwargs.get("img_size", image_size))  # a ViT's own img_size wins
            probe = patch_tokens(self.image_tower.eval(), torch.zeros(1, 3, size, size), self.mean, self.std)
        self.image_tower.train()
        feat_dim, n_tokens = int(probe.shape[-1]), int(probe.shape[1])
        grid = int(round(math.sqrt(n_tokens)))
        self.image_tower_config = {
            "model_name": image_tower, "model_kwargs": kwargs, "mean": self.mean, "std": self.std,
            "feature_dim": feat_dim, "num_tokens": n_tokens, "image_size": size,
            "patch_size": size // grid if grid * grid == n_tokens else None,
        }
        self.text_config = dict(vocab_size=vocab_size, dim=text_dim, depth=text_depth, heads=text_heads,
                                max_len=max_text_len, embed_dim=embed_dim)
        self.caption_config = dict(vocab_size=vocab_size, dim=caption_dim, depth=caption_depth,
                                   heads=caption_heads, max_len=max_text_len + 1,
                                   max_prefix=max(256, n_tokens))
        self.text_tower = TextTower(**self.text_config)
        self.image_head = nn.Sequential(nn.LayerNorm(feat_dim), nn.Linear(feat_dim, embed_dim))
        self.log_temperature = nn.Parameter(torch.tensor(float(init_log_temperature)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))
        self.caption_decoder = CaptionDecoder(**self.caption_config)
        self.prefix_adapter = nn.Sequential(nn.LayerNorm(feat_dim), nn.Linear(feat_dim, caption_dim))
        if pixel_weight < 0:
            raise ValueError(f"TeacherTrainer: pixel_weight must be >= 0, got {pixel_weight}")
        self.pixel_head: ConvDecoder | None = None
        if pixel_weight > 0:
            if grid * grid != n_tokens or size % grid:
                raise ValueError(f"TeacherTrainer: pixel_weight > 0 needs a square token grid that divides the "
                                 f"image; the tower gives {n_tokens} tokens at {size} px")
            self.pixel_head = ConvDecoder(in_dim=feat_dim, patch_size=size // grid, channels=pixel_head_channels,
                                          num_res_blocks=1)
            self._grid = (grid, grid)
        self.spm: SpmText | None = SpmText(spm_model) if spm_model else None
        self._last_val: dict[str, float] = {}

    # ----------------------------------------------------------------- vocabulary
    def fit_spm(self, captions: list[str]) -> None:
        """Train the sentencepiece model from ``captions`` (deterministic)."""
        self.spm = SpmText(train_spm(captions, self.hparams.vocab_size))
        self._check_vocab()

    def _check_vocab(self) -> None:
        assert self.spm is not None
        if self.spm.vocab_size > self.hparams.vocab_size:
            raise ValueError(
                f"TeacherTrainer: sentencepiece model has {self.spm.vocab_size} pieces but vocab_size "
                f"is {self.hparams.vocab_size}; raise vocab_size"
            )

    def setup(self, stage: str) -> None:
        if self.spm is not None:
            self._check_vocab()
            return
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            raise RuntimeError(
                "TeacherTrainer needs a sentencepiece model: pass spm_model=..., call fit_spm(captions) "
                "before training, or train with a datamodule whose batches carry 'captions'"
            )
        captions: list[str] = []
        for i, batch in enumerate(dm.train_dataloader()):
            if "captions" not in batch:
                raise KeyError(f"TeacherTrainer: training batches need a 'captions' key, got {sorted(batch)}")
            captions.extend(batch["captions"])
            if i + 1 >= self.hparams.spm_corpus_batches:
                break
        self.fit_spm(captions)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.spm is not None:
            checkpoint["teacher_spm_proto"] = self.spm.proto

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "teacher_spm_proto" in checkpoint:
            self.spm = SpmText(bytes(checkpoint["teacher_spm_proto"]))

    # ----------------------------------------------------------------- model
    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Images in ``[-1, 1]`` -> ``(B, N, C)`` patch tokens of the image tower."""
        return patch_tokens(self.image_tower, images, self.mean, self.std)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.image_head(self.image_tokens(images).mean(1)), dim=-1)

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        assert self.spm is not None, "call fit_spm() first"
        return self.text_tower(self.spm.batch(texts, self.hparams.max_text_len).to(self.device))

    def losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.spm is None:
            raise RuntimeError("TeacherTrainer: no sentencepiece model yet (see setup / fit_spm)")
        images, captions = batch["images"], list(batch["captions"])
        tokens = self.image_tokens(images)
        img = nn.functional.normalize(self.image_head(tokens.mean(1)), dim=-1)
        txt = self.embed_texts(captions)
        labels = caption_match_labels(captions, self.hparams.dedupe_captions).to(img)
        sig = sigmoid_contrastive_loss(img, txt, self.log_temperature, self.bias, labels)
        ids = self.spm.batch(captions, self.hparams.max_text_len).to(self.device)
        cap = self.caption_decoder.nll(self.prefix_adapter(tokens), ids)
        with torch.no_grad():
            pred = (img @ txt.t()).argmax(1)
            r1 = labels[torch.arange(len(pred), device=pred.device), pred].mean()
        total = self.hparams.sig_weight * sig + self.hparams.caption_weight * cap
        out = {"loss": total, "loss_sig": sig, "loss_cap": cap, "batch_r1": r1}
        if self.pixel_head is not None:
            pix = nn.functional.l1_loss(self.pixel_head(tokens, self._grid), images)
            out["loss"] = total + self.hparams.pixel_weight * pix
            out["loss_pix"] = pix
        return out

    def colour_free(self, images: torch.Tensor, captions: list[str],
                    which: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        """The batch with the images ``which`` selects as luminance views and their captions
        without the ``gray_drop_words`` (see the module docstring)."""
        if self._drop_words is None:
            raise ValueError("TeacherTrainer.colour_free needs gray_drop_words")
        images = torch.where(which.view(-1, 1, 1, 1), luminance(images), images)
        captions = [" ".join(self._drop_words.sub(" ", c).split()) if k else c
                    for c, k in zip(captions, which.tolist(), strict=True)]
        return images, captions

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if self.hparams.gray_prob > 0:
            images = batch["images"]
            # drawn from (run seed, step), not the global stream, so a resumed run repeats it
            g = torch.Generator().manual_seed(self._gray_seed * 1_000_003 + self.global_step)
            which = (torch.rand(images.shape[0], generator=g) < self.hparams.gray_prob).to(images.device)
            images, captions = self.colour_free(images, list(batch["captions"]), which)
            batch = {**batch, "images": images, "captions": captions}
        out = self.losses(batch)
        b = batch["images"].shape[0]
        self.log_dict({f"train/{k}": v.detach() for k, v in out.items()}, prog_bar=False, batch_size=b)
        self.log("train/temperature", self.log_temperature.detach().exp(), batch_size=b)
        self.log("train/bias", self.bias.detach(), batch_size=b)
        return out["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.losses(batch)
        self.log_dict({f"val/{k}": v for k, v in out.items()}, batch_size=batch["images"].shape[0])

    def on_validation_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics if self._trainer is not None else {}
        self._last_val = {k: float(v) for k, v in metrics.items() if k.startswith("val/")}

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.ndim >= 2 and "pos" not in name else no_decay).append(p)
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.hparams.lr, betas=(0.9, 0.95),
        )
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1000
        warm = max(1, min(self.hparams.warmup_steps, total // 2))

        def schedule(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm)))) * 0.9 + 0.1

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ----------------------------------------------------------------- export
    def export(self, directory: str | None = None, metrics: dict[str, float] | None = None) -> str:
        """Write the teacher directory (atomic files); returns its path."""
        if self.spm is None:
            raise RuntimeError("TeacherTrainer.export: no sentencepiece model (nothing trained yet)")
        out = save_teacher(
            directory or self.output_dir,
            image_tower=self.image_tower, image_tower_config=self.image_tower_config,
            text_tower=self.text_tower, text_config=self.text_config,
            image_head=self.image_head, log_temperature=self.log_temperature, bias=self.bias,
            caption_decoder=self.caption_decoder, caption_config=self.caption_config,
            prefix_adapter=self.prefix_adapter, spm_proto=self.spm.proto,
            metrics=metrics if metrics is not None else self._last_val,
        )
        return str(out)

    def on_train_end(self) -> None:
        if self.trainer.is_global_zero and not getattr(self.trainer, "fast_dev_run", False):
            path = self.export()
            print(f"teacher written to {path}")
