"""``StepProgress`` (callback ``step_progress``): training progress that reads right in a
terminal and in a log file.

Lightning's default bar (Rich when installed) titles a step-bounded run ``Epoch 23/-2``
(``max_epochs - 1`` with ``max_epochs=-1``) and, with output redirected to a file, either
shows nothing useful or floods it with carriage returns. This callback:

* on a terminal: a tqdm bar over the whole run, ``step`` against ``max_steps`` when the
  run is bounded by steps (over the epoch's batches otherwise), titled ``epoch N``;
* when stdout is not a terminal (``nohup``, ``> train.log``, CI): one plain line every
  ``every_n_steps`` optimizer steps, e.g.
  ``step 120/1200 · epoch 3 · train/loss_total 0.1234 · 4.1 it/s``, plus one line with
  the validation metrics after each validation run.

ARM's CLIs add it by default (when ``trainer.enable_progress_bar`` is not false and no
other progress bar callback is configured); YAML overrides it like any callback::

    trainer:
      callbacks:
        - class_path: arm_tokenizer.framework.progress.StepProgress
          init_args: {every_n_steps: 10, mode: lines}
"""

from __future__ import annotations

import sys
import time
from typing import Any, Literal

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar

__all__ = ["StepProgress"]


def _fmt(value: Any) -> str:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class StepProgress(TQDMProgressBar):
    """Progress bar on a terminal, progress lines in a log (see the module docstring)."""

    def __init__(self, every_n_steps: int = 50, mode: Literal["auto", "bar", "lines"] = "auto",
                 refresh_rate: int = 1, leave: bool = False) -> None:
        """
        Args:
            every_n_steps: print a line every this many optimizer steps (``lines`` mode;
                the first and the last step are always printed).
            mode: ``auto`` = a bar when stdout is a terminal, lines otherwise; ``bar``;
                ``lines``.
            refresh_rate: update the bar every this many batches (``bar`` mode).
            leave: keep each epoch's finished bar on screen (``bar`` mode).
        """
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        if every_n_steps < 1:
            raise ValueError(f"StepProgress.every_n_steps must be >= 1, got {every_n_steps}")
        if mode not in ("auto", "bar", "lines"):
            raise ValueError(f"StepProgress.mode must be 'auto', 'bar' or 'lines', got {mode!r}")
        self.every_n_steps = every_n_steps
        self.mode = mode
        self._last_step = -1
        self._last_time = 0.0
        self._sep = " · "

    @property
    def lines(self) -> bool:
        """Whether progress is printed as lines (the tqdm bars stay off then)."""
        if self.mode == "auto":
            return not sys.stdout.isatty()
        return self.mode == "lines"

    @property
    def is_disabled(self) -> bool:
        return super().is_disabled or self.lines

    def _print(self, trainer: Trainer, parts: list[str]) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        line = self._sep.join(parts)
        try:
            print(line, flush=True)
        except UnicodeEncodeError:  # a log whose encoding has no middle dot
            self._sep = " | "
            print(self._sep.join(parts), flush=True)

    @staticmethod
    def _step_text(trainer: Trainer) -> str:
        if trainer.max_steps is not None and trainer.max_steps > 0:
            return f"step {trainer.global_step}/{trainer.max_steps}"
        return f"step {trainer.global_step}"

    # ------------------------------------------------------------------ bar mode
    def on_train_epoch_start(self, trainer: Trainer, *_: Any) -> None:
        super().on_train_epoch_start(trainer)
        if self.lines:
            return
        bar = self.train_progress_bar
        if trainer.max_steps is not None and trainer.max_steps > 0:  # the whole run, not -2 epochs
            bar.total = trainer.max_steps
            bar.n = bar.last_print_n = trainer.global_step
        bar.set_description(f"epoch {trainer.current_epoch}")

    # ------------------------------------------------------------------ both modes
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_step, self._last_time = trainer.global_step, time.monotonic()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self.lines:
            if trainer.max_steps is None or trainer.max_steps <= 0:
                super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
                return
            bar = self.train_progress_bar
            if bar is not None and self._should_update(trainer.global_step, trainer.max_steps):
                bar.n = trainer.global_step
                bar.refresh()
                bar.set_postfix(self.get_metrics(trainer, pl_module))
            return
        step = trainer.global_step
        last = trainer.max_steps is not None and 0 < trainer.max_steps <= step
        if step == self._last_step or not (step == 1 or step % self.every_n_steps == 0 or last):
            return
        now = time.monotonic()
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_step, self._last_time = step, now
        metrics = {k: v for k, v in self.get_metrics(trainer, pl_module).items() if k != "v_num"}
        parts = [self._step_text(trainer), f"epoch {trainer.current_epoch}"]
        parts += [f"{k} {_fmt(v)}" for k, v in metrics.items()]
        parts.append(f"{rate:.3g} it/s")
        self._print(trainer, parts)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self.lines or trainer.sanity_checking:
            return
        val = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val")}
        if val:
            self._print(trainer, ["validation", self._step_text(trainer)] + [f"{k} {_fmt(v)}" for k, v in val.items()])
