"""LightningCLI with ARM's registry names and clear errors.

``fit``/``validate``/``test``/``predict`` of every ARM console script end here. The model
and data are any registered (or importable) ``LightningModule``/``LightningDataModule``
(subclass mode), so one CLI trains a tokenizer, a teacher, an LM or an RL policy depending
only on the YAML. Config files are checked and translated by
:mod:`arm_tokenizer.config_check` first; the translated YAML (full class paths) is what
LightningCLI parses and what its saved ``config.yaml`` contains, so runs replay anywhere.
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from typing import Any

import yaml
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_warn

from arm_tokenizer.config_check import (
    ConfigError,
    check_config_file,
    condense_parser_error,
    translate_value,
)

CONFIG_FLAGS = ("--config", "-c")


class InstantiationError(RuntimeError):
    """A component's constructor rejected its (type-correct) arguments."""


class ARMLightningCLI(LightningCLI):
    """LightningCLI whose instantiation errors name the component and the config."""

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
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
        raise ConfigError(condense_parser_error(str(exc), files)) from None
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
