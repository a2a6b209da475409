"""Hyper-parameters as a module means them, whoever called ``save_hyperparameters``.

Under LightningCLI, ``save_hyperparameters`` records the config's init arguments as
written (a YAML ``[32, 48]`` stays a list; a data module's default ``image_size: 256``
stays 256 when ``height``/``width`` override it), not the values the constructor
derived. Lightning then merges the model's and the data module's hyper-parameters for
the loggers and fails on a key whose values differ, even only in type. Modules call
:func:`set_hparams` after ``save_hyperparameters`` to store the one canonical value.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.core.mixins import HyperparametersMixin

__all__ = ["set_hparams"]


def set_hparams(module: HyperparametersMixin, **values: Any) -> None:
    """Overwrite saved hyper-parameters (``hparams`` and ``hparams_initial``, which the
    loggers and checkpoints use) with ``values``."""
    module.hparams.update(values)
    initial = getattr(module, "_hparams_initial", None)
    if initial is not None:
        initial.update(values)
