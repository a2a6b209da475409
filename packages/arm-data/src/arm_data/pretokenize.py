"""Pre-tokenization: run a visual tokenizer once over a dataset, write token shards.

``arm-data pretokenize --tokenizer CKPT_DIR --source shapes:train --out DIR --count N``
renders/decodes images in DataLoader worker processes, encodes them with the tokenizer
in the main process (torch threads, or a GPU with ``--device cuda``), and writes the
shard format of :mod:`arm_data.shards`.

Guarantees (tested):

* **Atomic**: each shard and the manifest are written to a temp file in the output
  directory and renamed into place; a shard is listed in the manifest (with its
  SHA-256) only after its rename.
* **Resumable**: a re-run with the same settings skips finished shards (listed, present,
  checksum matching) and redoes the rest; a run with different settings into the same
  directory is refused (it would mix two tokenizations). Temp files a killed run left
  (``.shard-*.tmp``, ``.manifest.json.*.tmp``) are removed when a run starts.
* **Reproducible**: shard ``k`` holds source items ``[k*S, (k+1)*S)`` encoded in fixed
  batches, so pre-tokenizing twice -- even with an interruption in between -- gives
  byte-identical shards (same tokenizer, batch size and device).

Sources: ``shapes:SPLIT`` (ShapesWorld; each scene gives a pair record, its QA pairs and
an edit triplet, filtered by ``--tasks``) or a dataset path in one of the formats of
``arm_data.datasets`` (folder with sidecars, JSONL manifest, WebDataset shards). Several
sources in one run, each with its tasks and weight (``--source PATH[:TASKS][@WEIGHT]``
repeated, or ``--sources FILE``), are mixed by :mod:`arm_data.source_mix`.

Images are fitted to the tokenizer's ``image_size`` (from its ``config.json``) by the
centre-crop policy: scaled to cover, then the centre cut out.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from arm_tokenizer.images import ImageTransform
from arm_tokenizer.tokenizer import VisualTokenizer
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from arm_data.datasets.common import detect_format
from arm_data.datasets.folder import FolderRecords
from arm_data.datasets.jsonl import JsonlRecords
from arm_data.datasets.wds import WdsRecords
from arm_data.errors import BadSampleError, ErrorPolicy
from arm_data.formats import ImageTokens
from arm_data.shapes.chains import EditChains
from arm_data.shapes.difficulty import get_difficulty
from arm_data.shapes.splits import SPLITS
from arm_data.shapes.world import ShapesWorld
from arm_data.shards import (
    MANIFEST_NAME,
    RECORD_TASKS,
    Manifest,
    ShardError,
    TokenRecord,
    shard_name,
    write_shard,
)
from arm_data.source_mix import make_sources, parse_source, read_sources_file
from arm_data.tasks import get_task, record_name, task_names


@runtime_checkable
class ImageTokenizer(Protocol):
    """What pre-tokenization needs from a visual tokenizer (``arm_tokenizer.tokenizer.VisualTokenizer`` fits).

    ``encode`` takes float ``(B, 3, H, W)`` in [-1, 1] at ``image_size`` and returns
    ``LongTensor (B, N)`` with ``N = tokens_per_image = grid[0] * grid[1]``.
    """

    image_size: tuple[int, int]

    @property
    def grid(self) -> tuple[int, int]: ...

    @property
    def codebook_size(self) -> int: ...

    @property
    def tokens_per_image(self) -> int: ...

    def encode(self, images: torch.Tensor) -> torch.Tensor: ...


class PatchColorTokenizer:
    """A training-free baseline tokenizer: each ``patch x patch`` cell -> its mean color, quantized.

    Every channel's mean is quantized to ``levels`` values, so the codebook has
    ``levels ** 3`` codes (code = r * levels^2 + g * levels + b). It really encodes and
    decodes (a flat-colored mosaic), needs no weights, and makes the pre-tokenization and
    LM pipeline testable and demonstrable before a learned tokenizer exists.

    Args:
        image_size: input size ``(height, width)`` or an int.
        patch: cell size in pixels (the token grid is ``image_size / patch``).
        levels: quantization levels per color channel.
    """

    def __init__(self, image_size: int | tuple[int, int] = 32, patch: int = 8, levels: int = 4) -> None:
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        if h % patch or w % patch or levels < 2:
            raise ValueError(f"image_size {h}x{w} must be a multiple of patch={patch}, levels >= 2")
        self.image_size, self.patch, self.levels = (int(h), int(w)), int(patch), int(levels)

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch, self.image_size[1] // self.patch

    @property
    def tokens_per_image(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def codebook_size(self) -> int:
        return self.levels ** 3

    def fingerprint(self) -> str:
        return f"patch_color/{self.image_size}/{self.patch}/{self.levels}"

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` in [-1, 1] -> ``LongTensor (B, N)``."""
        if images.dim() != 4 or tuple(images.shape[1:]) != (3, *self.image_size):
            raise ValueError(f"expected (B, 3, {self.image_size[0]}, {self.image_size[1]}), got {tuple(images.shape)}")
        means = torch.nn.functional.avg_pool2d(images.float(), self.patch)  # (B, 3, gh, gw)
        q = ((means + 1) / 2 * self.levels).floor().clamp(0, self.levels - 1).long()
        codes = q[:, 0] * self.levels ** 2 + q[:, 1] * self.levels + q[:, 2]
        return codes.flatten(1)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` codes -> ``(B, 3, H, W)`` mosaic in [-1, 1] (cell centers of the quantization bins)."""
        L = self.levels
        idx = indices.long().view(-1, *self.grid)
        q = torch.stack([idx // (L * L), (idx // L) % L, idx % L], dim=1).float()
        img = (q + 0.5) / L * 2 - 1
        return img.repeat_interleave(self.patch, dim=2).repeat_interleave(self.patch, dim=3)


# ---------------------------------------------------------------------- sources
@dataclass
class RawRecord:
    """A record with decoded images (``uint8 (3, H, W)`` at the tokenizer's size), before encoding."""

    task: str
    texts: dict[str, Any]
    images: list[torch.Tensor]
    key: str = ""
    index: int = -1
    extra: dict[str, Any] = field(default_factory=dict)


class PretokenizeSource(Protocol):
    """A map-style source of items; an item expands to one or more records."""

    def __len__(self) -> int: ...

    def describe(self) -> dict[str, Any]: ...

    def load(self, i: int, image_size: tuple[int, int]) -> list[RawRecord]: ...


def _to_uint8(img: Any, image_size: tuple[int, int]) -> torch.Tensor:
    """PIL image -> ``uint8 (3, H, W)`` at ``image_size`` (center crop policy)."""
    h, w = image_size
    if img.size != (w, h):
        img = ImageTransform((h, w), crop="center")(img)
    arr = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def _json_safe(value: Any) -> Any:
    """Extra fields as plain JSON data (spec objects via ``to_dict``)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class ShapesSource:
    """ShapesWorld scenes as pre-tokenization items (``shapes:SPLIT``).

    Args:
        split: a ShapesWorld split (``train``, ``val``, ``heldout``).
        seed: the world's seed.
        tasks: which records each scene gives: ``pair`` (caption), ``vqa`` (every QA
            pair), ``edit`` (the edit triplet), ``interleaved`` (edit chain ``i`` of the split,
            :class:`arm_data.shapes.chains.EditChains`: a 2-4 step document with its specs).
        length: number of scenes (ShapesWorld is unbounded; ``--count`` sets it).
        num_questions: QA pairs per scene.
        difficulty: the world's content (``full``, ``demo`` or Difficulty fields).
    """

    def __init__(self, split: str, seed: int, tasks: Sequence[str], length: int, num_questions: int = 4,
                 difficulty: Any = "full") -> None:
        if split not in SPLITS:
            raise ValueError(f"unknown ShapesWorld split {split!r}; choose from {list(SPLITS)}")
        self.split, self.seed, self.tasks, self.length = split, int(seed), tuple(tasks), int(length)
        self.num_questions = int(num_questions)
        self.difficulty = get_difficulty(difficulty)
        self._worlds: dict[tuple[int, int], Any] = {}

    def __len__(self) -> int:
        return self.length

    def describe(self) -> dict[str, Any]:
        out = {"kind": "shapes", "split": self.split, "seed": self.seed, "num_questions": self.num_questions}
        if self.difficulty.name != "full":  # (full-world manifests stay as they were)
            out["difficulty"] = self.difficulty.to_dict()
        return out

    def _world(self, image_size: tuple[int, int]) -> Any:
        if image_size not in self._worlds:
            h, w = image_size
            self._worlds[image_size] = ShapesWorld(split=self.split, seed=self.seed, width=w, height=h,
                                                   length=max(1, self.length), num_questions=self.num_questions,
                                                   difficulty=self.difficulty)
        return self._worlds[image_size]

    def load(self, i: int, image_size: tuple[int, int]) -> list[RawRecord]:
        s = self._world(image_size)[i]
        key = f"shapes-{self.split}-{i:08d}"
        spec = _json_safe(s.spec)
        out: list[RawRecord] = []
        image = None
        if "pair" in self.tasks or "vqa" in self.tasks:
            image = _to_uint8(s.image, image_size)
        if "pair" in self.tasks:
            attrs = sorted(getattr(s, "caption_attributes", ()))
            out.append(RawRecord("pair", {"text": _text(s.caption)}, [image], key, i,
                                 {"spec": spec, "caption_attributes": attrs}))
        if "vqa" in self.tasks:
            qas = s.qa if isinstance(s.qa, (list, tuple)) else [s.qa]
            for j, qa in enumerate(qas):
                out.append(RawRecord("vqa", {"question": qa.question, "answer": qa.answer}, [image],
                                     f"{key}-qa{j}", i, {"spec": spec, "qa_kind": getattr(qa, "kind", "")}))
        if "edit" in self.tasks and s.edit is not None:
            e = s.edit
            # the source scene is the sample's own scene: reuse its pixels (encoded once)
            src = image if image is not None and e.source == s.spec else _to_uint8(e.source_image, image_size)
            tgt = _to_uint8(e.target_image, image_size)
            extra = {"source_spec": _json_safe(e.source), "target_spec": _json_safe(e.target),
                     "edit": _json_safe(getattr(e, "edit", None))}
            out.append(RawRecord("edit", {"instruction": e.instruction}, [src, tgt], f"{key}-edit", i, extra))
        if "interleaved" in self.tasks:
            out.append(self._chain(i, image_size))
        return out

    def _chain(self, i: int, image_size: tuple[int, int]) -> RawRecord:
        """Edit chain ``i`` of the split as an ``interleaved`` record (its own random streams)."""
        h, w = image_size
        chain = EditChains(self.split, self.seed, w, h, max(1, self.length), difficulty=self.difficulty)[i]
        rec = chain.record(png=False)
        images = [_to_uint8(im, image_size) for im in rec.images]
        return RawRecord("interleaved", get_task("interleaved").record_texts(rec), images, chain.key, i,
                         chain.extra())


def _text(caption: Any) -> str:
    return caption if isinstance(caption, str) else caption.text


class RecordsSource:
    """Records from a dataset path (folder, JSONL manifest or WebDataset shards) as items.

    Items are the records of ``tasks`` in order (all pair records, then vqa, then edit).
    WebDataset shards are streamed once when the source is built and their records kept
    (encoded bytes) in memory, since pre-tokenization needs an indexable order.

    Args:
        path: the dataset (see :func:`arm_data.datasets.common.detect_format`).
        tasks: which record tasks to read.
        policy: receives bad samples found while indexing.
    """

    def __init__(self, path: str, tasks: Sequence[str], policy: ErrorPolicy | None = None) -> None:
        self.path, self.tasks = str(path), tuple(tasks)
        self.format = detect_format(path)
        self.policy = policy if policy is not None else ErrorPolicy()
        self.readers: list[Any] = []
        for task in self.tasks:
            if self.format == "folder":
                self.readers.append(FolderRecords(path, task=task, policy=self.policy))
            elif self.format == "jsonl":
                self.readers.append(JsonlRecords(path, task=task, policy=self.policy))
            else:
                self.readers.append(list(WdsRecords(path, task=task, policy=self.policy).iter_partition(0, 1, 0, 1)))
        self._offsets = [0]
        for r in self.readers:
            self._offsets.append(self._offsets[-1] + len(r))

    def __len__(self) -> int:
        return self._offsets[-1]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.format, "path": os.path.abspath(self.path)}

    def load(self, i: int, image_size: tuple[int, int]) -> list[RawRecord]:
        r = bisect.bisect_right(self._offsets, i) - 1
        rec = self.readers[r][i - self._offsets[r]]
        task = get_task(rec.task)  # the task owning the record's schema says what a shard stores
        extra = _json_safe(rec.extra)
        images = [_to_uint8(img, image_size) for img in task.record_images(rec)]
        return [RawRecord(rec.task, task.record_texts(rec), images, rec.key, i, extra)]


def source_tasks() -> tuple[str, ...]:
    """The record names a source can give: ``pair``, ``vqa``, ``edit``, then the registered
    tasks that read records of their own (``interleaved``; ``text`` reads ``pair``'s)."""
    own = [t for t in task_names() if get_task(t, aliases=False).schema == t and record_name(t) == t]
    return (*RECORD_TASKS, *(t for t in own if t not in RECORD_TASKS))


def record_tasks(tasks: Sequence[str]) -> list[str]:
    """``tasks`` as the record names a source gives, in order, once each: a record name stays,
    a task that reads another task's records (``text`` and ``t2i`` -> ``pair``, a plugin's
    ``caption`` -> ``pair``) names that schema's records.

    Raises:
        arm_data.tasks.UnknownTaskError: a name no installed package registers (saying what to install).
    """
    known = source_tasks()
    out: list[str] = []
    for t in tasks:
        name = t if t in known else record_name(get_task(t).schema)
        if name not in out:
            out.append(name)
    return out


def make_source(spec: str, tasks: Sequence[str], count: int | None, seed: int = 0,
                num_questions: int = 4, difficulty: Any = "full") -> PretokenizeSource:
    """``shapes:SPLIT`` or a dataset path -> a source."""
    known = source_tasks()
    tasks = record_tasks(tasks)
    bad = [t for t in tasks if t not in known]
    if bad or not tasks:
        raise ValueError(f"tasks must be a non-empty subset of {list(known)}, got {list(tasks)}")
    if spec.startswith("shapes:"):
        if count is None:
            raise ValueError("ShapesWorld is unbounded: give --count (number of scenes)")
        return ShapesSource(spec.split(":", 1)[1], seed, tasks, count, num_questions, difficulty)
    if not os.path.exists(spec) and not any(c in spec for c in "*?{"):
        raise FileNotFoundError(f"--source {spec!r}: no such dataset path (or use shapes:train|val|heldout)")
    return RecordsSource(spec, tasks)


# ---------------------------------------------------------------------- worker side
class _ItemDataset(Dataset):
    def __init__(self, source: PretokenizeSource, items: Sequence[int], image_size: tuple[int, int]) -> None:
        self.source, self.items, self.image_size = source, list(items), image_size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, j: int) -> tuple[int, list[RawRecord] | BadSampleError]:
        i = self.items[j]
        try:
            return i, self.source.load(i, self.image_size)
        except BadSampleError as e:  # counted by the main process's ErrorPolicy
            return i, e


def _collate(batch: list[Any]) -> list[Any]:
    return batch


# ---------------------------------------------------------------------- main loop
def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 over the tokenizer's weights and geometry: shards from different weights never mix."""
    h = hashlib.sha256()
    h.update(f"{type(tokenizer).__qualname__}|{tuple(tokenizer.grid)}|{int(tokenizer.codebook_size)}".encode())
    if hasattr(tokenizer, "fingerprint"):
        h.update(str(tokenizer.fingerprint()).encode())
    elif hasattr(tokenizer, "state_dict"):
        for k, v in sorted(tokenizer.state_dict().items()):
            v = v.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"{k}|{v.dtype}|{v.numel()}".encode())
            h.update(v.view(torch.uint8).numpy().tobytes())  # raw bytes: works for bf16 too
    return h.hexdigest()


def _image_size(tokenizer: Any) -> tuple[int, int]:
    size = getattr(tokenizer, "image_size", None)
    if size is None:
        raise TypeError(f"{type(tokenizer).__name__} has no image_size; pre-tokenization needs it")
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def default_workers() -> int:
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(8, n - 1))


def pretokenize(
    tokenizer: ImageTokenizer,
    source: PretokenizeSource,
    out_dir: str | os.PathLike,
    shard_size: int = 1000,
    count: int | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str = "cpu",
    policy: ErrorPolicy | None = None,
    progress: bool = True,
    after_shard: Callable[[int], None] | None = None,
    tokenizer_dir: str | None = None,
) -> Manifest:
    """Tokenize ``source`` into shards under ``out_dir``; resume a previous run there.

    Args:
        tokenizer: the visual tokenizer (see :class:`ImageTokenizer`).
        source: the items (see :func:`make_source`).
        out_dir: output directory (created).
        shard_size: items per shard.
        count: tokenize only the first ``count`` items (default: all).
        batch_size: images per ``tokenizer.encode`` call.
        num_workers: DataLoader workers that render/decode images (default: cores - 1, at most 8).
        device: where the tokenizer runs.
        policy: bad-sample policy (default ``ErrorPolicy()``: skip with warnings).
        progress: show a tqdm progress bar.
        after_shard: called with the shard index after each shard is finished (tests
            use it to simulate an interruption).
        tokenizer_dir: the tokenizer's checkpoint directory, recorded in the manifest so
            the LM's export can point at it.
    """
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard_size and batch_size must be >= 1, got {shard_size}, {batch_size}")
    grid = tuple(int(g) for g in tokenizer.grid)
    n_tok = int(tokenizer.tokens_per_image)
    if grid[0] * grid[1] != n_tok:
        raise ValueError(f"tokenizer grid {grid} does not match tokens_per_image={n_tok}")
    if int(getattr(tokenizer, "num_codebooks", 1)) != 1:
        raise ValueError("pre-tokenization needs one code per token position (num_codebooks == 1); "
                         "residual quantizers are not supported by the LM's vocabulary")
    image_size = _image_size(tokenizer)
    total = len(source) if count is None else min(int(count), len(source))
    if total < 1:
        raise ValueError(f"nothing to tokenize: the source has {len(source)} items, count={count}")
    num_shards = math.ceil(total / shard_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = {
        "source": source.describe(),
        "tasks": list(getattr(source, "tasks", RECORD_TASKS)),
        "count": total,
        "shard_size": shard_size,
        "batch_size": batch_size,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "codebook_size": int(tokenizer.codebook_size),
        "grid": list(grid),
        "image_size": list(image_size),
    }
    manifest = _open_manifest(out, settings, num_shards)
    remove_stale_temporaries(out)  # left by a run killed mid-write
    if tokenizer_dir is not None and manifest.info.get("tokenizer_dir") != os.path.abspath(tokenizer_dir):
        manifest.info["tokenizer_dir"] = os.path.abspath(tokenizer_dir)
        manifest.save(out)
    pending = [k for k in range(num_shards) if not manifest.is_finished(out, shard_name(k))]
    policy = policy if policy is not None else ErrorPolicy()
    if hasattr(tokenizer, "eval"):
        tokenizer.eval()
    if hasattr(tokenizer, "to"):
        tokenizer.to(device)

    # items of the pending shards, in order; the loader's chunks never straddle a shard
    # boundary, so every shard's records arrive together and workers render ahead
    items = [i for k in pending for i in range(k * shard_size, min((k + 1) * shard_size, total))]
    workers = default_workers() if num_workers is None else num_workers
    loader = DataLoader(_ItemDataset(source, items, image_size), num_workers=workers, collate_fn=_collate,
                        batch_sampler=_chunks(pending, shard_size, total, chunk=max(1, min(16, shard_size))))
    bar = tqdm(total=total, initial=total - len(items), unit="item", desc="pretokenize", disable=not progress)
    it = iter(loader)
    try:
        for k in pending:
            n_items = min((k + 1) * shard_size, total) - k * shard_size
            raws: list[RawRecord] = []
            got = 0
            while got < n_items:
                batch = next(it)
                for _, result in batch:
                    if isinstance(result, BadSampleError):
                        policy.skip(result)
                    else:
                        policy.ok()
                        raws.extend(result)
                got += len(batch)
                bar.update(len(batch))
            records = _encode(tokenizer, raws, batch_size, device, grid)
            name = shard_name(k)
            digest = write_shard(out / name, records)
            manifest.shards[name] = {"index": k, "items": n_items, "records": len(records), "sha256": digest}
            manifest.save(out)
            if after_shard is not None:
                after_shard(k)
    finally:
        bar.close()
        del it  # shuts the workers down
    return manifest


class _chunks:
    """Batch sampler over positions in the pending-items list, aligned to shard boundaries."""

    def __init__(self, pending: list[int], shard_size: int, total: int, chunk: int) -> None:
        self.batches: list[list[int]] = []
        pos = 0
        for k in pending:
            n = min((k + 1) * shard_size, total) - k * shard_size
            self.batches.extend(list(range(pos + j, pos + min(j + chunk, n))) for j in range(0, n, chunk))
            pos += n

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _encode(tokenizer: Any, raws: list[RawRecord], batch_size: int, device: str,
            grid: tuple[int, int]) -> list[TokenRecord]:
    """Encode the images of ``raws`` in fixed batches (deterministic composition).

    An image object shared by several records (a ShapesWorld scene's caption and its QA
    pairs) is encoded once and stored once.
    """
    unique: dict[int, int] = {}
    flat: list[torch.Tensor] = []
    for r in raws:
        for img in r.images:
            if id(img) not in unique:
                unique[id(img)] = len(flat)
                flat.append(img)
    codes: list[ImageTokens] = []
    for j in range(0, len(flat), batch_size):
        x = torch.stack(flat[j:j + batch_size]).to(device=device, dtype=torch.float32).div(127.5).sub(1.0)
        with torch.inference_mode():
            ids = tokenizer.encode(x)
        if ids.dim() != 2 or ids.shape[1] != grid[0] * grid[1]:
            raise ValueError(f"tokenizer.encode returned shape {tuple(ids.shape)}, expected "
                             f"({x.shape[0]}, {grid[0] * grid[1]})")
        codes.extend(ImageTokens(row, grid[0], grid[1]) for row in ids.to("cpu", torch.long).tolist())
    return [TokenRecord(task=r.task, texts=r.texts, images=[codes[unique[id(img)]] for img in r.images],
                        key=r.key, index=r.index, extra=r.extra) for r in raws]


# The temp files atomic_write_bytes makes for a shard or the manifest: ".<name>.<random>.tmp".
_STALE_TMP = re.compile(r"^\.(shard-\d+\.safetensors|" + re.escape(MANIFEST_NAME) + r")\..+\.tmp$")


def remove_stale_temporaries(out: str | os.PathLike) -> list[Path]:
    """Delete the temp files of shard and manifest writes in ``out`` that a killed run left.

    Only this module's own temporaries (``.shard-NNNNN.safetensors.*.tmp`` and
    ``.manifest.json.*.tmp``) are touched; other files are left alone. Called when a run
    starts (fresh or resumed), so it assumes no other run is writing into ``out`` at the
    same time (two runs into one directory are not supported anyway). Returns the removed
    paths.
    """
    removed = []
    for entry in os.scandir(out):
        if _STALE_TMP.match(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append(Path(entry.path))
    return removed


def _open_manifest(out: Path, settings: dict[str, Any], num_shards: int) -> Manifest:
    try:
        manifest = Manifest.load(out)
    except ShardError:
        if (out / "manifest.json").exists():
            raise
        manifest = Manifest(settings=settings, num_shards=num_shards)
        manifest.save(out)
        return manifest
    if manifest.settings != settings:
        diff = sorted(k for k in set(settings) | set(manifest.settings)
                      if settings.get(k) != manifest.settings.get(k))
        raise ShardError(f"{out} holds shards made with other settings (differing: {diff}); "
                         f"use another --out directory or delete that one")
    return manifest


# ---------------------------------------------------------------------- CLI
def load_visual_tokenizer(path: str, device: str = "cpu") -> Any:
    """``VisualTokenizer.from_pretrained(path)`` with a clear error for a wrong path."""
    p = Path(path)
    if not (p / "config.json").is_file():
        raise FileNotFoundError(f"--tokenizer {path!r}: not a tokenizer checkpoint directory "
                                f"(expected config.json + model.safetensors from save_pretrained)")
    return VisualTokenizer.from_pretrained(p, map_location=device)


_HELP_EPILOG = """\
sources:
  --source SPEC, repeatable; SPEC is PATH[:TASKS][@WEIGHT]:
    shapes:SPLIT[:TASKS][@WEIGHT]   ShapesWorld scenes (SPLIT: train, val, heldout)
    PATH[:TASKS][@WEIGHT]           a folder with sidecars, a JSONL manifest or WebDataset
                                    shards (arm_data.datasets)
  TASKS is a comma list of pair, vqa, edit (default: --tasks); WEIGHT defaults to 1.
  --sources FILE lists the same in YAML or JSON, paths relative to the file:
    - {path: photos, tasks: [pair], weight: 0.7}
    - {path: vqa.jsonl, tasks: [vqa], weight: 0.2}
    - {path: "shapes:train", tasks: [edit], weight: 0.1}

weights:
  With one source, --count N takes its first N items (all by default). With several, a
  weight is the source's share of the run's items (normalised over the sources). An item
  is one record of a dataset path, or one ShapesWorld scene (its pair record, its QA
  records and its edit record, as TASKS say). With --count N, source i contributes
  N * w_i / sum(w) items (largest remainder, so the shares add up to N), cycling
  through its items in order when it has fewer; without --count, N is the largest total
  at which no dataset source repeats an item. Sources are laid out one after another;
  the manifest records each one's path, tasks, weight and items, and a re-run with
  other sources or weights into the same --out is refused.

images:
  Every image is brought to the visual tokenizer's image_size, read from its
  config.json (--tokenizer DIR): scaled to cover it (aspect ratio kept), then the
  centre cut out (arm_tokenizer.images.ImageTransform, crop="center"); an image
  already at that size is used as it is. Where a reader offers a resize policy of its
  own, the image it returns is what gets fitted.

examples:
  arm-data pretokenize --tokenizer runs/tokenizer --source shapes:train --count 20000 \\
      --out data/shapes-tokens
  arm-data pretokenize --tokenizer runs/tokenizer --out data/mix \\
      --source data/photos:pair@0.7 --source data/vqa.jsonl:vqa@0.2 \\
      --source shapes:train:edit@0.1 --count 100000
  arm-data pretokenize --tokenizer runs/tokenizer --sources data/mix.yaml --out data/mix
"""


def cli_main(argv: list[str]) -> int:
    """Run a visual tokenizer over one or several datasets and write resumable token shards."""
    p = argparse.ArgumentParser(prog="arm-data pretokenize", description=cli_main.__doc__,
                                epilog=_HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokenizer", required=True,
                   help="visual tokenizer checkpoint dir (save_pretrained); its image_size sets the image size")
    p.add_argument("--source", action="append", metavar="SPEC",
                   help="PATH[:TASKS][@WEIGHT] or shapes:SPLIT[:TASKS][@WEIGHT]; repeat for several (see below)")
    p.add_argument("--sources", metavar="FILE", help="YAML/JSON list of {path, tasks, weight} (see below)")
    p.add_argument("--out", required=True, help="output directory (re-run the same command to resume)")
    p.add_argument("--tasks", default="pair,vqa,edit", help="comma list of pair,vqa,edit for sources that name none")
    p.add_argument("--count", type=int, default=None,
                   help="items to tokenize: of the one source (required for shapes:), or of the whole mix")
    p.add_argument("--shard-size", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: cores-1, max 8)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the tokenizer")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="ShapesWorld seed")
    p.add_argument("--questions", type=int, default=4, help="ShapesWorld QA pairs per scene")
    p.add_argument("--difficulty", default="full",
                   help="ShapesWorld content for shapes: sources: full (default) or demo (arm_data.shapes.difficulty)")
    p.add_argument("--on-error", choices=["skip", "raise"], default="skip")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if bool(args.source) == bool(args.sources):
        p.error("give the sources either as --source SPEC (repeatable) or as --sources FILE (one of them)")
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    specs = read_sources_file(args.sources) if args.sources else [parse_source(s) for s in args.source]
    count = args.count
    if len(specs) == 1 and not args.sources:
        # one source: as it always was (--count = its first items; the manifest unchanged)
        spec = specs[0]
        source = make_source(spec.path, list(spec.tasks or tasks), count, seed=args.seed,
                             num_questions=args.questions, difficulty=args.difficulty)
    else:
        source = make_sources(specs, tasks, count, seed=args.seed, num_questions=args.questions,
                              difficulty=args.difficulty)
        count = None  # the mix holds exactly the run's items
    tok = load_visual_tokenizer(args.tokenizer, args.device)
    policy = ErrorPolicy(on_error=args.on_error)
    m = pretokenize(tok, source, args.out, shard_size=args.shard_size, count=count,
                    batch_size=args.batch_size, num_workers=args.workers, device=args.device,
                    policy=policy, progress=not args.no_progress, tokenizer_dir=args.tokenizer)
    n_rec = sum(s["records"] for s in m.shards.values())
    for k, d in enumerate(m.settings["source"].get("sources", [])):
        avail = "unbounded" if d["available"] is None else f"of {d['available']}"
        name = d.get("path") or f"shapes:{d.get('split')}"
        print(f"  source {k}: {name} [{','.join(d['tasks'])}] weight {d['weight']:g}: "
              f"{d['items']} items ({avail})")
    print(f"{args.out}: {len(m.shards)}/{m.num_shards} shards, {n_rec} records "
          f"(grid {m.grid[0]}x{m.grid[1]}, codebook {m.codebook_size}); {policy.summary()}")
    return 0
