"""Format (c): WebDataset tar shards, streamed sequentially and split across workers and ranks.

Shards ``DIR/shard-000000.tar, ...`` hold samples as consecutive members sharing a key
(keys contain no dots; the extension is everything after the first dot)::

    pair:  <key>.png  <key>.txt  [<key>.json]
    vqa:   <key>.png  <key>.json
    edit:  <key>.source.png  <key>.target.png  <key>.txt  [<key>.json]

As in the folder format, the task (:class:`arm_data.tasks.Task`) names the members: one
image is ``<key>.<ext>``, several are ``<key>.<field>.<ext>`` (``image_fields``); the
``.txt`` member fills ``text_field``; ``sidecars`` are the members a sample needs.

Reading uses the ``webdataset`` package's tar iterator and key grouping
(:func:`webdataset.tariterators.tar_file_iterator`, :func:`~webdataset.tariterators.group_by_keys`)
with our own handlers, because webdataset's stock handlers either stop the run or drop
samples silently. Here a shard that cannot be read to its end (truncated member or
header, ``tarfile.ReadError``) ends that shard and is reported once to the
:class:`ErrorPolicy` as ``truncated_tar``, naming the shard, the last good member and
the sample that was cut short; reading goes on with the next shard. A sample lacking
members for another reason is ``missing_sidecar``; a member name occurring twice in a
shard is ``invalid_record`` (the first copy is kept). With an ``index.json`` beside the
shards (written by :func:`arm_data.datasets.writers.write_wds`), a shard holding fewer
samples than listed is ``truncated_tar`` too: a cut exactly between members reads cleanly.

**Splitting.** Each (rank, worker) pair is one partition ``p = rank * num_workers +
worker`` of ``P = world_size * num_workers``; shard order is first shuffled (optionally)
with a seed shared by all partitions, so every partition agrees on it.

* ``split="shard"``: partition ``p`` reads shards ``p, p + P, p + 2P, ...``. Cheapest
  (each shard is read once in total). With fewer shards than partitions, partitions
  ``>= num_shards`` get **no data**; under DDP that desynchronises ranks, so
* ``split="sample"``: every partition reads every shard but keeps only samples whose
  running index ``i`` satisfies ``i % P == p`` (the bytes are read ``P`` times, but each
  image is decoded once). Always balanced to within one sample.
* ``split="auto"`` (default): ``"shard"`` when ``num_shards >= P``, else ``"sample"``.

In both modes the partitions' union is exactly the dataset, without duplicates (tested).
Shards of unequal length can still leave ranks with a few samples more or less;
Lightning then needs ``limit_train_batches`` or equal-sized shards under DDP.
"""

from __future__ import annotations

import json
import os
import random
import tarfile
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import torch
from arm_tokenizer.images import DEFAULT_MAX_PIXELS
from webdataset.tariterators import group_by_keys, tar_file_iterator

from arm_data.datasets import common
from arm_data.datasets.writers import INDEX_NAME
from arm_data.errors import BadSampleError, ErrorPolicy
from arm_data.records import ImageRef, Record, record_from_fields

__all__ = ["WdsRecords", "partition_info"]

SplitMode = Literal["auto", "shard", "sample"]


def partition_info() -> tuple[int, int, int, int]:
    """``(rank, world_size, worker_id, num_workers)`` of the calling process.

    The rank comes from an initialised ``torch.distributed`` group, else from the
    ``RANK`` / ``WORLD_SIZE`` environment variables (set by torchrun and Lightning), else
    ``(0, 1)``; the worker from :func:`torch.utils.data.get_worker_info`.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    else:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    info = torch.utils.data.get_worker_info()
    worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank, world, worker, num_workers


def _read_index(shards: list[str]) -> dict[str, int]:
    """Per-shard sample counts from ``index.json`` beside the shards (see
    :mod:`arm_data.datasets.writers`); ``{}`` when absent. A malformed index is warned
    about and ignored: it is an optional aid, not data."""
    counts: dict[str, int] = {}
    for d in sorted({os.path.dirname(os.path.abspath(s)) for s in shards}):
        path = os.path.join(d, INDEX_NAME)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, "rb") as f:
                meta = json.load(f)
            for entry in meta["shards"]:
                counts[os.path.basename(entry["path"])] = int(entry["num_samples"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            warnings.warn(f"ignoring malformed {path}: {type(e).__name__}: {e}", stacklevel=3)
    return counts


class WdsRecords:
    """Records of one task streamed from WebDataset tar shards (iterable).

    Iterating yields records of this process's partition (see the module docstring);
    :meth:`iter_partition` gives any partition explicitly.

    Example::

        recs = WdsRecords("data/shapes-wds", task="edit", shuffle_shards=True)
        recs.set_epoch(3)
        for rec in recs: ...
    """

    def __init__(
        self,
        shards: str | os.PathLike | list[str],
        task: str = "pair",
        policy: ErrorPolicy | None = None,
        split: SplitMode = "auto",
        shuffle_shards: bool = False,
        seed: int = 0,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        """
        Args:
            shards: a directory of ``*.tar``, one ``.tar``, a glob, a brace pattern
                (``shard-{000000..000009}.tar``) or a list of these.
            task: ``pair``, ``vqa``, ``edit`` or a registered task: which members make a
                sample (see the module docstring).
            policy: receives bad samples (default: a fresh ``ErrorPolicy()``).
            split: how partitions share the shards: ``"shard"``, ``"sample"`` or ``"auto"``.
            shuffle_shards: shuffle the shard order every epoch (seed + epoch, the same in
                every partition, so splitting stays exact).
            seed: base seed of the shard shuffle.
            max_pixels: decompression-bomb limit for the images.
        """
        self._task = common.schema_task(task)
        if not self._task.image_fields:
            raise ValueError(f"task {task!r} has no fixed image fields, so tar shards cannot hold its records; "
                             "use a JSONL manifest")
        if split not in ("auto", "shard", "sample"):
            raise ValueError(f"split must be 'auto', 'shard' or 'sample'; got {split!r}")
        self.shards = common.list_shards(shards)
        self.task = task
        self.policy = policy if policy is not None else ErrorPolicy()
        self.split = split
        self.shuffle_shards = shuffle_shards
        self.seed = seed
        self.max_pixels = max_pixels
        self.epoch = 0
        self.expected_counts = _read_index(self.shards)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shard order (call on every rank; Lightning's loops do for samplers)."""
        self.epoch = int(epoch)

    def shard_order(self) -> list[str]:
        """This epoch's shard order (identical in every partition)."""
        shards = list(self.shards)
        if self.shuffle_shards:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(shards)
        return shards

    def resolve_split(self, num_partitions: int) -> Literal["shard", "sample"]:
        """The split mode used for ``num_partitions`` partitions."""
        if self.split != "auto":
            return self.split  # type: ignore[return-value]
        return "shard" if len(self.shards) >= num_partitions else "sample"

    def __iter__(self) -> Iterator[Record]:
        rank, world, worker, num_workers = partition_info()
        yield from self.iter_partition(rank, world, worker, num_workers)

    def iter_partition(self, rank: int, world_size: int, worker: int, num_workers: int) -> Iterator[Record]:
        """Records of partition ``rank * num_workers + worker`` of ``world_size * num_workers``."""
        if not (0 <= rank < world_size and 0 <= worker < num_workers):
            raise ValueError(f"invalid partition rank={rank}/{world_size}, worker={worker}/{num_workers}")
        total = world_size * num_workers
        part = rank * num_workers + worker
        shards = self.shard_order()
        if self.resolve_split(total) == "shard":
            for shard in shards[part::total]:
                yield from self._records(shard, None)
        else:
            counter = [0]
            for shard in shards:
                yield from self._records(shard, (counter, part, total))

    # -- reading ------------------------------------------------------------------------

    def _members(self, shard: str, state: dict[str, str]) -> Iterator[dict[str, Any]]:
        """The shard's members via webdataset's tar iterator; a read error ends the shard
        and is remembered in ``state["truncated"]`` (reported by :meth:`_records`)."""

        def note_member(fname: str) -> bool:  # webdataset asks before reading each member
            state["reading"] = fname
            return True

        def on_tar_error(exn: Exception) -> bool:
            msg = str(exn.args[0]) if exn.args else ""
            state.setdefault("truncated", f"{type(exn).__name__}: {msg}".split(" @ ")[0])
            return False  # a broken tar stream cannot be resynchronised: stop this shard

        try:
            with open(shard, "rb") as f:
                for member in tar_file_iterator(f, handler=on_tar_error, select_files=note_member):
                    state["last_member"] = member["fname"]
                    member["__url__"] = shard
                    yield member
        except (tarfile.TarError, EOFError, OSError) as exn:
            # raised by the tar header iteration itself (outside webdataset's try block)
            on_tar_error(exn)

    def _records(self, shard: str, stride: tuple[list[int], int, int] | None) -> Iterator[Record]:
        name = os.path.basename(shard)
        state: dict[str, str] = {}

        def on_group_error(exn: Exception) -> bool:  # e.g. a member name occurring twice
            self.policy.skip(BadSampleError(name, "invalid_record", str(exn.args[0]) if exn.args else repr(exn)))
            return True

        def truncated_error() -> BadSampleError:
            after = f" after member {state['last_member']!r}" if "last_member" in state else ""
            if state.get("reading") not in (None, state.get("last_member")):
                after += f", while reading {state['reading']!r}"
            return BadSampleError(name, "truncated_tar", f"shard cannot be read to its end{after}: {state['truncated']}")

        reported = False
        num_samples = 0
        for sample in group_by_keys(self._members(shard, state), handler=on_group_error):
            num_samples += 1
            if stride is not None:  # split="sample": keep every total-th sample of the stream
                counter, part, total = stride
                i = counter[0]
                counter[0] += 1
                if i % total != part:
                    continue
            try:
                rec = self._to_record(sample, name)
            except BadSampleError as e:
                if "truncated" in state and not reported:
                    # the sample cut short by the truncation: one report for both
                    reported = True
                    err = truncated_error()
                    self.policy.skip(BadSampleError(err.source, err.reason, f"{err.detail}; lost sample {e.source}"))
                else:
                    self.policy.skip(e)
                continue
            self.policy.ok()
            yield rec
        expected = self.expected_counts.get(name)
        if "truncated" not in state and expected is not None and num_samples < expected:
            # a shard cut exactly between members reads cleanly: only index.json can tell
            state["truncated"] = f"it holds {num_samples} samples but index.json lists {expected}"
        if "truncated" in state and not reported:
            # split="sample": every partition saw the truncation; the owner of the shard's last
            # sample reports it (it would have reported the cut sample), so it counts once
            if stride is None or stride[1] == max(stride[0][0] - 1, 0) % stride[2]:
                self.policy.skip(truncated_error())

    def _to_record(self, sample: dict[str, Any], shard_name: str) -> Record:
        key = sample["__key__"]
        where = f"{shard_name}:{key}"
        members = {k: v for k, v in sample.items() if not k.startswith("__")}

        def image(prefix: str) -> ImageRef:
            exts = [e for e in common.IMAGE_EXTENSIONS if (f"{prefix}.{e}" if prefix else e) in members]
            if not exts:
                raise BadSampleError(
                    where, "missing_sidecar", f"no {prefix + ' ' if prefix else ''}image member (found {sorted(members)})"
                )
            suffix = f"{prefix}.{exts[0]}" if prefix else exts[0]
            return ImageRef(members[suffix], name=f"{shard_name}:{key}.{suffix}", max_pixels=self.max_pixels)

        fields = common.parse_json_object(members["json"], f"{where}.json") if "json" in members else {}
        text_field = self._task.text_field

        def has(member: str, alternatives: tuple[str, ...]) -> bool:
            if member == "json" and "txt" in alternatives and text_field:
                return text_field in fields  # a JSON standing in for the .txt must hold the text
            return member in members

        for alternatives in self._task.sidecars:
            if not any(has(m, alternatives) for m in alternatives):
                raise BadSampleError(where, "missing_sidecar", f"no .{alternatives[0]} member (found {sorted(members)})")
        if "txt" in members and text_field:
            fields[text_field] = common.decode_text(members["txt"], f"{where}.txt")
        names = self._task.image_fields
        images = {n: image(n if len(names) > 1 else "") for n in names}
        return record_from_fields(self.task, fields, images, key=key, where=where)

    def __repr__(self) -> str:
        return f"WdsRecords({len(self.shards)} shards, task={self.task!r}, split={self.split!r})"
