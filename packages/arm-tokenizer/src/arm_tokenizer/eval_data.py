"""What ``arm-tokenizer evaluate`` reads: images (+ captions, + labels) from any image data.

* a **folder** of images (recursive), read by arm-tokenizer itself
  (:func:`arm_tokenizer.data.find_images`, :func:`arm_tokenizer.images.load_image`); a
  caption is the ``<stem>.txt`` sidecar; an image's label (for a class-list label file) is
  the name of its first sub-folder (the ImageNet layout ``val/<class>/<image>``);
* a **JSONL** manifest or **WebDataset** shards, read by arm-data's readers
  (``pair`` records: image + ``text``; a ``label`` field is the image's label). arm-tokenizer
  works without arm-data; only these two formats need it, and say so.

Label files (``--labels``), checked against the data before any image is encoded:

* ``*.json``: a mapping ``{image: label}``; an image is named by its path relative to the
  folder (or manifest), that path without its suffix, its stem, or its record key. Every
  key must name an image of the data and every image must have a key.
* anything else: one class name per line (blank lines and ``#`` comments skipped); each
  image's label comes from the data (sub-folder or ``label`` field) and must be one of them.
  Classes without images are kept: they are candidates, as in ImageNet zero-shot.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from arm_tokenizer.data import IMAGE_EXTENSIONS, find_images
from arm_tokenizer.images import load_image

__all__ = ["EvalError", "EvalSample", "EvalData", "LabelSpec", "detect_format", "open_eval_data",
           "read_labels", "check_labels", "label_of", "unmatched_keys", "used_key"]


class EvalError(Exception):
    """Bad evaluation input (printed as one line, exit status 2)."""


@dataclass
class EvalSample:
    """One image to evaluate.

    name: how messages name it (relative path, or ``manifest.jsonl:12``, ``shard.tar:key``).
    load: decodes it to RGB (raises ``ImageLoadError`` / arm-data's ``BadSampleError``).
    caption: its text, when the data has one.
    label: its label as the data states it (sub-folder / ``label`` field), if any.
    aliases: the names a JSON label file may use for it.
    """

    name: str
    load: Callable[[], Image.Image]
    caption: str | None = None
    label: str | None = None
    aliases: tuple[str, ...] = field(default_factory=tuple)


def detect_format(path: str) -> str:
    """``folder``, ``jsonl`` or ``wds`` (arm-data's rules, without needing arm-data)."""
    p = Path(path)
    if p.is_file():
        if p.suffix == ".jsonl":
            return "jsonl"
        if p.suffix == ".tar":
            return "wds"
        raise EvalError(f"--data {path}: a file must be a .jsonl manifest or a .tar shard; "
                        "give a folder of images otherwise")
    if p.is_dir():
        if (p / "manifest.jsonl").is_file():
            return "jsonl"
        if any(p.glob("*.tar")):
            return "wds"
        return "folder"
    if any(c in path for c in "*?[{"):
        return "wds"
    raise EvalError(f"--data {path}: no such file or directory")


class EvalData:
    """The samples of ``--data``: ``len`` (None for streamed shards) and iteration."""

    def __init__(self, fmt: str, samples: list[EvalSample] | None = None,
                 stream: Callable[[], Iterator[EvalSample]] | None = None, skipped: Callable[[], int] | None = None):
        self.format = fmt
        self.samples = samples  # map-style formats list every sample up front (names only)
        self._stream = stream
        self._skipped = skipped or (lambda: 0)

    def __len__(self) -> int:
        return len(self.samples) if self.samples is not None else 0

    @property
    def sized(self) -> bool:
        return self.samples is not None

    def __iter__(self) -> Iterator[EvalSample]:
        if self.samples is not None:
            return iter(self.samples)
        assert self._stream is not None
        return self._stream()

    def reader_skipped(self) -> int:
        """Records arm-data's readers passed over (``--on-error skip``)."""
        return self._skipped()


def _aliases(rel: str) -> tuple[str, ...]:
    p = Path(rel)
    no_suffix = p.with_suffix("").as_posix()
    return tuple(dict.fromkeys([p.as_posix(), no_suffix, p.stem]))


def _folder(path: Path) -> EvalData:
    files = find_images(path)
    if not files:
        raise EvalError(f"--data {path}: no images found ({', '.join(IMAGE_EXTENSIONS)}, searched recursively)")
    samples = []
    for f in files:
        rel = f.relative_to(path)
        side = f.with_suffix(".txt")
        caption = side.read_text(encoding="utf-8").strip() if side.is_file() else None
        label = rel.parts[0] if len(rel.parts) > 1 else None
        samples.append(EvalSample(rel.as_posix(), (lambda f=f: load_image(f)), caption, label, _aliases(rel.as_posix())))
    return EvalData("folder", samples)


def _need_arm_data(path: str, fmt: str) -> None:
    if importlib.util.find_spec("arm_data") is None:
        what = "a JSONL manifest" if fmt == "jsonl" else "WebDataset shards"
        raise EvalError(f"--data {path} is {what}; reading it needs arm-data: pip install arm-data "
                        "(or give a folder of images with .txt caption sidecars)")


def _record_sample(rec: Any, name: str, root: Path | None) -> EvalSample:
    image = rec.image
    aliases: list[str] = [rec.key]
    src = getattr(image, "source", None)
    if root is not None and isinstance(src, str):
        try:
            aliases.extend(_aliases(Path(src).relative_to(root).as_posix()))
        except ValueError:  # an absolute path outside the manifest's folder
            aliases.extend(_aliases(Path(src).name))
    label = rec.extra.get("label")
    caption = rec.text.strip() if isinstance(rec.text, str) and rec.text.strip() else None
    return EvalSample(name, rec.load_image, caption, None if label is None else str(label),
                      tuple(dict.fromkeys(aliases)))


def _jsonl(path: str, on_error: str) -> EvalData:
    # deferred: arm-data depends on arm-tokenizer; only JSONL/WebDataset inputs need it
    from arm_data.datasets.jsonl import JsonlRecords
    from arm_data.errors import ErrorPolicy

    policy = ErrorPolicy(on_error=on_error, max_skip_fraction=1.0)
    try:
        records = JsonlRecords(path, task="pair", policy=policy)
    except Exception as e:  # arm-data's own errors name the line and the field
        raise EvalError(f"--data {path}: {e}") from None
    if not len(records):
        raise EvalError(f"--data {path}: no image-text (pair) records in {records.path}")
    samples = [_record_sample(records[i], f"{records.path.name}:{int(records.lines[i])}", records.root)
               for i in range(len(records))]
    return EvalData("jsonl", samples, skipped=lambda: policy.num_skipped)


def _wds(path: str, on_error: str) -> EvalData:
    # deferred: arm-data depends on arm-tokenizer; only JSONL/WebDataset inputs need it
    from arm_data.datasets.wds import WdsRecords
    from arm_data.errors import ErrorPolicy

    policy = ErrorPolicy(on_error=on_error, max_skip_fraction=1.0)
    try:
        records = WdsRecords(path, task="pair", policy=policy, split="shard")
    except Exception as e:
        raise EvalError(f"--data {path}: {e}") from None

    def stream() -> Iterator[EvalSample]:
        for rec in records.iter_partition(0, 1, 0, 1):
            yield _record_sample(rec, f"{rec.image.name.rsplit('.', 1)[0]}", None)

    return EvalData("wds", stream=stream, skipped=lambda: policy.num_skipped)


def open_eval_data(path: str, fmt: str = "auto", on_error: str = "raise") -> EvalData:
    """Open ``--data`` in format ``fmt`` (``auto`` detects it, see :func:`detect_format`)."""
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "folder":
        if not Path(path).is_dir():
            raise EvalError(f"--data {path}: not a directory")
        return _folder(Path(path))
    if fmt in ("jsonl", "wds"):
        _need_arm_data(path, fmt)
        return _jsonl(path, on_error) if fmt == "jsonl" else _wds(path, on_error)
    raise EvalError(f"--format {fmt!r}: choose from auto, folder, jsonl, wds")


# ---------------------------------------------------------------------- labels
@dataclass
class LabelSpec:
    """A parsed ``--labels`` file.

    classes: the candidate class names (the line list, or the mapping's distinct labels).
    mapping: ``{image name: label}`` for a JSON file; None when labels come from the data.
    path: the file.
    """

    classes: list[str]
    mapping: dict[str, str] | None
    path: str


def read_labels(path: str) -> LabelSpec:
    """Parse a label file (see the module docstring); errors name the file and line/key."""
    p = Path(path)
    if not p.is_file():
        raise EvalError(f"--labels {path}: no such file")
    if p.suffix.lower() == ".json":
        try:
            obj = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EvalError(f"--labels {path}: invalid JSON ({e})") from None
        if not isinstance(obj, dict) or not obj:
            raise EvalError(f"--labels {path}: expected a non-empty JSON object {{image: label}}")
        bad = [k for k, v in obj.items() if not isinstance(v, str) or not v.strip()]
        if bad:
            raise EvalError(f"--labels {path}: the label of {bad[0]!r} must be a non-empty string")
        mapping = {str(k): v.strip() for k, v in obj.items()}
        return LabelSpec(sorted(set(mapping.values())), mapping, path)
    classes: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if name in seen:
            raise EvalError(f"--labels {path}:{lineno}: class {name!r} repeats line {seen[name]}")
        seen[name] = lineno
        classes.append(name)
    if not classes:
        raise EvalError(f"--labels {path}: no class names (one per line)")
    return LabelSpec(classes, None, path)


def _names(items: list[str], total: int) -> str:
    more = f" ... ({total} in all)" if total > len(items) else ""
    return ", ".join(repr(x) for x in items) + more


def _index(samples: list[EvalSample]) -> dict[str, list[int]]:
    index: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        for a in s.aliases:
            index.setdefault(a, []).append(i)
    return index


def label_of(sample: EvalSample, spec: LabelSpec) -> str:
    """The label of one sample, or :class:`EvalError` naming the image and the file."""
    if spec.mapping is not None:
        for a in sample.aliases:
            if a in spec.mapping:
                return spec.mapping[a]
        raise EvalError(f"--labels {spec.path} does not match the data: image {sample.name!r} has no label "
                        f"(keys may be its path, its path without suffix, its stem or its key)")
    if sample.label is None:
        raise EvalError(f"--labels {spec.path} does not match the data: image {sample.name!r} has no label "
                        "(with a class list, an image's label is its sub-folder, or a 'label' field of its record)")
    if sample.label not in spec.classes:
        raise EvalError(f"--labels {spec.path} does not match the data: image {sample.name!r} has label "
                        f"{sample.label!r}, which is not one of its {len(spec.classes)} classes")
    return sample.label


def check_labels(samples: list[EvalSample], spec: LabelSpec) -> None:
    """Check a label file against every sample of map-style data, before any encoding."""
    if spec.mapping is not None:
        index = _index(samples)
        absent = [k for k in spec.mapping if k not in index]
        if absent:
            raise EvalError(f"--labels {spec.path} does not match the data: labels for images not present: "
                            f"{_names(absent[:5], len(absent))}")
        ambiguous = [k for k in spec.mapping if len(index[k]) > 1]
        if ambiguous:
            k = ambiguous[0]
            raise EvalError(f"--labels {spec.path}: key {k!r} names {len(index[k])} images "
                            f"({_names([samples[i].name for i in index[k][:3]], len(index[k]))}); use their paths")
    unlabeled = []
    for s in samples:
        try:
            label_of(s, spec)
        except EvalError:
            unlabeled.append(s)
    if unlabeled:
        if len(unlabeled) == 1:
            label_of(unlabeled[0], spec)  # its own message is the most precise
        names = _names([s.name for s in unlabeled[:5]], len(unlabeled))
        hint = ("" if spec.mapping is not None else " (with a class list, an image's label is its sub-folder, "
                "or a 'label' field of its record)")
        raise EvalError(f"--labels {spec.path} does not match the data: {len(unlabeled)} images have no label "
                        f"among its classes: {names}{hint}")


def unmatched_keys(spec: LabelSpec, used: set[str]) -> list[str]:
    """Keys of a JSON label file no evaluated image used (streamed data is checked at the end)."""
    return [] if spec.mapping is None else [k for k in spec.mapping if k not in used]


def used_key(sample: EvalSample, spec: LabelSpec) -> str | None:
    if spec.mapping is None:
        return None
    return next((a for a in sample.aliases if a in spec.mapping), None)

