"""``TokenizerTrainer``: the LightningModule that trains a :class:`VisualTokenizer`.

The components are injected (typed by their base classes, so YAML picks any registered
encoder/quantizer/decoder/projection/loss); this module wires them into a
``VisualTokenizer``, sums the weighted losses plus the quantizer's auxiliary loss, and logs
each term separately (``train/loss_<name>``), the codebook usage from step 0, PSNR/SSIM
(and LPIPS when its weights exist) on the validation set, and reconstruction grids
(TensorBoard images and PNG files under the log directory).

Optimization follows ARM's tokenizer recipe by default: AdamW, lr 3e-4, betas (0.9, 0.95)
(paper); linear warm-up then cosine decay, gradient clipping at 1.0 and weight decay 0
(our choices). When a loss trains an adversary (the PatchGAN of ``pixel_loss``) the module
switches to manual optimization with a second AdamW for the discriminator (Lightning then
counts both optimizers' steps in ``global_step`` and ``trainer.max_steps``; the GAN warm-up
and the LR schedule count tokenizer steps only). Optional EMA
weights (``ema_decay``) are used for validation and export. ``export_dir`` receives
``save_pretrained`` at the end of fit (see also :class:`arm_tokenizer.callbacks.ExportTokenizer`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from arm_tokenizer import schedules
from arm_tokenizer.buckets import check_buckets
from arm_tokenizer.callbacks import log_image_grid, make_grid
from arm_tokenizer.decoders.base import Decoder
from arm_tokenizer.encoders.base import Encoder
from arm_tokenizer.framework.checkpoint import load_weights_into
from arm_tokenizer.framework.deprecation import moved_names
from arm_tokenizer.framework.hparams import set_hparams
from arm_tokenizer.images import canonical_size, check_size
from arm_tokenizer.losses.base import LossInputs, TokenizerLoss
from arm_tokenizer.losses.flow import FlowMatchingLoss
from arm_tokenizer.losses.pixel import PixelReconstructionLoss, build_lpips, lpips_backbone_path
from arm_tokenizer.projections import Projection
from arm_tokenizer.quantizers.base import Quantizer
from arm_tokenizer.quantizers.usage import CodebookUsage
from arm_tokenizer.siglip_export import save_siglip_heads
from arm_tokenizer.tokenizer import TokenizerForward, VisualTokenizer

__all__ = ["TokenizerTrainer", "EMAWeights", "TOKENIZER_PARTS"]

# warmup_cosine moved to arm_tokenizer.schedules
__getattr__ = moved_names(__name__, {"warmup_cosine": "arm_tokenizer.schedules"})

# The VisualTokenizer parts ``TokenizerTrainer(freeze=..., init_parts=...)`` name.
TOKENIZER_PARTS = ("encoder", "proj_in", "quantizer", "proj_out", "decoder")


class EMAWeights:
    """Exponential moving average of a module's trainable parameters.

    Only parameters with ``requires_grad`` are shadowed (a frozen SigLIP2 tower is not
    copied). The decay warms up as ``min(decay, (1 + n) / (10 + n))`` so early averages are
    not dominated by the random initialisation.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = module
        self.num_updates = 0
        self.shadow = {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for n, p in self.module.named_parameters():
            if n in self.shadow:
                s = self.shadow[n]
                if s.device != p.device:
                    s = self.shadow[n] = s.to(p.device)
                s.lerp_(p.detach(), 1.0 - d)

    @contextmanager
    def swapped(self) -> Iterator[None]:
        """Temporarily load the EMA weights into the module."""
        params = dict(self.module.named_parameters())
        backup = {n: params[n].detach().clone() for n in self.shadow}
        with torch.no_grad():
            for n, s in self.shadow.items():
                params[n].copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for n, b in backup.items():
                    params[n].copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return {"num_updates": self.num_updates, "shadow": {n: s.cpu() for n, s in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = sorted(set(self.shadow) - set(state["shadow"]))
        if missing:
            raise KeyError(f"EMA state is missing parameters {missing[:5]}{'...' if len(missing) > 5 else ''}")
        self.num_updates = int(state["num_updates"])
        for n in self.shadow:
            self.shadow[n] = state["shadow"][n].to(self.shadow[n].device)


class TokenizerTrainer(LightningModule):
    """Trains encoder -> proj_in -> quantizer -> proj_out -> decoder with weighted losses."""

    def __init__(
        self,
        encoder: Encoder,
        quantizer: Quantizer,
        decoder: Decoder,
        proj_in: Projection | None = None,
        proj_out: Projection | None = None,
        losses: list[TokenizerLoss] | None = None,
        image_size: int | tuple[int, int] = 64,
        buckets: list[tuple[int, int]] | None = None,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        max_steps: int | None = None,
        min_lr_ratio: float = 0.1,
        grad_clip: float | None = 1.0,
        disc_lr: float | None = None,
        ema_decay: float | None = None,
        export_dir: str | None = None,
        val_decode_steps: int = 10,
        num_grid_images: int = 8,
        val_lpips: bool | None = None,
        lpips_net: Literal["alex", "vgg", "squeeze"] = "alex",
        init_from: str | None = None,
        init_parts: list[str] | None = None,
        freeze: list[str] | None = None,
    ) -> None:
        """
        Args:
            encoder: image encoder (``arm.encoders``), frozen or trainable.
            quantizer: discrete bottleneck (``arm.quantizers``), e.g. FSQ.
            decoder: ``arm.decoders`` component (conv, pixel_dit, latent_dit).
            proj_in: encoder width -> code width (``arm.projections``); None = identity.
            proj_out: code width -> decoder/encoder width; None = identity.
            losses: weighted loss terms (``arm.tokenizer_losses``). None = L_pix matched to
                the decoder (``pixel_loss`` for direct decoders, ``flow_matching`` for DiTs).
                The quantizer's auxiliary loss is always added.
            image_size: training resolution, an int (square) or ``[height, width]``; the
                data module's ``image_size`` must say the same. It is the size the exported
                tokenizer states.
            buckets: further training sizes ``[height, width]``: the aspect-ratio buckets of
                the data module (each batch at one of them, see :mod:`arm_tokenizer.buckets`);
                each must be a multiple of the encoder's patch size. None = ``image_size`` only.
            lr: AdamW learning rate (ARM: 3e-4).
            betas: AdamW betas (ARM: (0.9, 0.95)).
            weight_decay: AdamW weight decay.
            warmup_steps: linear LR warm-up steps.
            max_steps: cosine-decay horizon in optimizer steps; None = the trainer's
                estimated stepping batches (constant LR when that is unbounded).
            min_lr_ratio: final LR as a fraction of ``lr``.
            grad_clip: gradient-norm clip of the tokenizer's parameters (None = off).
            disc_lr: learning rate of the GAN discriminator (None = ``lr``).
            ema_decay: keep an EMA of the weights with this decay (e.g. 0.999) for
                validation and export; None = off.
            export_dir: write ``save_pretrained`` here at the end of fit (None = off).
            val_decode_steps: sampler steps when validating generative decoders.
            num_grid_images: images per reconstruction grid (0 = no grids).
            val_lpips: LPIPS as a validation metric: True = required, False = off, None =
                on only when the backbone's weights are available locally.
            lpips_net: LPIPS backbone for the metric (``alex``, ``vgg``, ``squeeze``).
            init_from: start from an exported tokenizer (a ``save_pretrained`` directory):
                its weights are loaded into the components built here, which must have its
                structure (a mismatch lists the differing keys). Also how to score an
                export on a config's validation data: ``arm-tokenizer validate --config
                X.yaml --model.init_from DIR`` logs its losses, PSNR/SSIM and codebook usage;
                ``arm-tokenizer evaluate --tokenizer DIR --data PATH`` reports every figure
                (also LPIPS, rFID, zero-shot, retrieval) on any image folder/JSONL/WebDataset.
            init_parts: the parts loaded from ``init_from`` (None: all), any of
                ``encoder``, ``proj_in``, ``quantizer``, ``proj_out``, ``decoder``; a part
                left out keeps its fresh initialisation (e.g. a wider decoder trained anew on
                the same tokens).
            freeze: tokenizer parts kept fixed, any of ``encoder``, ``proj_in``,
                ``quantizer``, ``proj_out``, ``decoder``. With ``init_from``, freezing
                ``encoder``, ``proj_in`` and ``quantizer`` keeps every image's token ids, so
                an LM trained on them stays valid while the decoder is retrained (decoder
                fine-tuning).
        """
        super().__init__()
        # One spelling of the size (int if square, else (height, width)), as the data modules
        # store theirs: Lightning refuses to merge hyper-parameters that differ even in type.
        image_size = canonical_size(image_size, "TokenizerTrainer.image_size")
        buckets = check_buckets(buckets, "TokenizerTrainer.buckets") if buckets is not None else None
        self.save_hyperparameters(ignore=["encoder", "quantizer", "decoder", "proj_in", "proj_out", "losses"])
        set_hparams(self, image_size=image_size, buckets=buckets)  # under LightningCLI the saved value is the YAML's
        self.tokenizer = VisualTokenizer(encoder, quantizer, decoder, proj_in=proj_in, proj_out=proj_out,
                                         image_size=image_size)
        if init_from is not None:
            if not Path(init_from).is_dir():
                raise FileNotFoundError(f"TokenizerTrainer.init_from: directory not found: {init_from}")
            load_weights_into(self.tokenizer, init_from,
                              parts=None if init_parts is None else self._check_parts(init_parts, "init_parts"))
        elif init_parts is not None:
            raise ValueError("TokenizerTrainer.init_parts needs init_from (the directory to load them from)")
        self.frozen_parts = self._freeze(freeze or [])
        p = encoder.patch_size
        for h, w in buckets or []:
            if h % p or w % p:
                raise ValueError(f"TokenizerTrainer.buckets: {h}x{w} is not a multiple of the encoder's patch "
                                 f"size {p}")
        self.allowed_sizes = {self.tokenizer.image_size, *(buckets or [])}
        if losses is None:
            losses = [FlowMatchingLoss() if decoder.generative else PixelReconstructionLoss()]
        if not losses:
            raise ValueError("TokenizerTrainer: `losses` is empty; give at least one tokenizer loss")
        names = [loss.name for loss in losses]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"TokenizerTrainer: loss names must be unique (they are log keys); "
                             f"duplicated: {dup}. Set `name:` on one of them")
        for loss in losses:
            if not isinstance(loss, TokenizerLoss):
                raise TypeError(f"TokenizerTrainer: losses must be TokenizerLoss components, got "
                                f"{type(loss).__name__}")
        self.losses = nn.ModuleList(losses)
        self.adversarial = [loss for loss in losses if loss.adversary() is not None]
        self.automatic_optimization = not self.adversarial
        self.needs_captions = [loss.name for loss in losses if loss.needs_captions]
        if len(betas) != 2:
            raise ValueError(f"TokenizerTrainer.betas must be two floats, got {betas}")

        q = self.tokenizer.quantizer
        self.train_usage = CodebookUsage(q.codebook_size, q.num_codebooks, prefix="train/codebook_")
        self.val_usage = CodebookUsage(q.codebook_size, q.num_codebooks, prefix="val/codebook_")
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        self.val_lpips_metric = MeanMetric()
        # Kept out of the module tree (not in checkpoints); moved to the device in on_validation_start.
        self.__dict__["_lpips"] = self._maybe_lpips(val_lpips, lpips_net)
        self.ema = EMAWeights(self.tokenizer, ema_decay) if ema_decay is not None else None
        self._gen_steps = 0  # generator (tokenizer) optimizer steps: the GAN warm-up clock

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _check_parts(parts: list[str], field: str) -> list[str]:
        unknown = sorted(set(parts) - set(TOKENIZER_PARTS))
        if unknown:
            raise ValueError(f"TokenizerTrainer.{field}: unknown part(s) {unknown}; choose from {list(TOKENIZER_PARTS)}")
        return list(parts)

    def _freeze(self, parts: list[str]) -> list[str]:
        # VisualTokenizer always has all five parts (absent projections are nn.Identity).
        for name in self._check_parts(parts, "freeze"):
            getattr(self.tokenizer, name).requires_grad_(False)
        return list(parts)

    def train(self, mode: bool = True) -> TokenizerTrainer:
        super().train(mode)
        # Frozen parts stay in eval mode (no FSQ noise, dropout or BN updates that would move
        # the token ids an LM was trained on).
        for name in self.frozen_parts:
            getattr(self.tokenizer, name).eval()
        return self

    @staticmethod
    def _maybe_lpips(val_lpips: bool | None, net: str) -> nn.Module | None:
        if val_lpips is False:
            return None
        if val_lpips is None and not os.path.isfile(lpips_backbone_path(net)):
            return None
        return build_lpips(net)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.tokenizer.parameters() if p.requires_grad]
        adv_ids = {id(p) for loss in self.adversarial for p in loss.adversary().parameters()}
        # Loss-owned trainable parameters (e.g. L_sig's temperature and bias) train with the
        # tokenizer; discriminators get their own optimizer.
        params += [p for p in self.losses.parameters() if p.requires_grad and id(p) not in adv_ids]
        if not params:
            raise ValueError("TokenizerTrainer: nothing to train (every parameter is frozen)")
        opt = torch.optim.AdamW(params, lr=hp.lr, betas=tuple(hp.betas), weight_decay=hp.weight_decay)
        total = hp.max_steps
        if total is None and self._trainer is not None:
            est = self.trainer.estimated_stepping_batches
            total = int(est) if est is not None and math.isfinite(est) else None
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: schedules.warmup_cosine(s, hp.warmup_steps, total, hp.min_lr_ratio))
        g = {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        if not self.adversarial:
            return g
        disc_params = [p for loss in self.adversarial for p in loss.adversary().parameters()]
        opt_d = torch.optim.AdamW(disc_params, lr=hp.disc_lr or hp.lr, betas=tuple(hp.betas),
                                  weight_decay=hp.weight_decay)
        return [g, {"optimizer": opt_d}]

    # ------------------------------------------------------------------ setup
    @property
    def min_image_side(self) -> int:
        """The smallest source-image side worth training on: one encoder patch. The data
        modules read it at setup (``min_side: None``) and refuse smaller images by name."""
        return int(self.tokenizer.encoder.patch_size)

    def setup(self, stage: str) -> None:
        """Check the data module's sizes against the encoder before any batch is read: each
        of its ``image_size`` / ``buckets`` must be at least one patch and a multiple of it."""
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return
        p = self.min_image_side
        name = type(dm).__name__
        stated = [(f"{name}.image_size", getattr(dm, "image_size", None))]
        stated += [(f"{name}.buckets[{i}]", b) for i, b in enumerate(getattr(dm, "buckets", None) or [])]
        for field, size in stated:
            if size is None:
                continue
            h, w = check_size(size, field)
            if h < p or w < p:
                raise ValueError(f"{field} is {h}x{w}, smaller than one {p}x{p} patch of the encoder "
                                 f"({type(self.tokenizer.encoder).__name__}); use at least {p}x{p}")
            if h % p or w % p:
                raise ValueError(f"{field} is {h}x{w}, not a multiple of the encoder's patch size {p} "
                                 f"({type(self.tokenizer.encoder).__name__}); use e.g. "
                                 f"{max(p, h // p * p)}x{max(p, w // p * p)}")

    # ------------------------------------------------------------------ batches
    def _images(self, batch: Any) -> torch.Tensor:
        images = batch["images"] if isinstance(batch, dict) else batch
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"TokenizerTrainer: batch['images'] must be a (B, 3, H, W) tensor, got {got}")
        if not images.is_floating_point():
            raise TypeError(f"TokenizerTrainer: batch['images'] must be float in [-1, 1], got {images.dtype}")
        if tuple(images.shape[-2:]) not in self.allowed_sizes:
            what = (f"image_size is {self.tokenizer.image_size}" if len(self.allowed_sizes) == 1 else
                    f"image_size and buckets allow {sorted(self.allowed_sizes)}")
            raise ValueError(f"TokenizerTrainer: images are {tuple(images.shape[-2:])} but {what}; set the "
                             f"data's and the model's sizes alike")
        return images

    def _captions(self, batch: Any) -> list[str] | None:
        captions = batch.get("captions") if isinstance(batch, dict) else None
        if self.needs_captions and captions is None:
            raise ValueError(f"TokenizerTrainer: losses {self.needs_captions} need captions but the batch has "
                             "no 'captions' key; use a datamodule that yields captions")
        return list(captions) if captions is not None else None

    def _loss_inputs(self, batch: Any, images: torch.Tensor, out: TokenizerForward) -> LossInputs:
        decoder = self.tokenizer.decoder
        recon = None if decoder.generative else decoder(out.features, out.grid)
        extra = {k: v for k, v in batch.items() if k not in ("images", "captions")} if isinstance(batch, dict) else {}
        return LossInputs(
            images=images, grid=out.grid, encoder_features=out.encoder_features, pre_quant=out.pre_quant,
            quantized=out.quant.quantized, features=out.features, indices=out.quant.indices,
            decoder=decoder, encoder=self.tokenizer.encoder, captions=self._captions(batch),
            reconstruction=recon, step=self._gen_steps, extra=extra,
        )

    def _total_loss(self, inputs: LossInputs, aux: torch.Tensor, prefix: str) -> tuple[torch.Tensor, dict]:
        logs: dict[str, torch.Tensor] = {}
        total = aux.to(inputs.images.dtype) if torch.is_tensor(aux) else torch.tensor(float(aux), device=self.device)
        logs[f"{prefix}/loss_quant_aux"] = total.detach()
        for loss in self.losses:
            out = loss(inputs)
            total = total + loss.weight * out.loss
            logs[f"{prefix}/loss_{loss.name}"] = out.loss.detach()
            for k, v in out.logs.items():
                logs[f"{prefix}/{loss.name}_{k}"] = v.detach() if torch.is_tensor(v) else torch.tensor(v)
        logs[f"{prefix}/loss_total"] = total.detach()
        return total, logs

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        images = self._images(batch)
        out = self.tokenizer(images)
        inputs = self._loss_inputs(batch, images, out)
        total, logs = self._total_loss(inputs, out.quant.aux_loss, "train")
        for k, v in out.quant.stats.items():
            logs[f"train/quant_{k}"] = v.detach().float() if torch.is_tensor(v) else torch.tensor(float(v))
        self.train_usage.update(out.quant.indices)
        if self._gen_steps == 0 or self._gen_steps % max(1, self.trainer.log_every_n_steps) == 0:
            logs.update(self.train_usage.compute())  # codebook usage from step 0
        if not self.automatic_optimization:
            logs.update(self._manual_step(total, inputs))
        self.log("train/loss_total", logs.pop("train/loss_total"), prog_bar=True, batch_size=images.shape[0])
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=images.shape[0])
        if self.automatic_optimization:
            return total
        return None

    def _manual_step(self, total: torch.Tensor, inputs: LossInputs) -> dict[str, torch.Tensor]:
        opt_g, opt_d = self.optimizers()
        sched = self.lr_schedulers()
        self.toggle_optimizer(opt_g)
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(total)
        if self.hparams.grad_clip:
            self.clip_gradients(opt_g, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opt_g.step()
        self.untoggle_optimizer(opt_g)
        if sched is not None:
            sched.step()
        self._after_generator_step()
        logs: dict[str, torch.Tensor] = {}
        self.toggle_optimizer(opt_d)
        opt_d.zero_grad(set_to_none=True)
        d_total = None
        for loss in self.adversarial:
            d = loss.discriminator_loss(inputs)
            if d is None:
                continue
            d_total = d.loss if d_total is None else d_total + d.loss
            logs[f"train/loss_{loss.name}_disc"] = d.loss.detach()
            for k, v in d.logs.items():
                logs[f"train/{loss.name}_disc_{k}"] = v
        if d_total is not None:
            self.manual_backward(d_total)
            opt_d.step()
        self.untoggle_optimizer(opt_d)
        return logs

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.automatic_optimization and self.hparams.grad_clip:
            self.clip_gradients(optimizer, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.automatic_optimization:
            self._after_generator_step()

    def _after_generator_step(self) -> None:
        self._gen_steps += 1
        if self.ema is not None:
            self.ema.update()

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_usage.compute())
        self.train_usage.reset()

    # ------------------------------------------------------------------ validation
    @contextmanager
    def ema_scope(self) -> Iterator[None]:
        """Run with the EMA weights loaded (no-op without EMA)."""
        if self.ema is None:
            yield
        else:
            with self.ema.swapped():
                yield

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Encode -> quantize -> decode (EMA weights when kept), images in [-1, 1]."""
        with self.ema_scope():
            out = self.tokenizer(images)
            return self.tokenizer.decoder.decode(out.features, out.grid,
                                                 steps=steps or self.hparams.val_decode_steps).clamp(-1, 1)

    def on_validation_start(self) -> None:
        if self._lpips is not None:
            self._lpips.to(self.device)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        images = self._images(batch)
        with self.ema_scope():
            out = self.tokenizer(images)
            inputs = self._loss_inputs(batch, images, out)
            _, logs = self._total_loss(inputs, out.quant.aux_loss, "val")
            decoder = self.tokenizer.decoder
            recon = (inputs.reconstruction.clamp(-1, 1) if inputs.reconstruction is not None else
                     decoder.decode(out.features, out.grid, steps=self.hparams.val_decode_steps))
        self.log_dict(logs, on_step=False, on_epoch=True, batch_size=images.shape[0], sync_dist=True)
        self.val_usage.update(out.quant.indices)
        x, y = (recon.float() + 1) / 2, (images.float() + 1) / 2
        self.val_psnr.update(x, y)
        self.val_ssim.update(x, y)
        if self._lpips is not None:
            self.val_lpips_metric.update(self._lpips(recon.float(), images.float()).mean())
        n = self.hparams.num_grid_images
        if n and batch_idx == 0 and not self.trainer.sanity_checking:
            grid = make_grid(torch.cat([images[:n], recon[:n]]), ncol=min(n, images.shape[0]))
            log_image_grid(self.trainer, "val/reconstructions", grid, self.global_step)

    def on_validation_epoch_end(self) -> None:
        self.log("val/psnr", self.val_psnr.compute(), prog_bar=True)
        metrics = {"val/ssim": self.val_ssim.compute(), **self.val_usage.compute()}
        if self._lpips is not None:
            metrics["val/lpips"] = self.val_lpips_metric.compute()
        self.log_dict(metrics)
        for m in (self.val_psnr, self.val_ssim, self.val_usage, self.val_lpips_metric):
            m.reset()

    # ------------------------------------------------------------------ export / checkpoints
    def export(self, directory: str) -> None:
        """``save_pretrained(directory)`` of the tokenizer (EMA weights when kept), plus the
        head of every SigLIP loss (``siglip_head.json`` + ``.safetensors``, see
        :mod:`arm_tokenizer.siglip_export`): zero-shot classification and retrieval in
        ``arm-tokenizer evaluate`` need it, and the tokenizer itself does not hold it."""
        with self.ema_scope():
            self.tokenizer.save_pretrained(directory)
        save_siglip_heads(self.losses, directory)

    def on_fit_end(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero and not self.trainer.fast_dev_run:
            self.export(self.hparams.export_dir)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["arm_gen_steps"] = self._gen_steps
        if self.ema is not None:
            checkpoint["arm_ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._gen_steps = int(checkpoint.get("arm_gen_steps", 0))
        if self.ema is not None and "arm_ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["arm_ema"])
