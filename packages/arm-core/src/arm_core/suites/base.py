"""What every benchmark suite shares: its prompt records, their validation errors, and the
contract a suite format implements (read its own files, say where each output goes, write it).

A suite (one module per benchmark: :mod:`.geneval`, :mod:`.dpg`, :mod:`.wise`, :mod:`.gedit`,
:mod:`.imgedit`, :mod:`.shapes`) turns the benchmark's own prompt files into
:class:`PromptItem` s and writes each item's samples in exactly the layout the benchmark's
official scorer reads. :mod:`.generate` batches the items through the pipelines; scorers
(:mod:`.scorers`) read the layout back through :meth:`Suite.read_outputs`.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from arm_core.suites.scorers.base import SuiteItem

__all__ = ["PromptItem", "Skipped", "Suite", "SuiteError", "SuiteFormatError", "save_png"]


class SuiteError(ValueError):
    """Bad suite input or output directory; the message names the file and what to change."""


class SuiteFormatError(SuiteError):
    """A prompt file does not have its suite's format (names the file, line / entry and field)."""

    def __init__(self, path: str | os.PathLike, where: str, message: str) -> None:
        self.path, self.where = Path(path), where
        super().__init__(f"{path}{':' + where if where else ''}: {message}")


@dataclass
class PromptItem:
    """One prompt of a suite, as read from its files.

    Args:
        item_id: the id its output files are named by.
        prompt: the text prompt or edit instruction.
        tag: the category tables group by.
        record: the benchmark's own record (written back where its layout wants it).
        source: for edits, the input image's file path or encoded bytes.
        where: file and line / entry it came from (for messages).
    """

    item_id: str
    prompt: str
    tag: str = "all"
    record: dict[str, Any] = field(default_factory=dict)
    source: Any = None
    where: str = ""

    def load_source(self) -> Image.Image:
        """The edit's input image (RGB); raises :class:`SuiteError` naming the entry."""
        try:
            if isinstance(self.source, (bytes, bytearray)):
                im = Image.open(io.BytesIO(self.source))
            else:
                im = Image.open(Path(self.source))
            im.load()
            return im.convert("RGB")
        except (OSError, ValueError, TypeError) as exc:
            raise SuiteError(f"{self.where}: input image {self._source_name()} cannot be read "
                             f"({type(exc).__name__}: {exc})") from exc

    def _source_name(self) -> str:
        return "(embedded bytes)" if isinstance(self.source, (bytes, bytearray)) else str(self.source)


@dataclass
class Skipped:
    """An item left out before generation (e.g. an edit whose input image is unreadable)."""

    item_id: str
    where: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"item_id": self.item_id, "where": self.where, "reason": self.reason}


def save_png(image: Image.Image, path: Path) -> None:
    """Write ``image`` as PNG atomically (temp file + rename: a crash never leaves half a file
    that a resumed run would take for finished)."""
    # deferred: checkpoint imports torch; reading and checking prompt files stays torch-free
    from arm_tokenizer.framework.checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def read_json(path: Path, hint: str) -> Any:
    """The JSON document at ``path``; unreadable or invalid JSON is a :class:`SuiteError`
    naming the file and, in ``hint``, what the suite's file should hold."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SuiteError(f"{path}: not a readable JSON file ({exc}); {hint}") from exc


def read_jsonl(path: Path, suite: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a bad line is a :class:`SuiteFormatError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read the {suite} prompt file: {exc}") from exc
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SuiteFormatError(path, f"line {n}", f"not valid JSON ({exc.msg}); {suite} "
                                   "prompt files hold one JSON object a line") from None
        if not isinstance(obj, dict):
            raise SuiteFormatError(path, f"line {n}", f"expected a JSON object, got {type(obj).__name__}")
        yield n, obj


def require_str(obj: dict[str, Any], key: str, path: Path, where: str, suite: str,
                hint: str = "") -> str:
    """``obj[key]`` as a non-empty string, else a :class:`SuiteFormatError` naming the field."""
    if key not in obj:
        present = ", ".join(sorted(obj)) or "none"
        raise SuiteFormatError(path, where, f"missing field {key!r} (fields present: {present}); "
                               f"is this a {suite} file?{' ' + hint if hint else ''}")
    val = obj[key]
    if isinstance(val, (int, float)) and not isinstance(val, bool) and key not in ("prompt", "instruction"):
        val = str(val)
    if not isinstance(val, str) or not val.strip():
        raise SuiteFormatError(path, where, f"field {key!r} must be a non-empty string, got {val!r}")
    return val


def safe_name(value: str, path: Path, where: str, field_name: str) -> str:
    """A value that names an output file: no path separators, no '..'."""
    if not value or "/" in value or "\\" in value or value in (".", "..") or "\0" in value:
        raise SuiteFormatError(path, where, f"{field_name} {value!r} cannot name an output file "
                               "(no '/', '\\' or '..')")
    return value


class Suite:
    """A benchmark's file format and output layout (subclasses implement the hooks).

    Class attributes: ``name`` (the ``--suite`` value), ``task`` (``t2i`` or ``edit``),
    ``samples`` (samples generated per prompt by default), ``fixed_samples`` (True where
    the layout fixes the number, e.g. DPG's 2x2 grid).
    """

    name: str = ""
    task: str = "t2i"
    samples: int = 1
    fixed_samples: bool = False

    def __init__(self, samples: int | None = None, method: str = "arm") -> None:
        if samples is not None and self.fixed_samples and samples != self.samples:
            raise SuiteError(f"the {self.name} layout holds exactly {self.samples} samples a prompt, "
                             f"not {samples}")
        if samples is not None and samples < 1:
            raise SuiteError(f"samples per prompt must be >= 1, got {samples}")
        self.n_samples = self.samples if samples is None else samples
        self.method = method

    # -- reading -------------------------------------------------------------------------
    def read(self, path: str | os.PathLike) -> list[PromptItem]:
        """Every prompt of the benchmark's file(s) at ``path``, validated (override)."""
        raise NotImplementedError

    # -- layout --------------------------------------------------------------------------
    def outputs(self, item: PromptItem, out: Path) -> list[Path]:
        """The files this item's samples go to (finished when all exist) (override)."""
        raise NotImplementedError

    def write(self, item: PromptItem, images: list[Image.Image], out: Path) -> list[Path]:
        """Write the item's ``n_samples`` images in the layout; returns the files written.
        Default: one file per sample, as :meth:`outputs` names them."""
        paths = self.outputs(item, out)
        for im, p in zip(images, paths, strict=True):
            if not p.exists():
                save_png(im, p)
        return paths

    def done(self, item: PromptItem, out: Path) -> bool:
        return all(p.exists() for p in self.outputs(item, out))

    def read_outputs(self, items: list[PromptItem], out: Path) -> list[SuiteItem]:
        """The generated images of ``items`` as scorer input (missing outputs are an error)."""
        res = []
        for it in items:
            paths = self.outputs(it, out)
            missing = [p for p in paths if not p.exists()]
            if missing:
                raise SuiteError(f"{out}: no output for {self.name} item {it.item_id!r} ({missing[0]}); "
                                 "run `arm-lm suite generate` first (it resumes where it stopped)")
            src = it.load_source() if isinstance(it.source, (bytes, bytearray)) else it.source
            res.append(SuiteItem(self.name, it.item_id, it.prompt, list(paths), tag=it.tag,
                                 source_image=src, record=it.record))
        return res

    def settings(self) -> dict[str, Any]:
        """What, beside the model, decides this suite's outputs (kept in the manifest)."""
        return {"suite": self.name, "samples": self.n_samples}
