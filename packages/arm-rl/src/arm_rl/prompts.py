"""RL prompts: :class:`PromptRecord` and the ShapesWorld prompt data module (``shapes_prompts``).

A prompt record is what a rollout starts from and what a reward scores against: the task
(any registered task: ``t2i``, ``edit``, a plugin's), the text (caption or instruction), and
— for ShapesWorld — the scene specs the rule-based evaluator needs. The task turns a record
into its prompt (:meth:`arm_data.tasks.Task.prompt_condition`) and checks it has what that
needs (:meth:`~arm_data.tasks.Task.check_prompt_record`). Records without specs
(``spec=None``) work with rewards that do not need them (dual-encoder alignment, judges with
explicit questions).

:class:`ShapesPromptDataModule` draws prompts from the ShapesWorld **train** split only (the
held-out-composition split is the benchmark; RL must never see it), mixing tasks by weight
(the model's ``tasks`` weights unless the data module is given its own):
record ``i`` is a pure function of ``(seed, i)``, and the order of epoch ``e`` a pure
function of ``(seed, e)``, so runs are reproducible and a resumed run continues mid-epoch
with the prompts an uninterrupted run would have drawn.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
from arm_data.shapes.difficulty import get_difficulty
from arm_data.shapes.world import ShapesWorld
from arm_data.tasks import UnknownTaskError, get_task, task_names
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset

from arm_rl.sharding import PromptLoader

__all__ = ["SHAPES_RECORDS", "TASKS", "PromptRecord", "ShapesPromptDataset", "ShapesPromptDataModule",
           "check_task_weights", "collate_records", "records_from_dicts"]

#: ARM's RL tasks, those GRPOTrainer trains by default; any registered task whose class
#: builds prompts from prompt records trains too (GRPOTrainer ``tasks``).
TASKS: tuple[str, ...] = ("t2i", "edit")


@dataclass
class PromptRecord:
    """One RL prompt.

    Attributes:
        task: the registered task (``t2i``, ``edit``, a plugin's).
        text: the caption (T2I) or the instruction (edit).
        spec: T2I: the scene the caption describes; edit: the source scene (``SceneSpec``).
        target: edit only: the scene the instruction asks for.
        edit: edit only: the ``EditSpec`` (which objects change).
        check: T2I: the clause kinds the caption states (``caption_attributes``).
        relations: T2I: the relations the caption states.
        source_image: edit: the source image (PIL); None = render ``spec`` when needed.
        index: sample index in its split (for naming a bad batch).
        split: the split it came from.
        questions: optional explicit (question, expected answer "yes"/"no") pairs for judges.
        meta: free-form extra information carried along (e.g. a data set's ids).
    """

    task: str
    text: str
    spec: Any = None
    target: Any = None
    edit: Any = None
    check: frozenset[str] | None = None
    relations: tuple[tuple[int, int, str], ...] | None = None
    source_image: Any = None
    index: int = -1
    split: str = "train"
    questions: list[tuple[str, str]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            owner = get_task(self.task, aliases=False)
        except UnknownTaskError as exc:
            raise ValueError(f"PromptRecord.task: {exc}") from None
        owner.check_prompt_record(self)       # e.g. an edit needs its source

    def describe(self) -> str:
        return f"{self.task} prompt #{self.index} ({self.split}): {self.text!r}"


def collate_records(batch: list[PromptRecord]) -> list[PromptRecord]:
    """Records stay a list (specs and images are not tensors)."""
    return list(batch)


def check_task_weights(weights: dict[str, float], where: str = "task_weights") -> dict[str, float]:
    """Validated task weights normalised to sum 1, in registry order (built-ins first, so a
    mix draws the same tasks however it is written); an unregistered task, a negative
    weight or no positive weight is an error naming ``where``."""
    known = task_names()
    bad = sorted(set(weights) - set(known))
    if bad:
        raise ValueError(f"unknown task(s) {bad} in {where}; registered tasks: {known}")
    if any(not float(v) >= 0 for v in weights.values()):
        raise ValueError(f"{where} must be >= 0, got {weights}")
    total = sum(float(v) for v in weights.values())
    if total <= 0:
        raise ValueError(f"{where} {weights} select no task: give at least one a positive weight")
    return {k: float(weights[k]) / total for k in known if k in weights}


def _caption_record(task: str, s: Any, i: int) -> PromptRecord:
    return PromptRecord(task, s.caption, spec=s.spec, check=s.caption_attributes,
                        relations=s.caption_relations, index=i, split=s.split)


def _edit_record(task: str, s: Any, i: int) -> PromptRecord:
    e = s.edit
    return PromptRecord(task, e.instruction, spec=e.source, target=e.target, edit=e.edit, index=i, split=s.split)


#: What a ShapesWorld sample gives, by the record schema a task reads (``Task.schema``):
#: captions for tasks reading ``t2i`` records, edits for those reading ``edit`` records.
SHAPES_RECORDS = {"t2i": _caption_record, "edit": _edit_record}


class ShapesPromptDataset(Dataset):
    """``len`` prompt records from ShapesWorld's train split, tasks mixed by weight.

    Args:
        length: number of records (an epoch).
        task_weights: e.g. ``{"t2i": 0.5, "edit": 0.5}``: tasks that read ``t2i`` or ``edit``
            records (:data:`SHAPES_RECORDS`).
        seed: world seed and task-choice seed.
        split: must be ``train`` (evaluation splits are for measuring RL, never for training it).
        difficulty: the ShapesWorld the prompts come from (``full``, ``demo`` or Difficulty fields).
    """

    def __init__(self, length: int, task_weights: dict[str, float], seed: int = 0,
                 split: str = "train", difficulty: Any = "full") -> None:
        if split != "train":
            raise ValueError(f"RL prompts come from the ShapesWorld train split only, got split={split!r}: "
                             "val/heldout are what RL is measured on")
        if length < 1:
            raise ValueError(f"the prompt set is empty (length={length}); give num_prompts >= 1")
        self.weights = check_task_weights(task_weights)
        self._make: dict[str, Any] = {}
        for t in self.weights:
            schema = get_task(t, aliases=False).schema
            if schema not in SHAPES_RECORDS:
                raise ValueError(f"task {t!r} reads {schema!r} records, but ShapesWorld prompts are captions "
                                 f"and edits (tasks reading {sorted(SHAPES_RECORDS)} records): give {t!r} "
                                 "prompts with another data module")
            self._make[t] = SHAPES_RECORDS[schema]
        self.world = ShapesWorld(split=split, seed=seed, length=length, difficulty=difficulty)
        self.seed, self.length = seed, length

    def __len__(self) -> int:
        return self.length

    def task_of(self, i: int) -> str:
        u = random.Random(f"arm-rl-task:{self.seed}:{i}").random()
        acc = 0.0
        for t, w in self.weights.items():
            acc += w
            if u < acc and w > 0:
                return t
        return [t for t, w in self.weights.items() if w > 0][-1]

    def __getitem__(self, i: int) -> PromptRecord:
        task = self.task_of(i)
        return self._make[task](task, self.world[i], i)


class ShapesPromptDataModule(pl.LightningDataModule):
    """Batches of ShapesWorld train-split prompt records for RL (``shapes_prompts``).

    Args:
        task_weights: task mix, e.g. ``{"t2i": 1.0}`` (T2I-RL), ``{"edit": 1.0}`` or
            ``{"t2i": 0.5, "edit": 0.5}`` (joint); None = the model's ``tasks`` weights
            (:meth:`follow_task_weights`), T2I only when the model gives none. Prefer setting
            the mix in the model's ``tasks``; given here too, the two must agree.
        prompts_per_step: prompts per training step and device (each is rolled out ``group_size`` times).
        num_prompts: prompts in an epoch (distinct train scenes).
        seed: world and task-mix seed.
        split: must be ``train``.
        shuffle: shuffle each epoch.
        difficulty: the ShapesWorld the prompts come from: ``full`` (default), ``demo``, or
            a mapping of :class:`~arm_data.shapes.difficulty.Difficulty` fields; use the
            world the policy was trained on.
    """

    def __init__(self, task_weights: dict[str, float] | None = None, prompts_per_step: int = 4,
                 num_prompts: int = 10_000, seed: int = 0, split: str = "train",
                 shuffle: bool = True, difficulty: str | dict[str, Any] = "full") -> None:
        super().__init__()
        self.difficulty = get_difficulty(difficulty)
        if task_weights is not None and not task_weights:
            raise ValueError("task_weights is empty: give e.g. {'t2i': 1.0}, or leave it unset to follow "
                             "the model's tasks")
        self.task_weights = check_task_weights(task_weights or {"t2i": 1.0})
        self._weights_given = task_weights is not None
        if prompts_per_step < 1:
            raise ValueError(f"prompts_per_step must be >= 1, got {prompts_per_step}")
        if num_prompts < 1:
            raise ValueError(f"the prompt set is empty (num_prompts={num_prompts}); give >= 1")
        self.prompts_per_step, self.num_prompts = prompts_per_step, num_prompts
        self.seed, self.split, self.shuffle = seed, split, shuffle
        self.dataset: ShapesPromptDataset | None = None
        self._resume: dict[str, int] | None = None
        self._next_epoch = 0

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = ShapesPromptDataset(self.num_prompts, self.task_weights, self.seed, self.split,
                                               difficulty=self.difficulty)

    def follow_task_weights(self, weights: dict[str, float] | None, trained: Sequence[str]) -> None:
        """Called by :class:`~arm_rl.lightning_module.GRPOTrainer` at setup: draw the model's task mix
        ``weights`` (None: the model gives none; keep this module's), and check that every
        task drawn is one of the model's ``trained`` tasks."""
        if weights is not None:
            mix = check_task_weights(weights, "the model's tasks weights")
            if self._weights_given and not _same_mix(mix, self.task_weights):
                raise ValueError(f"data task_weights {_fmt(self.task_weights)} and the model's tasks weights "
                                 f"{_fmt(mix)} disagree: set the mix once, in model.init_args.tasks.<name>.weight "
                                 "(and drop data.init_args.task_weights)")
            if mix != self.task_weights:
                self.task_weights = mix
                self.dataset = None       # built by setup() with the data module's own mix
        missing = [t for t, w in self.task_weights.items() if w > 0 and t not in trained]
        if missing:
            raise ValueError(f"data task_weights {_fmt(self.task_weights)} draw {missing} prompts, but the model "
                             f"trains only {list(trained)}: add model.init_args.tasks.{missing[0]} (a reward and "
                             "sampling settings) or drop it from the mix")
        self.setup("fit")

    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        return PromptLoader(self)     # rank-aware under DDP/FSDP: see arm_rl.sharding

    def epoch_order(self, epoch: int) -> list[int]:
        """Record indices in the order epoch ``epoch`` visits them."""
        n = len(self.dataset)
        if not self.shuffle:
            return list(range(n))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=g).tolist()

    def _begin_epoch(self) -> tuple[int, int]:
        trainer = self.trainer
        epoch = int(trainer.current_epoch) if trainer is not None else self._next_epoch
        resume, self._resume = self._resume, None
        start = resume["batch"] if resume and resume["epoch"] == epoch else 0
        self._next_epoch = epoch + 1
        return epoch, start

    # Lightning saves this in checkpoints and hands it back on resume (ckpt_path).
    def state_dict(self) -> dict[str, Any]:
        """Where training stands: ``{"epoch", "batch", "seed"}`` (batches of the epoch done)."""
        trainer = self.trainer
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            return {"epoch": int(trainer.current_epoch), "seed": self.seed,
                    "batch": int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)}
        return {"epoch": self._next_epoch, "batch": 0, "seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("seed", self.seed) != self.seed:
            raise ValueError(f"resuming with prompt seed {self.seed}, but the checkpoint's prompts used "
                             f"seed {state_dict['seed']}: set data.init_args.seed={state_dict['seed']}")
        self._resume = {"epoch": int(state_dict["epoch"]), "batch": int(state_dict["batch"])}


def _same_mix(a: dict[str, float], b: dict[str, float]) -> bool:
    keys = {k for k, v in a.items() if v > 0} | {k for k, v in b.items() if v > 0}
    return all(abs(a.get(k, 0.0) - b.get(k, 0.0)) < 1e-9 for k in keys)


def _fmt(weights: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:.3g}" for k, v in weights.items()) + "}"


def records_from_dicts(items: Sequence[dict[str, Any]]) -> list[PromptRecord]:
    """Records from plain dicts (``task``, ``text``, ...), e.g. a JSON prompt file."""
    out = [PromptRecord(**d) for d in items]
    if not out:
        raise ValueError("the prompt set is empty")
    return out
