"""Lightning training of the ARM LM: next-token prediction over packed mixed-task sequences.

ARM trains one decoder on understanding (image -> text), text-to-image and editing
sequences with plain next-token cross-entropy (DESIGN.md, "LM"). The batches come from
arm-data's mixed-task token data module, packed to a fixed length::

    input_ids    (B, T) long   token ids of the unified vocabulary
    targets      (B, T) long   next-token targets; -100 = no loss (prompt, padding, doc edge)
    position_ids (B, T) long   restart at 0 in every packed document
    doc_ids      (B, T) long   which document a token belongs to (attention stays inside it)
    task_ids     (B, T) or (B,) long   task of each token / row, for per-task loss logging

What this module adds around :class:`arm_core.model.GPT`:

* the model is built in :meth:`LMTrainer.configure_model` (so FSDP can shard it as it is
  built) from a preset name + overrides, as the registered LM ``lm`` (registry kind ``lm``:
  the built-in ``gpt`` or a plugin's class; the export records the name), with the vocabulary taken from a ``VocabLayout``
  (argument ``vocab`` or the data module's ``layout``), optionally initialised from a
  Hugging Face directory with the vocabulary extended (``arm_core.hf``);
* loss: token-mean CE over non-ignored targets, optional z-loss (PaLM's
  ``1e-4 * logsumexp^2``, off by default), per-task losses logged by name;
* AdamW with ARM's SFT betas (0.9, 0.95) and weight decay 0, linear warm-up then cosine
  decay to ``min_lr_ratio * lr``, stepped every optimizer step;
* activation checkpointing of the transformer blocks and ``torch.compile`` as flags;
* at fit end, :func:`arm_core.checkpoint.save_lm` exports the weights, config, layout and
  text tokenizer to ``export_dir`` so pipelines load them without Lightning.

Strategy (YAML ``trainer.strategy``): ``ddp`` works as is; for FSDP use
:class:`BlockFSDPStrategy`, which wraps each transformer block (the auto-wrap policy the
issue asks for) and can checkpoint activations per block::

    trainer:
      precision: bf16-mixed
      strategy:
        class_path: arm_core.lightning_module.BlockFSDPStrategy
        init_args: {sharding_strategy: FULL_SHARD, activation_checkpointing: true}

Exact resume: Lightning restores model, optimizer, LR scheduler, loop progress and (for a
data module whose loader has ``state_dict``) the data position; this module also saves and
restores the torch/numpy/python RNG states so dropout-free training is bit-reproducible.
"""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from arm_data.formats import TASKS
from arm_data.text_tokenizer import TextTokenizer
from arm_data.vocab import VocabLayout
from arm_tokenizer import schedules
from arm_tokenizer.framework.checkpoint import atomic_write_bytes
from arm_tokenizer.framework.configurable import import_class
from arm_tokenizer.framework.deprecation import moved_names
from arm_tokenizer.tokenizer import VisualTokenizer
from lightning.pytorch.strategies import FSDPStrategy

from arm_core import hf
from arm_core.checkpoint import load_lm, save_lm
from arm_core.code_init import code_vectors, init_code_rows
from arm_core.config import Config
from arm_core.model import DEFAULT_LM, build_lm, extend_vocab, resolve_lm

__all__ = ["LMTrainer", "BlockFSDPStrategy", "lm_loss"]

# warmup_cosine moved to arm_tokenizer.schedules
__getattr__ = moved_names(__name__, {"warmup_cosine": "arm_tokenizer.schedules"})

IGNORE_INDEX = -100


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, z_loss: float = 0.0,
            task_ids: torch.Tensor | None = None, num_tasks: int = 0,
            task_weights: torch.Tensor | None = None,
            ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Next-token CE over ``targets != -100`` (+ optional z-loss): the token mean, or with
    ``task_weights`` the weighted mean of the per-task token means.

    Args:
        logits: ``(B, T, V)``, any float dtype (computed in fp32).
        targets: ``(B, T)`` long, ``-100`` where there is no loss.
        z_loss: coefficient of ``logsumexp(logits)^2`` (0 disables).
        task_ids: ``(B, T)`` long task index per token, for per-task sums.
        num_tasks: number of task indices to report.
        task_weights: ``(num_tasks,)``: each task's tokens are averaged on their own and the
            tasks present in the batch combined with these weights (renormalised over them),
            so a task's share of the gradient no longer follows its share of tokens. Needs
            ``task_ids``.

    Returns ``(loss, stats)``; stats has ``ce`` (always the token mean), ``z`` (if used),
    ``n_tokens`` and, with task_ids, ``task_ce_sum`` / ``task_count`` of shape ``(num_tasks,)``.
    """
    V = logits.shape[-1]
    flat = logits.reshape(-1, V).float()
    tgt = targets.reshape(-1)
    valid = tgt != IGNORE_INDEX
    n = valid.sum()
    ce_tok = F.cross_entropy(flat, tgt.clamp_min(0), reduction="none") * valid
    denom = n.clamp_min(1)
    ce = ce_tok.sum() / denom
    stats: dict[str, torch.Tensor] = {"ce": ce.detach(), "n_tokens": n.detach()}
    loss = ce
    if task_weights is not None and (task_ids is None or num_tasks != task_weights.numel()):
        raise ValueError(f"lm_loss: task_weights ({task_weights.numel()}) need task_ids and "
                         f"num_tasks ({num_tasks}) to match")
    if task_ids is not None and num_tasks > 0:
        tid = task_ids.reshape(-1).clamp(0, num_tasks - 1)
        sums = torch.zeros(num_tasks, device=flat.device).index_add_(0, tid, ce_tok)
        counts = torch.zeros(num_tasks, device=flat.device).index_add_(0, tid, valid.float())
        stats["task_ce_sum"], stats["task_count"] = sums.detach(), counts
        if task_weights is not None:
            w = task_weights.to(flat.device, torch.float32) * (counts > 0)
            loss = (w * sums / counts.clamp_min(1)).sum() / w.sum().clamp_min(1e-12)
    if z_loss > 0:
        lse = torch.logsumexp(flat, dim=-1)
        z = (lse.pow(2) * valid).sum() / denom
        loss = loss + z_loss * z
        stats["z"] = z.detach()
    return loss, stats


class BlockFSDPStrategy(FSDPStrategy):
    """FSDP that wraps every transformer block of the ARM LM (YAML-friendly arguments).

    Args:
        block_class: dotted path of the block class to wrap (the auto-wrap policy).
        sharding_strategy: ``FULL_SHARD``, ``SHARD_GRAD_OP``, ``NO_SHARD`` or ``HYBRID_SHARD``.
        activation_checkpointing: recompute each block's activations in backward.
        cpu_offload: keep sharded parameters on CPU between uses.
        state_dict_type: ``full`` (one file, gathered on rank 0) or ``sharded`` checkpoints.
        use_orig_params: FSDP's flag; needed for ``torch.compile`` and per-param optimizer groups.
    """

    def __init__(
        self,
        block_class: str = "arm_core.model.Block",
        sharding_strategy: str = "FULL_SHARD",
        activation_checkpointing: bool = False,
        cpu_offload: bool = False,
        state_dict_type: str = "full",
        use_orig_params: bool = True,
    ) -> None:
        block = import_class(block_class)
        super().__init__(
            auto_wrap_policy={block},
            activation_checkpointing_policy={block} if activation_checkpointing else None,
            sharding_strategy=sharding_strategy,
            cpu_offload=cpu_offload,
            state_dict_type=state_dict_type,  # type: ignore[arg-type]
            use_orig_params=use_orig_params,
        )


class LMTrainer(pl.LightningModule):
    """Next-token training of the ARM LM over packed mixed-task sequences (see module doc).

    Args:
        preset: ``arm_core.config`` preset name (``tiny``, ``shapes-small``, ``arm-7b``, ...).
        model_overrides: Config fields to override on the preset (e.g. ``n_layer: 4``). With
            ``hf_dir`` or ``init_from`` only ``max_seq_len`` and ``image_position_slots`` (a
            zero-initialised table added to the loaded model).
        vocab: a ``VocabLayout`` JSON file (or a directory with ``vocab.json``) fixing the
            vocabulary; None: the data module's ``layout`` attribute, else the preset's numbers.
        hf_dir: initialise from a local Hugging Face Qwen2/Llama directory; the text
            vocabulary is kept and extended with specials, shape tokens and image codes.
        init_from: initialise from an exported arm-core LM directory (``save_lm`` /
            ``export_dir``) to continue training it with a fresh optimizer and schedule
            (more steps, new data, a fine-tune). Its architecture is used (see
            ``model_overrides``) and its vocabulary must be the data's. To
            resume an interrupted run exactly, pass ``--ckpt_path`` instead.
        lr: peak learning rate (ARM SFT: 2e-4).
        min_lr_ratio: cosine floor as a fraction of ``lr``.
        betas: AdamW betas (ARM: 0.9, 0.95).
        weight_decay: AdamW weight decay (ARM SFT: 0).
        eps: AdamW epsilon.
        warmup_steps: linear warm-up length in optimizer steps.
        max_steps: length of the cosine schedule; None: ``trainer.estimated_stepping_batches``.
        z_loss: coefficient of the z-loss (0 = off).
        task_names: names of the task ids for logging; None: ``arm_data.formats.TASKS`` or
            the data module's ``task_names``.
        activation_checkpointing: recompute block activations in backward (non-FSDP
            strategies; with FSDP use the strategy's flag).
        compile: ``torch.compile`` the model's forward.
        text_tokenizer: sentencepiece model to ship with the export; None: the data
            module's ``text_tokenizer_path`` (or the file its ``text`` tokenizer came from).
        visual_tokenizer: visual tokenizer directory the export references; None: the
            data module's ``tokenizer_dir``.
        export_dir: where :meth:`on_fit_end` writes the self-contained LM; None:
            ``<trainer.default_root_dir>/lm``; empty string: no export.
        seed_init: seed for the weight initialisation (independent of the global seed).
        task_loss_weights: None: every loss token counts the same (the token mean), so a
            task's share of the gradient is its share of loss tokens (a one-word VQA answer
            is outweighed by the 64+ codes of each image). A dict
            ``{task: weight}`` (tasks not named weigh 1): each task's tokens are averaged
            on their own and the tasks in the batch combined with these weights.
        code_init_share: start the image-code rows (embedding and visual head) from the
            visual tokenizer's code geometry (``arm_core.code_init``): the fraction of each
            row's initial variance taken from it; 0 = plain random rows. New models and
            ``hf_dir`` only; needs the tokenizer (``visual_tokenizer`` or the data's).
        lm: the LM architecture: a name registered under kind ``lm`` (entry-point group
            ``arm.lms``; ``arm-lm list lm``), built as ``cls(config)`` from the preset's
            Config, like ``preset`` a name in the YAML (``lm: gpt``). The export and the
            Lightning checkpoint record it, so loading rebuilds the same class. With
            ``init_from`` it must be the export's; ``hf_dir`` imports into ``gpt`` only.
    """

    def __init__(
        self,
        preset: str = "tiny",
        model_overrides: dict[str, Any] | None = None,
        vocab: str | None = None,
        hf_dir: str | None = None,
        init_from: str | None = None,
        lr: float = 3e-4,
        min_lr_ratio: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.0,
        eps: float = 1e-8,
        warmup_steps: int = 100,
        max_steps: int | None = None,
        z_loss: float = 0.0,
        task_names: list[str] | None = None,
        activation_checkpointing: bool = False,
        compile: bool = False,
        text_tokenizer: str | None = None,
        visual_tokenizer: str | None = None,
        export_dir: str | None = None,
        seed_init: int = 0,
        task_loss_weights: dict[str, float] | None = None,
        code_init_share: float = 0.0,
        lm: str = "gpt",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()

        # fail fast on an unknown LM name: the registry's error names the kind, the name
        # and the registered LMs
        self.lm_name, _ = resolve_lm(lm)
        if hf_dir is not None and self.lm_name != DEFAULT_LM:
            raise ValueError(f"LMTrainer: hf_dir imports a Hugging Face Qwen2/Llama checkpoint into the "
                             f"built-in {DEFAULT_LM!r} LM (arm_core.model.GPT); lm={lm!r} cannot be "
                             f"initialised from it. Set lm: {DEFAULT_LM}, or train {lm!r} from scratch "
                             "or from an export of it (init_from)")
        if not 0.0 <= code_init_share < 1.0:
            raise ValueError(f"LMTrainer.code_init_share must be in [0, 1), got {code_init_share}")
        bad = {k: v for k, v in (task_loss_weights or {}).items() if not (v >= 0.0)}
        if bad:
            raise ValueError(f"LMTrainer.task_loss_weights must be >= 0, got {bad}")
        if code_init_share and init_from is not None:
            raise ValueError("LMTrainer: code_init_share re-initialises image rows; with init_from "
                             "they are already trained (set code_init_share: 0)")
        Config.from_name(preset, **(model_overrides or {}))  # fail fast on a bad preset/field
        if hf_dir is not None and not Path(hf_dir).is_dir():
            raise FileNotFoundError(f"LMTrainer.hf_dir: directory not found: {hf_dir}")
        if init_from is not None:
            if hf_dir is not None:
                raise ValueError("LMTrainer: pass hf_dir (a Hugging Face text LM) or init_from "
                                 "(an arm-core LM export), not both")
            if not Path(init_from).is_dir():
                raise FileNotFoundError(f"LMTrainer.init_from: directory not found: {init_from}")
        self.model: torch.nn.Module | None = None
        self.config: Config | None = None
        self.layout: Any | None = None
        # The callable used in forward (the model, or its compiled wrapper); kept out of
        # nn.Module's registry so the weights are not listed twice in state_dict.
        self.__dict__["_forward"] = None
        self.__dict__["_loss"] = lm_loss

    def _set_callables(self) -> None:
        """The forward and the loss ``_step`` calls: compiled with ``compile``. The loss is
        compiled too, so the fp32 cast of the ``(B, T, V)`` logits fuses into the CE kernels
        instead of materializing at twice their size (benchmarks/bench_core.py, cuda_mfu)."""
        self.__dict__["_forward"] = torch.compile(self.model) if self.hparams.compile else self.model
        self.__dict__["_loss"] = torch.compile(lm_loss) if self.hparams.compile else lm_loss

    # ------------------------------------------------------------------ building
    def _datamodule_attr(self, name: str) -> Any:
        trainer = self._trainer
        dm = getattr(trainer, "datamodule", None) if trainer is not None else None
        return getattr(dm, name, None) if dm is not None else None

    def _resolve_layout(self) -> Any | None:
        if self.hparams.vocab:
            p = Path(self.hparams.vocab)
            return VocabLayout.load(p / "vocab.json" if p.is_dir() else p)
        return self._datamodule_attr("layout")

    def build_config(self, layout: Any | None = None) -> Config:
        """The model Config: preset + overrides, with the layout's vocabulary if given."""
        cfg = Config.from_name(self.hparams.preset, **(self.hparams.model_overrides or {}))
        if layout is not None:
            cfg = cfg.with_vocab(layout.total_size, layout.image_offset, layout.codebook_size,
                                 separate_visual_head=cfg.separate_visual_head or None,
                                 text_vocab_size=layout.text_vocab_size)
        return cfg

    def configure_model(self) -> None:
        """Build (or HF-initialise) the LM once; FSDP shards it after this returns."""
        if self.model is not None:
            return

        self.layout = self._resolve_layout()
        if self.hparams.hf_dir:
            self.model, self.config = self._from_hf(self.hparams.hf_dir, self.layout)
        elif self.hparams.init_from:
            self.model, self.config = self._from_export(self.hparams.init_from, self.layout)
        else:
            self.config = self.build_config(self.layout)
            gen = torch.random.fork_rng(devices=[])
            with gen:
                torch.manual_seed(self.hparams.seed_init)
                self.model = build_lm(self.lm_name, self.config)
        if self.hparams.code_init_share:
            self._init_code_rows()
        if self.hparams.activation_checkpointing:
            self._apply_activation_checkpointing()
        self._set_callables()

    def _init_code_rows(self) -> None:
        # the named tokenizer (what the export references), else the one the data was made with
        tried = [d for d in (self.hparams.visual_tokenizer, self._datamodule_attr("tokenizer_dir")) if d]
        where = next((d for d in tried if Path(d).is_dir()), None)
        if where is None:
            raise ValueError("LMTrainer.code_init_share needs the visual tokenizer's checkpoint "
                             f"(tried: {tried or 'none given'}): set model.init_args.visual_tokenizer "
                             "to its directory, or code_init_share: 0")
        vectors = code_vectors(VisualTokenizer.from_pretrained(where))
        gen = torch.Generator().manual_seed(self.hparams.seed_init + 1)
        init_code_rows(self.model, vectors, share=self.hparams.code_init_share, generator=gen)

    def _rebuild(self, config: Config, layout: dict[str, Any] | None) -> None:
        self.config = config
        if layout is not None:
            self.layout = VocabLayout.from_dict(layout)
        self.model = build_lm(self.lm_name, config)
        if self.hparams.activation_checkpointing:
            self._apply_activation_checkpointing()
        self._set_callables()

    # model_overrides a loaded model accepts: neither changes what it computes at first
    _LOADED_OVERRIDES = ("max_seq_len", "image_position_slots")

    def _loaded_overrides(self, field: str, source: str) -> dict[str, int]:
        """With a loaded model only ``max_seq_len`` and ``image_position_slots`` (added
        zero-initialised) of ``model_overrides`` may change."""
        overrides = dict(self.hparams.model_overrides or {})
        other = sorted(set(overrides) - set(self._LOADED_OVERRIDES))
        if other:
            raise ValueError(f"LMTrainer: with {field} the architecture comes from {source}; only "
                             f"{' and '.join(self._LOADED_OVERRIDES)} may be overridden, got {other}")
        return overrides

    @staticmethod
    def _apply_loaded_overrides(model: torch.nn.Module, overrides: dict[str, int]) -> None:
        if overrides.get("max_seq_len") is not None:
            model.config = Config.from_dict({**model.config.to_dict(),
                                             "max_seq_len": overrides["max_seq_len"]})
        if overrides.get("image_position_slots") is not None:
            model.add_image_positions(int(overrides["image_position_slots"]))

    def _from_export(self, directory: str, layout: Any | None) -> tuple[torch.nn.Module, Config]:
        """Load an arm-core LM export (checked against the data's vocabulary) to train on."""
        overrides = self._loaded_overrides("init_from", directory)
        ckpt = load_lm(directory, expected_layout=layout)
        if ckpt.lm_name != self.lm_name:
            raise ValueError(f"LMTrainer.init_from: {directory} holds a {ckpt.lm_name!r} LM but lm is "
                             f"{self.lm_name!r}; the architecture comes from the export: set "
                             f"lm: {ckpt.lm_name}")
        model = ckpt.model.train()
        self._apply_loaded_overrides(model, overrides)
        if self.layout is None:
            self.layout = ckpt.layout
        return model, model.config

    def _from_hf(self, hf_dir: str, layout: Any | None) -> tuple[torch.nn.Module, Config]:
        """Load a HF Qwen2/Llama text LM and extend its vocabulary to the layout's."""
        overrides = self._loaded_overrides("hf_dir", hf_dir)
        self._check_text_tokenizer_is_the_models(hf_dir)
        model = hf.load_hf(hf_dir, max_seq_len=overrides.pop("max_seq_len", None))
        if layout is not None and not model.config.image_codebook_size:
            n_text, rows = layout.text_vocab_size, model.config.vocab_size
            if n_text > rows:
                raise ValueError(f"hf_dir {hf_dir}: the data's text vocabulary has {n_text} ids but "
                                 f"the model has only {rows} rows: the text tokenizer the data was "
                                 "tokenized with is not this model's")
            # Rows past the text vocabulary are HF padding (untrained): dropped by extend_vocab.
            target = model.config.with_vocab(layout.total_size, layout.image_offset,
                                             layout.codebook_size, separate_visual_head=True,
                                             text_vocab_size=n_text)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.hparams.seed_init)
                model = extend_vocab(model, target, keep_text=n_text)
        self._apply_loaded_overrides(model, overrides)
        return model, model.config

    def _check_text_tokenizer_is_the_models(self, hf_dir: str) -> None:
        """The data's text ids must be the HF model's own, or every text embedding the model
        learned reads the wrong word (a sentencepiece model against Qwen's BPE, say)."""
        text = self._datamodule_attr("text")
        own = Path(hf_dir) / "tokenizer.json"
        if text is None or not own.is_file():
            return

        if not TextTokenizer.load(own).same_vocabulary(text):
            raise ValueError(f"hf_dir {hf_dir}: the data's text tokenizer ({text!r}) is not this "
                             "model's own tokenizer.json, so its text ids would name other words "
                             f"for the model; set data.init_args.text_tokenizer={own}")

    def _apply_activation_checkpointing(self) -> None:
        if not hasattr(self.model, "set_activation_checkpointing"):
            raise ValueError(f"LMTrainer.activation_checkpointing: the {self.lm_name!r} LM "
                             f"({type(self.model).__qualname__}) has no set_activation_checkpointing; "
                             "set activation_checkpointing: false")
        self.model.set_activation_checkpointing(True)

    # ------------------------------------------------------------------ training
    @property
    def task_names(self) -> list[str]:
        names = self.hparams.task_names or self._datamodule_attr("task_names")
        if names:
            return list(names)
        try:
            return list(TASKS)
        except ImportError:
            return []

    def _task_weights(self, names: list[str], task_ids: torch.Tensor | None,
                      device: torch.device) -> torch.Tensor | None:
        given = self.hparams.task_loss_weights
        if given is None:
            return None
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ValueError(f"LMTrainer.task_loss_weights names tasks {unknown} the data does not "
                             f"have; its tasks are {names}")
        if task_ids is None:
            raise ValueError("LMTrainer.task_loss_weights needs batches with task_ids (the data "
                             "module's packed batches carry them)")
        return torch.tensor([float(given.get(n, 1.0)) for n in names], device=device)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, T, V)`` over the unified vocabulary."""
        if self.model is None:
            self.configure_model()
        return self._forward(input_ids, position_ids=position_ids, doc_ids=doc_ids)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        missing = [k for k in ("input_ids", "targets") if k not in batch]
        if missing:
            raise KeyError(f"LMTrainer batch lacks {missing}; got keys {sorted(batch)} (expected "
                           "input_ids, targets, position_ids, doc_ids, task_ids)")
        ids, targets = batch["input_ids"], batch["targets"]
        logits = self(ids, batch.get("position_ids"), batch.get("doc_ids"))
        task_ids = batch.get("task_ids")
        if task_ids is not None and task_ids.dim() == 1:
            task_ids = task_ids[:, None].expand_as(targets)
        names = self.task_names
        weights = self._task_weights(names, task_ids, logits.device)
        loss, stats = self._loss(logits, targets, self.hparams.z_loss, task_ids, len(names), weights)
        bs = ids.shape[0]
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=bs, on_step=on_step,
                 on_epoch=not on_step, sync_dist=not on_step)
        if "z" in stats:
            self.log(f"{stage}/z_loss", stats["z"], batch_size=bs, on_step=on_step,
                     on_epoch=not on_step, sync_dist=not on_step)
        if "task_ce_sum" in stats:
            for i, name in enumerate(names):
                cnt = stats["task_count"][i]
                if cnt > 0:
                    self.log(f"{stage}/loss_{name}", stats["task_ce_sum"][i] / cnt, batch_size=bs,
                             on_step=on_step, on_epoch=not on_step, sync_dist=not on_step)
        if stage == "train":
            self.log("train/tokens", stats["n_tokens"].float(), batch_size=bs, reduce_fx="sum",
                     on_step=True, on_epoch=False)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "test")

    # ------------------------------------------------------------------ predict: scoring
    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Score each packed document: ``{"nll", "tokens", "task"}``, one entry per document
        (summed next-token NLL over its loss-masked targets, their count, its task index).

        ``arm-lm predict`` runs this over the data module's predict loader (the validation
        shards for ``TokenDataModule``) and writes ``predict_scores.jsonl`` plus per-task mean
        NLL / perplexity in ``predict_summary.json`` under the log directory."""
        ids, targets = batch["input_ids"], batch["targets"]
        doc = batch.get("doc_ids")
        doc = torch.zeros_like(ids) if doc is None else doc
        task = batch.get("task_ids")
        task = torch.full_like(ids, -1) if task is None else (
            task[:, None].expand_as(ids) if task.dim() == 1 else task)
        logits = self(ids, batch.get("position_ids"), batch.get("doc_ids")).float()
        valid = targets != IGNORE_INDEX
        nll = F.cross_entropy(logits.flatten(0, 1), targets.clamp_min(0).flatten(),
                              reduction="none").view_as(targets) * valid
        # one key per (row, document): documents are numbered within their row
        key = torch.arange(ids.shape[0], device=ids.device)[:, None] * (int(doc.max()) + 2) + doc + 1
        keys, inv = torch.unique(key[valid], return_inverse=True)
        n = len(keys)
        out_nll = torch.zeros(n, device=ids.device).index_add_(0, inv, nll[valid])
        count = torch.zeros(n, device=ids.device).index_add_(0, inv, torch.ones_like(nll[valid]))
        task_of = torch.full((n,), -1, dtype=torch.long, device=ids.device).scatter_(0, inv, task[valid])
        out = {"nll": out_nll.cpu(), "tokens": count.long().cpu(), "task": task_of.cpu()}
        self._predicted.append(out)
        return out

    def on_predict_epoch_start(self) -> None:
        self._predicted: list[dict[str, torch.Tensor]] = []

    def on_predict_epoch_end(self) -> None:
        if not self._predicted or self.trainer.global_rank != 0:
            return
        names = self.task_names
        nll = torch.cat([p["nll"] for p in self._predicted])
        tok = torch.cat([p["tokens"] for p in self._predicted])
        task = torch.cat([p["task"] for p in self._predicted])
        root = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        lines = [json.dumps({"task": names[t] if 0 <= t < len(names) else None, "tokens": int(c),
                             "nll": float(x)}) for x, c, t in zip(nll.tolist(), tok.tolist(), task.tolist(), strict=True)]
        summary: dict[str, Any] = {"documents": len(lines), "tokens": int(tok.sum()),
                                   "mean_nll": float(nll.sum() / tok.sum().clamp_min(1))}
        for i, name in enumerate(names):
            sel = task == i
            if sel.any():
                m = float(nll[sel].sum() / tok[sel].sum().clamp_min(1))
                summary[name] = {"documents": int(sel.sum()), "mean_nll": m, "perplexity": math.exp(min(m, 50.0))}
        atomic_write_bytes(root / "predict_scores.jsonl", ("\n".join(lines) + "\n").encode())
        atomic_write_bytes(root / "predict_summary.json", json.dumps(summary, indent=2).encode())
        print(f"arm-lm predict: {summary['documents']} documents, mean NLL {summary['mean_nll']:.4f} "
              f"-> {root / 'predict_summary.json'}")

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps,
                                weight_decay=hp.weight_decay)
        total = hp.max_steps
        if total is None:
            est = self.trainer.estimated_stepping_batches
            total = int(est) if est is not None and math.isfinite(est) else hp.warmup_steps
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: schedules.warmup_cosine(s, hp.warmup_steps, total, hp.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------ resume + export
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain types and tensors only, so the checkpoint loads with weights_only=True.
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        version, pystate, gauss = random.getstate()
        checkpoint["arm_rng"] = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                      float(cached)],
            "python": [version, torch.tensor(pystate, dtype=torch.int64), gauss],
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            checkpoint["arm_rng"]["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["arm_lm"] = self.lm_name
        if self.config is not None:
            checkpoint["arm_lm_config"] = self.config.to_dict()
        if self.layout is not None:
            checkpoint["arm_vocab"] = self.layout.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved_lm = checkpoint.get("arm_lm", DEFAULT_LM)     # checkpoints before the field: gpt
        if saved_lm != self.lm_name:
            raise ValueError(f"this checkpoint holds a {saved_lm!r} LM but the module builds "
                             f"{self.lm_name!r}; resume (or load) with lm: {saved_lm}")
        saved = checkpoint.get("arm_lm_config")
        if saved is not None and self.config is not None and saved != self.config.to_dict():
            if self._trainer is None:
                # load_from_checkpoint: no data module told us the vocabulary; use the saved one
                self._rebuild(Config.from_dict(saved), checkpoint.get("arm_vocab"))
            else:
                diff = sorted(k for k in saved if saved[k] != self.config.to_dict().get(k))
                raise ValueError(
                    f"resuming a checkpoint whose model differs from the one built now in {diff} "
                    f"(checkpoint: {[saved[k] for k in diff]}, now: "
                    f"{[self.config.to_dict().get(k) for k in diff]}); resume with the same data "
                    "(text + visual tokenizer, hence vocabulary) and model_overrides, or start a "
                    "new run initialised from the exported LM")
        rng = checkpoint.get("arm_rng")
        if rng is not None:
            torch.set_rng_state(rng["torch"])
            kind, keys, pos, has_gauss, cached = rng["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            version, pystate, gauss = rng["python"]
            random.setstate((version, tuple(int(x) for x in pystate.tolist()), gauss))
            cuda = rng.get("cuda")
            if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)

    def export(self, directory: str | os.PathLike, metadata: dict[str, Any] | None = None,
               state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """Write the self-contained LM checkpoint (:func:`arm_core.checkpoint.save_lm`)."""
        if self.model is None or self.config is None:
            raise RuntimeError("LMTrainer.export: the model is not built yet (call configure_model)")
        tok = self.hparams.text_tokenizer or self._datamodule_attr("text_tokenizer_path")
        if tok is None:  # arm_data.TokenDataModule keeps the loaded TextTokenizer as `.text`
            tok = getattr(self._datamodule_attr("text"), "source", None)
        vis = self.hparams.visual_tokenizer or self._datamodule_attr("tokenizer_dir")
        if state_dict is None:
            state_dict = self.model.state_dict()
        state_dict = {_strip_wrappers(k): v for k, v in state_dict.items()}
        return save_lm(directory, state_dict, self.config, layout=self.layout,
                       text_tokenizer=tok, visual_tokenizer_dir=vis, metadata=metadata,
                       lm=self.lm_name)

    def on_fit_end(self) -> None:
        if self.hparams.export_dir == "":
            return
        target = self.hparams.export_dir or os.path.join(self.trainer.default_root_dir, "lm")
        # FSDP: gather a full state dict (a collective: every rank must call it).
        full = self.trainer.strategy.lightning_module_state_dict()
        if self.trainer.is_global_zero:
            state = {k.removeprefix("model."): v for k, v in full.items() if k.startswith("model.")}
            meta = {"global_step": int(self.trainer.global_step),
                    "hparams": json.loads(json.dumps(dict(self.hparams), default=str))}
            self.export(target, metadata=meta, state_dict=state)
        self.trainer.strategy.barrier("arm_lm_export")


def _strip_wrappers(key: str) -> str:
    """Parameter names without activation-checkpoint / compile wrapper prefixes."""
    for junk in ("_checkpoint_wrapped_module.", "_orig_mod.", "_fsdp_wrapped_module."):
        key = key.replace(junk, "")
    return key
