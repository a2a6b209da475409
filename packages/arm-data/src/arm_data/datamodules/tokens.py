"""``TokenDataModule``: mixed-task, packed, exactly resumable LM batches from token shards.

Registered as datamodule ``tokens``. It reads a directory written by ``arm-data
pretokenize`` (:mod:`arm_data.shards`) and a sentencepiece text tokenizer, turns records
into documents with the registered tasks of :mod:`arm_data.tasks` (pair -> ``t2i``,
vqa -> ``und``, edit -> ``edit``, captions -> ``text``; each task says which records it
reads, how long its document is and how it is laid out), samples tasks by weight, applies
condition dropout for classifier-free guidance, and packs documents into fixed-length
rows::

    data:
      class_path: tokens
      init_args:
        data_dir: data/shapes-tokens          # manifest.json + shard-*.safetensors
        text_tokenizer: data/shapes-tokens/text_tokenizer.model
        seq_len: 512
        batch_size: 16
        task_weights: {t2i: 0.6, und: 0.2, edit: 0.2}

A batch is a dict of ``(B, L)`` tensors::

    input_ids     long   token ids; <pad> where no document
    targets       long   input_ids shifted left by one inside a document where the next
                         token carries loss, else -100 (so loss = CE(logits, targets))
    position_ids  long   0, 1, 2, ... restarting at every document (0 on padding)
    doc_ids       long   0, 1, 2, ... per document within the row; -1 on padding.
                         Attention must stay inside a document: q attends k iff
                         doc_ids[q] == doc_ids[k] and k <= q
    task_ids      long   index into the data module's task_names (t2i, und, edit, text, then
                         registered third-party tasks by name); -1 on padding

``packing=False`` puts one document per row (padded to ``seq_len``) instead.

Determinism and resumption: batch ``b`` of epoch ``e`` on rank ``r`` is a pure function
of ``(seed, e, r, b)`` -- its documents are drawn from a ``random.Random`` seeded with
exactly that -- so a run resumed from ``state_dict()`` (Lightning stores it in every
checkpoint) continues with the very batches the uninterrupted run would have seen, with
any number of DataLoader workers. Documents are sampled with replacement: task by
weight, then a record uniformly within the task. A document that does not fit the rest
of a row moves to the next row; the one left over at the end of a batch is dropped.

Validation uses records held out by source item (all records of one ShapesWorld scene
land on the same side), ``val_fraction`` of them, or the shards of ``val_dir``; its
batches are fixed (the same every time they are evaluated).
"""

from __future__ import annotations

import hashlib
import inspect
import math
import random
import typing
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from arm_data import tasks as task_kind
from arm_data.formats import ConditionDropout, TokenSequence
from arm_data.shards import Manifest, TokenRecord, open_shards, read_shard
from arm_data.tasks import Task
from arm_data.text_tokenizer import TextTokenizer, resolve_text_tokenizer
from arm_data.vocab import VocabLayout

IGNORE_INDEX = -100


# ---------------------------------------------------------------------- documents
class _Corpus:
    """Records of one split with their texts tokenized once, turned into documents on demand."""

    def __init__(self, records: list[TokenRecord], text: TextTokenizer, layout: VocabLayout,
                 loss_on_all: bool, dropout: ConditionDropout, seq_len: int, tasks: list[str],
                 options: dict[str, dict[str, Any]] | None = None) -> None:
        self.layout, self.loss_on_all, self.dropout = layout, loss_on_all, dropout
        self.options = options or {}
        self.docs: dict[str, list[tuple[Any, ...]]] = {t: [] for t in tasks}
        self.too_long: dict[str, int] = {t: 0 for t in tasks}
        self.malformed = 0
        self.tasks: dict[str, Task] = {t: task_kind.get_task(t, aliases=False) for t in tasks}
        enc = text.encode
        for r in records:
            schema = task_kind.canonical_task(r.task)  # shards name schemas as records do: pair, vqa, edit
            for name, task in self.tasks.items():
                if task.schema != schema:
                    continue
                item = task.document(r, enc)
                if item is None:
                    self.malformed += 1  # e.g. turns that are not user/assistant pairs: no answer to learn
                    continue
                # the longest form of the document (a dropped condition is never longer
                # than one <null> more than its text)
                if task.length(item) + 1 > seq_len:
                    self.too_long[name] += 1
                    continue
                self.docs[name].append(item)

    def build(self, task: str, item: tuple[Any, ...], rng: random.Random | None) -> TokenSequence:
        """The document of ``item``; ``rng`` draws condition dropout (None: no dropout)."""
        return self.tasks[task].sequence(self.layout, item, self.loss_on_all, self.dropout, rng,
                                         **self.options.get(task, {}))


_SEQUENCE_ARGS = ("self", "layout", "doc", "loss_on_all", "dropout", "rng")


def check_task_options(options: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """``task_options`` checked against each task's :meth:`~arm_data.tasks.Task.sequence`:
    every option must be a keyword it takes beyond the common ones, and a value of a
    ``Literal`` parameter one of its choices. Returns a plain copy.

    Raises:
        ValueError: naming the task, the option and what is accepted.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, opts in (options or {}).items():
        task = task_kind.get_task(name, aliases=False)
        if not isinstance(opts, dict):
            raise ValueError(f"task_options[{name!r}] must be a mapping of option -> value, got {opts!r}")
        params = {p: v for p, v in inspect.signature(task.sequence).parameters.items() if p not in _SEQUENCE_ARGS}
        hints = typing.get_type_hints(task.sequence)
        for key, value in opts.items():
            if key not in params:
                raise ValueError(f"task_options[{name!r}] has unknown option {key!r}; {name}.sequence() takes "
                                 f"{sorted(params) or 'no options'}")
            choices = typing.get_args(hints.get(key)) if typing.get_origin(hints.get(key)) is typing.Literal else ()
            if choices and value not in choices:
                raise ValueError(f"task_options[{name!r}][{key!r}] must be one of {list(choices)}, got {value!r}")
        out[name] = dict(opts)
    return out


def doc_length(task: str, item: tuple[Any, ...]) -> int:
    """Length of the document :meth:`_Corpus.build` makes from ``item`` without dropout
    (the task's :meth:`~arm_data.tasks.Task.length`, computed without building it)."""
    return task_kind.get_task(task, aliases=False).length(item)


class _BatchBuilder:
    """Builds batch ``b`` of epoch ``e`` on rank ``r`` as a pure function of ``(seed, e, r, b)``."""

    def __init__(self, corpus: _Corpus, weights: dict[str, float], batch_size: int, seq_len: int,
                 packing: bool, seed: int | str) -> None:
        self.corpus, self.batch_size, self.seq_len, self.packing, self.seed = corpus, batch_size, seq_len, packing, seed
        self.tasks = [t for t, w in weights.items() if w > 0 and corpus.docs.get(t)]
        self.weights = [weights[t] for t in self.tasks]
        if not self.tasks:
            raise ValueError(f"no documents for any task with weight > 0 (weights {weights}, documents per task "
                             f"{ {t: len(d) for t, d in corpus.docs.items()} })")

    def _doc(self, rng: random.Random) -> TokenSequence:
        task = rng.choices(self.tasks, self.weights)[0]
        docs = self.corpus.docs[task]
        return self.corpus.build(task, docs[rng.randrange(len(docs))], rng)

    def batch(self, epoch: int, rank: int, index: int) -> dict[str, torch.Tensor]:
        rng = random.Random(f"{self.seed}/{epoch}/{rank}/{index}")
        B, L = self.batch_size, self.seq_len
        rows: list[list[TokenSequence]] = []
        carry: TokenSequence | None = None
        for _ in range(B):
            row: list[TokenSequence] = []
            fill = 0
            while True:
                doc = carry if carry is not None else self._doc(rng)
                carry = None
                if fill + len(doc) > L:
                    carry = doc
                    break
                row.append(doc)
                fill += len(doc)
                if not self.packing:
                    break
            rows.append(row)
        return collate_rows(rows, L, self.corpus.layout.pad_id)


def collate_rows(rows: list[list[TokenSequence]], seq_len: int, pad_id: int) -> dict[str, torch.Tensor]:
    """Documents per row -> the batch dict documented in the module docstring (``task_ids``
    from :func:`arm_data.tasks.task_id`)."""
    B = len(rows)
    input_ids = torch.full((B, seq_len), pad_id, dtype=torch.long)
    targets = torch.full((B, seq_len), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((B, seq_len), dtype=torch.long)
    doc_ids = torch.full((B, seq_len), -1, dtype=torch.long)
    task_ids = torch.full((B, seq_len), -1, dtype=torch.long)
    for i, row in enumerate(rows):
        pos = 0
        for d, doc in enumerate(row):
            n = len(doc)
            ids, mask = doc.as_tensors()
            input_ids[i, pos:pos + n] = ids
            # targets[t] = ids[t+1] when token t+1 (same document) carries loss
            tgt = torch.where(mask[1:], ids[1:], torch.full_like(ids[1:], IGNORE_INDEX))
            targets[i, pos:pos + n - 1] = tgt
            position_ids[i, pos:pos + n] = torch.arange(n)
            doc_ids[i, pos:pos + n] = d
            task_ids[i, pos:pos + n] = task_kind.task_id(doc.task)
            pos += n
    return {"input_ids": input_ids, "targets": targets, "position_ids": position_ids,
            "doc_ids": doc_ids, "task_ids": task_ids}


class _BatchStream(IterableDataset):
    """Yields batches ``[start, stop)`` of one epoch; worker ``w`` of ``n`` builds every n-th one.

    The DataLoader collects workers round-robin, so batches come out in index order.
    """

    def __init__(self, builder: _BatchBuilder, rank: int, stop: int) -> None:
        self.builder, self.rank, self.stop = builder, rank, stop
        self.epoch, self.start = 0, 0

    def __iter__(self):
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        for b in range(self.start + wid, self.stop, nw):
            yield self.builder.batch(self.epoch, self.rank, b)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class _ResumableLoader(DataLoader):
    """Asks the data module where to start each time it is iterated, and counts batches handed out."""

    def __init__(self, dataset: _BatchStream, num_workers: int = 0, datamodule: Any = None, train: bool = True) -> None:
        super().__init__(dataset, batch_size=None, num_workers=num_workers)
        self._dm, self._train = datamodule, train

    def __len__(self) -> int:
        return self.dataset.stop

    # Lightning saves/restores the state of loaders that have these (and warns about
    # loaders that do not); both delegate to the data module, which holds the one state.
    def state_dict(self) -> dict[str, Any]:
        return self._dm.state_dict() if self._train else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._train and state_dict:
            self._dm.load_state_dict(state_dict)

    def __iter__(self):
        if self._train:
            epoch, start = self._dm._begin_epoch()
            self.dataset.epoch, self.dataset.start = epoch, start
        else:
            self.dataset.epoch, self.dataset.start = 0, 0
        it = super().__iter__()
        for batch in it:
            if self._train:
                self._dm._progress["batch"] += 1
            yield batch


# ---------------------------------------------------------------------- the data module
def _in_val(index: int, key: str, fraction: float) -> bool:
    """Stable held-out choice by source item (hash of the item index, or the key if it has none)."""
    token = str(index) if index >= 0 else key
    h = int.from_bytes(hashlib.sha256(token.encode()).digest()[:8], "big")
    return (h % 1_000_000) < fraction * 1_000_000


class TokenDataModule(pl.LightningDataModule):
    """Mixed-task token batches (T2I, understanding, editing, text) from pre-tokenized shards.

    Args:
        data_dir: directory written by ``arm-data pretokenize`` (``manifest.json`` + shards).
        text_tokenizer: sentencepiece ``.model`` path (default ``<data_dir>/text_tokenizer.model``,
            made by ``arm-data train-text-tokenizer --shards <data_dir>``), or a HF
            ``tokenizer.json`` (or its model directory) when the LM starts from that HF model.
        seq_len: tokens per row.
        batch_size: rows per batch (per rank).
        task_weights: sampling weight per task in ``t2i``, ``und``, ``edit``, ``text``
            (normalised; default ``{"t2i": 0.6, "und": 0.2, "edit": 0.2}``).
        packing: pack several documents per row (True) or one padded document per row.
        loss_on_all: loss on every token after ``<bos>`` instead of only the outputs.
        p_drop_caption: CFG condition dropout: T2I caption -> ``<null>``.
        p_drop_instruction: edit instruction alone -> ``<null>``.
        p_drop_source: edit source image alone -> ``<null>``.
        p_drop_both: both edit conditions -> ``<null>``. The three edit probabilities also
            drop, once per ``interleaved`` document, the text before one of its images, the
            history before that text, or both (:mod:`arm_data.tasks.interleaved`).
        task_options: keyword options of a task's ``sequence()``, per task, e.g.
            ``{interleaved: {loss: text}}`` (an interleaved document's loss on its text only;
            ``image``: on its images; default ``both``); checked against the task's signature.
        val_fraction: fraction of source items held out for validation (ignored with ``val_dir``).
        val_dir: a separate pre-tokenized directory for validation (same tokenizer).
        batches_per_epoch: training batches per epoch (default: enough rows to hold every
            training document about once).
        val_batches: validation batches (fixed content).
        max_grid_h: largest token-grid height the vocabulary's shape tokens cover.
        max_grid_w: largest token-grid width.
        num_workers: DataLoader workers building batches.
        seed: base seed of all sampling.
    """

    def __init__(
        self,
        data_dir: str = "data/shapes-tokens",
        text_tokenizer: str | None = None,
        seq_len: int = 512,
        batch_size: int = 16,
        task_weights: dict[str, float] | None = None,
        packing: bool = True,
        loss_on_all: bool = False,
        p_drop_caption: float = 0.1,
        p_drop_instruction: float = 0.05,
        p_drop_source: float = 0.05,
        p_drop_both: float = 0.05,
        task_options: dict[str, dict[str, Any]] | None = None,
        val_fraction: float = 0.02,
        val_dir: str | None = None,
        batches_per_epoch: int | None = None,
        val_batches: int = 4,
        max_grid_h: int = 32,
        max_grid_w: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        weights = dict(task_weights) if task_weights is not None else {"t2i": 0.6, "und": 0.2, "edit": 0.2}
        known = task_kind.task_names()
        unknown = [t for t in weights if t not in known]
        if unknown:
            raise ValueError(f"task_weights has unknown tasks {unknown}; known tasks: {known}. Install the package "
                             f"that provides a task (it registers under the 'arm.tasks' entry-point group)")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"task_weights must be >= 0 with a positive sum, got {weights}")
        if seq_len < 8 or batch_size < 1:
            raise ValueError(f"seq_len must be >= 8 and batch_size >= 1, got {seq_len}, {batch_size}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.data_dir = Path(data_dir)
        self.manifest = Manifest.load(self.data_dir)
        self._text_path = resolve_text_tokenizer(text_tokenizer or self.data_dir / "text_tokenizer.model")
        self.text = TextTokenizer.load(self._text_path)
        gh, gw = self.manifest.grid
        if gh > max_grid_h or gw > max_grid_w:
            raise ValueError(f"shards hold {gh}x{gw} token grids but max_grid_h/w is {max_grid_h}x{max_grid_w}")
        self.layout = VocabLayout(self.text.vocab_size, self.manifest.codebook_size, max_grid_h, max_grid_w,
                                  task_kind.vocab_specials(weights))  # built-ins, then tokens plugin tasks add
        self.seq_len, self.batch_size, self.packing = seq_len, batch_size, packing
        total = sum(weights.values())
        self.task_weights = {t: w / total for t, w in weights.items()}
        self.loss_on_all = loss_on_all
        self.dropout = ConditionDropout(p_drop_caption, p_drop_instruction, p_drop_source, p_drop_both)
        self.task_options = check_task_options(task_options)
        self.val_fraction, self.val_dir = val_fraction, val_dir
        self.batches_per_epoch, self.val_batches = batches_per_epoch, val_batches
        self.num_workers, self.seed = num_workers, seed
        self._train: _BatchBuilder | None = None
        self._val: _BatchBuilder | None = None
        self._progress = {"epoch": 0, "batch": 0}
        self._resume: dict[str, int] | None = None
        self._next_epoch = 0

    # -------------------------------------------------------------- what the LM reads from us
    @property
    def vocab_size(self) -> int:
        """``layout.total_size``: link it to the LM's vocabulary size."""
        return self.layout.total_size

    @property
    def task_names(self) -> list[str]:
        """Names of the ``task_ids`` values (index = id): the built-ins, then registered tasks by name."""
        return task_kind.task_names()

    @property
    def text_tokenizer_path(self) -> str:
        """The sentencepiece model file in use (exported with the LM)."""
        return str(self._text_path)

    @property
    def tokenizer_dir(self) -> str | None:
        """The visual tokenizer checkpoint the shards were made with, if recorded and present."""
        d = self.manifest.info.get("tokenizer_dir")
        return d if d and Path(d).is_dir() else None

    # -------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        _, paths = open_shards(self.data_dir)
        records = [r for p in paths for r in read_shard(p)]
        if self.val_dir:
            vm, vpaths = open_shards(self.val_dir)
            if vm.codebook_size != self.manifest.codebook_size or vm.settings.get("tokenizer") != self.manifest.settings.get("tokenizer"):
                raise ValueError(f"val_dir {self.val_dir} was tokenized with another visual tokenizer than {self.data_dir}")
            train, val = records, [r for p in vpaths for r in read_shard(p)]
        else:
            train = [r for r in records if not _in_val(r.index, r.key, self.val_fraction)]
            val = [r for r in records if _in_val(r.index, r.key, self.val_fraction)]
        tasks = [t for t, w in self.task_weights.items() if w > 0]
        corpus = _Corpus(train, self.text, self.layout, self.loss_on_all, self.dropout, self.seq_len, tasks,
                         self.task_options)
        self._check_corpus(corpus, "training")
        self._train = _BatchBuilder(corpus, self.task_weights, self.batch_size, self.seq_len, self.packing, self.seed)
        if self.batches_per_epoch is None:
            n_docs = sum(len(d) for d in corpus.docs.values())
            mean_len = sum(doc_length(t, d[0]) for t, d in corpus.docs.items() if d) / max(
                1, sum(1 for d in corpus.docs.values() if d))
            per_row = max(1, int(self.seq_len // mean_len)) if self.packing else 1
            self.batches_per_epoch = max(1, math.ceil(n_docs / (per_row * self.batch_size)))
        if val:
            vcorpus = _Corpus(val, self.text, self.layout, self.loss_on_all, ConditionDropout(0, 0, 0, 0),
                              self.seq_len, tasks, self.task_options)
            if any(vcorpus.docs.values()):
                self._val = _BatchBuilder(vcorpus, self.task_weights, self.batch_size, self.seq_len,
                                          self.packing, f"val-{self.seed}")

    def _check_corpus(self, corpus: _Corpus, split: str) -> None:
        if corpus.malformed:
            warnings.warn(f"{corpus.malformed} {split} conversations do not alternate user/assistant turns "
                          f"(starting with the user) and were left out", stacklevel=3)
        for task, n in corpus.too_long.items():
            if n and not corpus.docs[task]:
                raise ValueError(f"every {task} document is longer than seq_len={self.seq_len}; raise seq_len")
            if n:
                warnings.warn(f"{n} {split} {task} documents are longer than seq_len={self.seq_len} and were left out",
                              stacklevel=3)
        empty = [t for t, w in self.task_weights.items() if w > 0 and not corpus.docs[t]]
        if empty:
            raise ValueError(f"task(s) {empty} have weight > 0 but the shards in {self.data_dir} hold no "
                             f"{[task_kind.record_name(corpus.tasks[t].schema) for t in empty]} records (tasks there: "
                             f"{self.manifest.settings.get('tasks')})")

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    # -------------------------------------------------------------- loaders
    def train_dataloader(self) -> DataLoader:
        self.setup("fit")
        rank, _ = self._rank()
        return _ResumableLoader(_BatchStream(self._train, rank, self.batches_per_epoch), self.num_workers, self)

    def val_dataloader(self) -> DataLoader | list:
        self.setup("validate")
        if self._val is None:
            return []
        return _ResumableLoader(self._val_stream(), self.num_workers, self, train=False)

    def _val_stream(self) -> _BatchStream:
        rank, world = self._rank()
        # each rank evaluates its own fixed batches
        return _BatchStream(self._val, rank, max(1, self.val_batches // world))

    def predict_dataloader(self) -> DataLoader | list:
        """The validation batches (``arm-lm predict`` scores them document by document)."""
        self.setup("predict")
        if self._val is None:
            raise ValueError(f"{self.data_dir}: predict scores the validation documents and there "
                             "are none: set val_fraction > 0 or val_dir")
        # a plain DataLoader: Lightning re-creates predict loaders to track batch indices
        return DataLoader(self._val_stream(), batch_size=None, num_workers=self.num_workers)

    def batch(self, epoch: int, index: int, rank: int = 0, split: str = "train") -> dict[str, torch.Tensor]:
        """Batch ``index`` of ``epoch`` directly (what the loader yields there)."""
        self.setup()
        builder = self._train if split == "train" else self._val
        if builder is None:
            raise ValueError(f"no {split} data")
        return builder.batch(epoch, rank, index)

    # -------------------------------------------------------------- resumption
    def _begin_epoch(self) -> tuple[int, int]:
        trainer = self.trainer
        resume, self._resume = self._resume, None
        if trainer is not None:
            epoch = int(trainer.current_epoch)
        else:
            epoch = resume["epoch"] if resume else self._next_epoch
        start = 0
        if resume and resume["epoch"] == epoch and resume["batch"] < (self.batches_per_epoch or 0):
            start = resume["batch"]
        self._next_epoch = epoch + 1
        self._progress = {"epoch": epoch, "batch": start}
        return epoch, start

    def state_dict(self) -> dict[str, Any]:
        """Where training stands: ``{"epoch", "batch"}`` (batches of that epoch already consumed)."""
        trainer = self.trainer
        state = dict(self._progress)
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING:
            # the trainer's own count; the loader's counter runs ahead by the prefetched batch
            state = {"epoch": int(trainer.current_epoch),
                     "batch": int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)}
        state["seed"] = self.seed
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("seed", self.seed) != self.seed:
            warnings.warn(f"resuming with seed {self.seed} but the checkpoint's data used seed "
                          f"{state_dict['seed']}: batches will differ from the original run", stacklevel=2)
        self._resume = {"epoch": int(state_dict["epoch"]), "batch": int(state_dict["batch"])}
        self._progress = dict(self._resume)
