"""Tiny components the registry and CLI tests register through fake entry points."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

# The quiet one-batch trainer of the CLI tests' YAML configs (appended after model/data).
FAST_DEV_TRAINER = """\
trainer:
  fast_dev_run: true
  logger: false
  enable_checkpointing: false
  enable_progress_bar: false
  enable_model_summary: false
"""


class ToyPart(nn.Module):
    """A part with typed arguments.

    Args:
        dim: feature width.
        levels: per-dimension levels.
    """

    def __init__(self, dim: int = 4, levels: list[int] | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.levels = levels or [2, 2]
        self.linear = nn.Linear(dim, dim)


class OtherPart(ToyPart):
    pass


class ToyModule(LightningModule):
    """A LightningModule with an injected part.

    Args:
        part: the injected sub-module.
        lr: learning rate.
    """

    def __init__(self, part: ToyPart, lr: float = 0.1) -> None:
        super().__init__()
        self.part = part
        self.lr = lr

    def training_step(self, batch, batch_idx):
        return self.part.linear(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class ToySavedModule(ToyModule):
    """:class:`ToyModule` that saves its hyper-parameters in checkpoints, as ARM's modules do."""

    def __init__(self, part: ToyPart, lr: float = 0.1) -> None:
        super().__init__(part, lr)
        self.save_hyperparameters()


class ToyData(LightningDataModule):
    """Random vectors.

    Args:
        n: number of samples.
        dim: vector width.
    """

    def __init__(self, n: int = 8, dim: int = 4) -> None:
        super().__init__()
        self.n, self.dim = n, dim

    def train_dataloader(self):
        g = torch.Generator().manual_seed(0)
        return DataLoader(TensorDataset(torch.randn(self.n, self.dim, generator=g)), batch_size=4)
