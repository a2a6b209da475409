"""LightningCLI with ARM's registry names and clear errors.

``fit``/``validate``/``test``/``predict`` of every ARM console script end here. The model
and data are any registered (or importable) ``LightningModule``/``LightningDataModule``
(subclass mode), so one CLI trains a tokenizer, a teacher, an LM or an RL policy depending
only on the YAML. Config files are checked and translated by
:mod:`arm_tokenizer.framework.config_check` first; the translated YAML (full class paths) is what
LightningCLI parses and what its saved ``config.yaml`` contains, so runs replay anywhere.
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from typing import Any

import torch
import yaml
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from arm_tokenizer.framework.config_check import (
    ConfigError,
    check_config_file,
    condense_parser_error,
    list_item_flag_error,
    translate_value,
)
from arm_tokenizer.framework.hparams import set_hparams
from arm_tokenizer.framework.progress import StepProgress

CONFIG_FLAGS = ("--config", "-c")


class InstantiationError(RuntimeError):
    """A component's constructor rejected its (type-correct) arguments."""


class ARMLightningCLI(LightningCLI):
    """LightningCLI whose instantiation errors name the component and the config.

    Beyond Lightning's own, it: adds :class:`arm_tokenizer.framework.progress.StepProgress` as the
    progress bar unless the config names one or turns the bar off; checks that model and
    data module agree on the hyper-parameters both declare (e.g. ``image_size``) before
    the loggers merge them; and lets an int ``val_check_interval`` of a ``max_steps`` run
    count steps across epochs when the data's epoch is shorter than it.
    """

    def __init__(self, *args: Any, explicit_check_val: bool = False, **kwargs: Any) -> None:
        self._explicit_check_val = explicit_check_val
        super().__init__(*args, **kwargs)

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list) -> Any:
        given = list(config.get("callbacks") or []) + list(callbacks)
        if config.get("enable_progress_bar", True) is not False and not any(
                isinstance(c, ProgressBar) for c in given):
            callbacks = [*callbacks, StepProgress()]
        # A model may refuse a strategy it cannot train under (ValueError, one line) by a
        # `check_strategy(strategy)` method: asked first, so its advice wins over the device check's.
        check = getattr(self.model, "check_strategy", None)
        if callable(check):
            try:
                check(config.get("strategy", "auto"))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        check_fsdp_device(config.get("strategy", "auto"), config.get("accelerator", "auto"))
        return super()._instantiate_trainer(config, callbacks)

    def _check_shared_hparams(self) -> None:
        """Lightning merges the model's and the data module's hyper-parameters for the loggers
        and fails mid-``fit`` with a traceback when a key of both differs (even in type: a list
        against a tuple); say which, with both values, before anything runs."""
        trainer, model, data = self.trainer, self.model, self.datamodule
        if not trainer.loggers or data is None or not (model._log_hyperparams and data._log_hyperparams):
            return
        m, d = model.hparams_initial, data.hparams_initial
        bad = []
        for key in sorted((m.keys() & d.keys()) - {"_class_path"}):
            a, b = m[key], d[key]
            if type(a) is type(b) and a == b:  # Lightning's own test
                continue
            if _as_lists(a) == _as_lists(b):  # [32, 48] and (32, 48): one value, two spellings
                set_hparams(data, **{key: a})
                continue
            bad.append(f"model.init_args.{key} = {a!r} but data.init_args.{key} = {b!r}")
        if bad:
            raise ConfigError(f"{'; '.join(bad)}: the model and the data module must agree (the loggers "
                              f"record them as one hyper-parameter); set both to the same value")

    def _let_val_interval_span_epochs(self) -> None:
        """An int ``val_check_interval`` longer than the data's epoch fails Lightning's check
        unless ``check_val_every_n_epoch`` is null: typical when a step-based config made for
        a long synthetic epoch is switched to a small folder. For a ``max_steps`` run with no
        explicit ``check_val_every_n_epoch``, count the interval across epochs instead."""
        trainer = self.trainer
        if (self._explicit_check_val or not isinstance(trainer.val_check_interval, int)
                or trainer.check_val_every_n_epoch is None or not trainer.max_steps or trainer.max_steps < 0):
            return
        loop = trainer.fit_loop
        setup_data = loop.setup_data

        def setup_data_spanning_epochs() -> None:
            try:
                setup_data()
            except ValueError as exc:
                if "val_check_interval" not in str(exc) or trainer.check_val_every_n_epoch is None:
                    raise
                # Lightning has set val_check_batch and the loaders before this check
                rank_zero_info(f"val_check_interval={trainer.val_check_interval} is longer than one epoch of "
                               f"the training data ({loop.max_batches} batches): validating every "
                               f"{trainer.val_check_interval} steps across epochs (check_val_every_n_epoch: "
                               f"null); set check_val_every_n_epoch to choose otherwise")
                trainer.check_val_every_n_epoch = None

        loop.setup_data = setup_data_spanning_epochs  # type: ignore[method-assign]

    def before_fit(self) -> None:
        self._check_shared_hparams()
        self._let_val_interval_span_epochs()
        # A model may refuse a trainer setup it cannot train under (e.g. a strategy), with a
        # one-line ValueError, here: before Lightning launches the other ranks' processes.
        check = getattr(self.model, "check_trainer", None)
        if callable(check):
            check(self.trainer)

    def before_validate(self) -> None:
        self._check_shared_hparams()

    before_test = before_validate
    before_predict = before_validate

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ConfigError:
            raise
        except Exception as exc:
            raise InstantiationError(f"{type(exc).__name__}: {exc}") from exc

    def add_arguments_to_parser(self, parser) -> None:
        # Components may declare argument links (e.g. data image size -> model image size)
        # by a classmethod `link_arguments(parser)`; nothing is linked by default.
        pass

    def _parse_ckpt_path(self) -> None:
        """On ``--ckpt_path``, the config's model arguments win over the checkpoint's.

        Lightning replaces them with the hyper-parameters saved in the checkpoint
        (Lightning-AI/pytorch-lightning#21455, open), so a resume with an edited
        ``export_dir``, learning rate or warm-up would silently run the old values, and an
        export would overwrite the first run's. What the YAML and the command line say is
        what runs, as for the trainer's arguments; the keys that differ are named in a warning.
        """
        sub = self.config.get("subcommand")
        if not sub or self.config[sub].get("model") is None:
            super()._parse_ckpt_path()
            return
        given = copy.deepcopy(self.config[sub]["model"])
        super()._parse_ckpt_path()
        changed = _differences(_leaves(self.config[sub]["model"]), _leaves(given))
        self.config[sub]["model"] = given
        if changed:
            rank_zero_warn(f"resuming from {self.config[sub].get('ckpt_path')} with model arguments that "
                           f"differ from the checkpoint's; the config's are used: {'; '.join(changed)}")


def check_fsdp_device(strategy: Any, accelerator: Any) -> None:
    """Refuse FSDP off CUDA in one line, before Lightning builds the trainer.

    Lightning's FSDP strategies wrap the model in torch's ``FullyShardedDataParallel``
    (FSDP1), which needs an accelerator: Lightning refuses ``strategy: fsdp`` unless the
    accelerator is CUDA (``trainer/connectors/accelerator_connector.py``,
    ``_check_strategy_and_fallback``), and a subclass such as ``BlockFSDPStrategy``, which that
    check lets through, fails later in every launched rank, where torch raises "FSDP needs a
    non-CPU accelerator device" (``torch/distributed/fsdp/_init_utils.py``: Lightning passes
    ``device_id=None`` on a CPU). Neither message says that DDP runs on a CPU.
    """
    if isinstance(strategy, str):
        if strategy not in FSDPStrategy.get_registered_strategies():
            return
        name = strategy
    elif isinstance(strategy, FSDPStrategy):
        name = type(strategy).__name__
    else:
        return
    if isinstance(accelerator, CUDAAccelerator) or accelerator in ("cuda", "gpu"):
        return
    if accelerator in (None, "auto"):
        if torch.cuda.is_available():
            return
        accelerator = "auto (no CUDA device here)"
    elif not isinstance(accelerator, str):
        accelerator = type(accelerator).__name__
    raise ConfigError(f"trainer.strategy {name} (FSDP) needs CUDA GPUs, but the accelerator is "
                      f"{accelerator}: torch's FullyShardedDataParallel refuses a CPU device. DDP works "
                      "on a CPU (--trainer.strategy=ddp --trainer.devices=N); for FSDP run on CUDA GPUs "
                      "(--trainer.accelerator=gpu)")


def _as_lists(value: Any) -> Any:
    """Tuples as lists, recursively: how YAML would write the value."""
    if isinstance(value, (list, tuple)):
        return [_as_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_lists(v) for k, v in value.items()}
    return value


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``model`` config -> {"init_args.lr": 0.1, ...}; Lightning files checkpoint values
    under ``dict_kwargs``, which are the same constructor arguments."""
    if hasattr(node, "as_dict"):
        node = node.as_dict()
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        key = "init_args" if key == "dict_kwargs" else key
        out.update(_leaves(value, f"{prefix}.{key}" if prefix else key))
    return out


def _differences(checkpoint: dict[str, Any], config: dict[str, Any]) -> list[str]:
    return [f"{key}: {checkpoint[key]!r} (checkpoint) -> {config.get(key)!r} (config)"
            for key in sorted(checkpoint) if key in config and checkpoint[key] != config[key]]


def translate_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Check + translate config files and short names on the command line.

    Returns the new argv and the config files seen (for error messages)."""
    out: list[str] = []
    files: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, inline = arg.partition("=")
        if flag in CONFIG_FLAGS:
            value = inline if eq else (argv[i + 1] if i + 1 < len(argv) else None)
            if value is None:
                raise ConfigError(f"{flag} needs a file")
            if not value.lstrip().startswith("{") and "\n" not in value:
                files.append(value)
                value = yaml.safe_dump(check_config_file(value), sort_keys=False)
            out += [flag, value]
            i += 1 if eq else 2
            continue
        if flag.startswith(("--model", "--data")):
            if eq:
                out.append(f"{flag}={translate_value(flag, inline)}")
                i += 1
                continue
            if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                out += [flag, translate_value(flag, argv[i + 1])]
                i += 2
                continue
        out.append(arg)
        i += 1
    return out, files


def run_lightning(argv: list[str], debug: bool = False) -> ARMLightningCLI | None:
    """Run a LightningCLI subcommand (argv[0] is fit/validate/test/predict)."""
    files: list[str] = []
    # We pass the translated argv explicitly; Lightning would warn that sys.argv differs.
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter.*")
    try:
        argv, files = translate_argv(argv)
        return ARMLightningCLI(
            LightningModule,
            LightningDataModule,
            explicit_check_val=any("check_val_every_n_epoch" in a for a in argv),  # YAML or flag
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=argv,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"exit_on_error": False},
        )
    except ConfigError:
        raise
    except argparse.ArgumentError as exc:
        if debug:
            raise
        raise ConfigError(list_item_flag_error(argv, files) or condense_parser_error(str(exc), files)) from None
    except InstantiationError as exc:
        if debug:
            raise
        raise ConfigError("could not build the configured components: "
                          + condense_parser_error(str(exc), files)) from None
    except SystemExit as exc:  # --help, --print_config
        if exc.code not in (0, None):
            raise
        sys.stdout.flush()
        return None
