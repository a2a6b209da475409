"""Pre-tokenized shards: the on-disk format the LM trains from, and its manifest.

``arm-data pretokenize`` (:mod:`arm_data.pretokenize`) runs a visual tokenizer once over a
dataset and writes what the language model needs: image token ids plus the raw texts.
Text is kept as text (tokenized when the token data module loads), so one set of shards
serves any text tokenizer. Layout of an output directory::

    OUT/
      manifest.json                 what was tokenized with what; one entry per finished shard
      shard-00000.safetensors       records [0, S) of the source
      shard-00001.safetensors       records [S, 2S) ...

One shard is one safetensors file (deterministic bytes: fixed tensor names and dtypes,
the JSON metadata serialized with sorted keys) holding

* ``codes``  ``int32 (total_codes,)``  all images' codebook indices, concatenated, row-major;
* ``image_offsets`` ``int64 (n_images + 1,)`` image ``j`` is ``codes[off[j]:off[j+1]]``;
* ``image_grid`` ``int32 (n_images, 2)`` each image's token grid ``(h, w)``; an image
  shared by several records (a scene's caption, its QA pairs and its edit source) is
  stored once and referenced by each;
* metadata ``records``: a JSON list, one object per record::

      {"task": "pair", "key": "...", "index": 17, "text": "...", "images": [0], "extra": {...}}
      {"task": "vqa",  ..., "question": "...", "answer": "...", "images": [1]}
          (or "conversation": [{"role": "user"|"assistant", "text": ...}, ...])
      {"task": "edit", ..., "instruction": "...", "images": [2, 3]}   (source, target)

  ``task`` is the record name of the schema (``pair``, ``vqa``, ``edit``) or a registered
  task reading its own records; that task (:class:`arm_data.tasks.Task`) says which texts
  the record stores and how many images it holds (``num_images``).

The manifest lists a shard only after its file has been renamed into place, with its
SHA-256: a shard is finished iff its file exists, is listed, and matches the checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from arm_tokenizer.framework.checkpoint import atomic_write_bytes
from safetensors import safe_open
from safetensors.numpy import load_file, save

from arm_data.formats import ImageTokens
from arm_data.tasks import Task, UnknownTaskError, get_task

SHARD_FORMAT = "arm-token-shard/1"
MANIFEST_FORMAT = "arm-token-shards/1"
MANIFEST_NAME = "manifest.json"
#: The built-in record schemas (any registered task's records are accepted too).
RECORD_TASKS = ("pair", "vqa", "edit")


class ShardError(ValueError):
    """A corrupt, mismatched or missing shard or manifest."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


@dataclass
class TokenRecord:
    """One pre-tokenized sample: its task, texts and image tokens.

    Attributes:
        task: ``"pair"``, ``"vqa"`` or ``"edit"`` (the data task; the LM task formats
            map pair -> t2i, vqa -> und, edit -> edit), or a registered task's name.
        texts: ``{"text"}`` (pair), ``{"question", "answer"}`` or ``{"conversation"}``
            (vqa), ``{"instruction"}`` (edit).
        images: one :class:`ImageTokens` (pair, vqa) or two, source then target (edit).
        key: the sample's name in its source.
        index: the sample's position in the source.
        extra: JSON-serializable extra fields (ShapesWorld keeps the scene spec here).
    """

    task: str
    texts: dict[str, Any]
    images: list[ImageTokens]
    key: str = ""
    index: int = -1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        want = _schema_task(self.task).num_images(self.texts)
        if len(self.images) != want:
            raise ShardError(f"a {self.task} record holds {want} image(s), got {len(self.images)}")

    @property
    def image(self) -> ImageTokens:
        return self.images[0]

    @property
    def source(self) -> ImageTokens:
        return self.images[0]

    @property
    def target(self) -> ImageTokens:
        return self.images[-1]


def _schema_task(name: str) -> Task:
    """The task owning record name ``name``'s schema (cached: every record asks)."""
    task = _SCHEMA_TASKS.get(name)
    if task is None:
        try:
            task = _SCHEMA_TASKS[name] = get_task(get_task(name).schema)
        except UnknownTaskError as e:
            raise ShardError(f"record task {name!r} is not known: {e}") from None
    return task


_SCHEMA_TASKS: dict[str, Task] = {}


# ---------------------------------------------------------------------- files
def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_shard(path: str | os.PathLike, records: Sequence[TokenRecord]) -> str:
    """Write ``records`` as one shard file, atomically. Returns the file's SHA-256."""
    path = Path(path)
    codes: list[np.ndarray] = []
    offsets = [0]
    grids: list[tuple[int, int]] = []
    meta: list[dict[str, Any]] = []
    stored: dict[int, int] = {}  # an ImageTokens object shared by records is stored once
    for r in records:
        refs = []
        for img in r.images:
            if id(img) not in stored:
                stored[id(img)] = len(grids)
                codes.append(np.asarray(img.codes, dtype=np.int32))
                offsets.append(offsets[-1] + len(img.codes))
                grids.append((img.h, img.w))
            refs.append(stored[id(img)])
        entry = {"task": r.task, "key": r.key, "index": r.index, "images": refs, "extra": r.extra}
        entry.update(r.texts)
        meta.append(entry)
    tensors = {
        "codes": np.concatenate(codes) if codes else np.zeros((0,), np.int32),
        "image_offsets": np.asarray(offsets, dtype=np.int64),
        "image_grid": np.asarray(grids, dtype=np.int32).reshape(-1, 2),
    }
    # ONE metadata key: safetensors serializes its metadata map in hash order, so several
    # keys would make the file bytes differ from run to run
    payload = {"format": SHARD_FORMAT, "records": meta}
    metadata = {"arm": json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))}
    data = save(tensors, metadata=metadata)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def read_shard(path: str | os.PathLike) -> list[TokenRecord]:
    """Read every record of one shard file."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"shard file not found: {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
        arrays = load_file(str(path))
    except Exception as e:  # safetensors raises several types for a damaged header
        raise ShardError(f"{path}: not a readable safetensors shard ({e})") from e
    try:
        payload = json.loads(metadata["arm"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ShardError(f"{path}: no ARM record metadata ({e!r}); not written by `arm-data pretokenize`") from e
    if payload.get("format") != SHARD_FORMAT:
        raise ShardError(f"{path}: format {payload.get('format')!r}, expected {SHARD_FORMAT!r}")
    missing = [k for k in ("codes", "image_offsets", "image_grid") if k not in arrays]
    if missing:
        raise ShardError(f"{path}: missing tensors {missing}")
    codes, offsets, grid = arrays["codes"], arrays["image_offsets"], arrays["image_grid"]
    images = [ImageTokens(codes[offsets[j]:offsets[j + 1]].astype(np.int64).tolist(), int(grid[j, 0]), int(grid[j, 1]))
              for j in range(len(grid))]
    out = []
    for entry in payload["records"]:
        entry = dict(entry)
        refs = entry.pop("images")
        out.append(TokenRecord(task=entry.pop("task"), key=entry.pop("key"), index=entry.pop("index"),
                               extra=entry.pop("extra"), images=[images[j] for j in refs], texts=entry))
    return out


# ---------------------------------------------------------------------- manifest
@dataclass
class Manifest:
    """``manifest.json``: the run's settings and the finished shards.

    Attributes:
        settings: what determines the shard bytes (source, tasks, count, shard size,
            tokenizer fingerprint, grid, codebook size); a re-run must match them.
        shards: ``{name: {"index", "records", "sha256"}}`` of finished shards.
        num_shards: how many shards the complete run has.
        info: informative fields that do not affect the bytes (e.g. ``tokenizer_dir``, the
            visual tokenizer checkpoint's path); not compared on resume.
    """

    settings: dict[str, Any]
    num_shards: int
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return len(self.shards) == self.num_shards

    @property
    def codebook_size(self) -> int:
        return int(self.settings["codebook_size"])

    @property
    def grid(self) -> tuple[int, int]:
        h, w = self.settings["grid"]
        return int(h), int(w)

    def to_dict(self) -> dict[str, Any]:
        return {"format": MANIFEST_FORMAT, "settings": self.settings, "num_shards": self.num_shards,
                "complete": self.complete, "shards": {k: self.shards[k] for k in sorted(self.shards)},
                "info": self.info}

    def save(self, directory: str | os.PathLike) -> None:
        data = json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(Path(directory) / MANIFEST_NAME, data.encode("utf-8"))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Manifest:
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise ShardError(f"no {MANIFEST_NAME} in {directory}: not a pre-tokenized shard directory "
                             f"(create one with `arm-data pretokenize`)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ShardError(f"{path}: not valid JSON ({e})") from e
        if data.get("format") != MANIFEST_FORMAT:
            raise ShardError(f"{path}: format {data.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        return cls(settings=data["settings"], num_shards=int(data["num_shards"]), shards=dict(data["shards"]),
                   info=dict(data.get("info", {})))

    def is_finished(self, directory: str | os.PathLike, name: str, verify: bool = True) -> bool:
        """A shard is finished iff listed here, present on disk and (``verify``) its checksum matches."""
        entry = self.shards.get(name)
        path = Path(directory) / name
        if entry is None or not path.is_file():
            return False
        return not verify or sha256_file(path) == entry["sha256"]


def open_shards(directory: str | os.PathLike, require_complete: bool = True) -> tuple[Manifest, list[Path]]:
    """The manifest and the finished shard paths of a directory, in shard order."""
    directory = Path(directory)
    manifest = Manifest.load(directory)
    if require_complete and not manifest.complete:
        raise ShardError(f"{directory}: only {len(manifest.shards)} of {manifest.num_shards} shards are "
                         f"finished; re-run the same `arm-data pretokenize` command to resume")
    names = sorted(manifest.shards, key=lambda n: manifest.shards[n]["index"])
    paths = [directory / n for n in names]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise ShardError(f"manifest lists shards that are missing: {absent[:3]}")
    return manifest, paths


def iter_records(directory: str | os.PathLike) -> Iterator[TokenRecord]:
    """Every record of a finished shard directory, in source order."""
    _, paths = open_shards(directory)
    for p in paths:
        yield from read_shard(p)


def records_to_tensor(images: Sequence[ImageTokens]) -> torch.Tensor:
    """Stack same-grid images' codes into ``LongTensor (B, h*w)`` (for decoding)."""
    grids = {(i.h, i.w) for i in images}
    if len(grids) != 1:
        raise ShardError(f"images have different grids {sorted(grids)}; decode them separately")
    return torch.tensor([i.codes for i in images], dtype=torch.long)
