"""Helpers shared by the real-data readers: checked text/JSON decoding and format detection.

Every helper turns a failure into a :class:`arm_data.errors.BadSampleError` that names
the file (and the line for JSONL), so that readers only have to hand it to their
:class:`arm_data.errors.ErrorPolicy`.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path
from typing import Any, Literal

import braceexpand

from arm_data.errors import BadSampleError
from arm_data.tasks import Task, get_task

__all__ = [
    "IMAGE_EXTENSIONS",
    "FORMATS",
    "decode_text",
    "read_text",
    "parse_json_object",
    "read_json_object",
    "detect_format",
    "list_shards",
    "schema_task",
]

# Extensions recognised as images in folders and tar shards (lower case, no dot).
IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff", "ppm")
FORMATS = ("folder", "jsonl", "wds")
FormatName = Literal["folder", "jsonl", "wds"]


def decode_text(data: bytes, where: str) -> str:
    """Decode UTF-8 bytes (a BOM is tolerated) and strip surrounding whitespace.

    Raises:
        BadSampleError: ``bad_utf8`` with the byte offset of the first bad byte.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadSampleError(where, "bad_utf8", f"not valid UTF-8 at byte {e.start}: {data[e.start:e.start + 8]!r}") from e
    return text.strip()


def read_text(path: str | os.PathLike, where: str | None = None) -> str:
    """Read a UTF-8 text sidecar (see :func:`decode_text`).

    Raises:
        BadSampleError: ``missing_file`` or ``bad_utf8``.
    """
    where = where or os.fspath(path)
    return decode_text(_read_sidecar(path, where), where)


def _read_sidecar(path: str | os.PathLike, where: str) -> bytes:
    """The bytes of a sidecar file; a missing one is a ``missing_file`` :class:`BadSampleError`."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError as e:
        raise BadSampleError(where, "missing_file", "no such file") from e


def parse_json_object(data: bytes | str, where: str, first_line: int | None = None) -> dict[str, Any]:
    """Parse JSON that must be an object.

    Args:
        data: the JSON text (a whole sidecar file, or one JSONL line without its newline).
        where: how errors name the source (a path, ``manifest.jsonl:17``, ``shard.tar:key.json``).
        first_line: the file line ``data`` starts on (a JSONL line's number); errors then
            give file line numbers. ``None``: ``data`` is a whole file.

    Raises:
        BadSampleError: ``bad_utf8`` (bytes that are not UTF-8) or ``invalid_json``
            (syntax error, or a non-object value); both give the 1-based line and column
            (characters) of the problem.
    """
    base = (first_line or 1) - 1
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            before = data[:e.start]
            line = base + before.count(b"\n") + 1
            col = len(before[before.rfind(b"\n") + 1:].decode("utf-8-sig", "replace")) + 1
            raise BadSampleError(where, "bad_utf8", f"not valid UTF-8 at line {line}, column {col} "
                                 f"(byte {e.start}): {data[e.start:e.start + 8]!r}") from e
    try:
        obj = json.loads(data)
    except json.JSONDecodeError as e:
        msg = e.msg[:-3] if e.msg.endswith(" at") else e.msg  # "Unterminated string starting at"
        detail = f"{msg} at line {base + e.lineno}, column {e.colno}"
        if e.pos >= len(data.rstrip()):
            detail += f" (the end of the {'line' if first_line is not None else 'file'}: truncated?)"
        raise BadSampleError(where, "invalid_json", detail) from e
    except RecursionError as e:
        raise BadSampleError(where, "invalid_json", "JSON nested too deeply") from e
    if not isinstance(obj, dict):
        raise BadSampleError(where, "invalid_json", f"expected a JSON object; got {type(obj).__name__}")
    return obj


def read_json_object(path: str | os.PathLike, where: str | None = None) -> dict[str, Any]:
    """Read a JSON sidecar that must hold an object (see :func:`parse_json_object`)."""
    where = where or os.fspath(path)
    return parse_json_object(_read_sidecar(path, where), where)


def schema_task(name: str) -> Task:
    """The task owning the record schema that ``name`` (``pair``, ``vqa``, ``edit``, a task
    name or a plugin's) reads: readers ask it which fields, images and sidecars a record has.

    Raises:
        arm_data.tasks.UnknownTaskError: (a ``ValueError``) naming the known tasks.
    """
    return get_task(get_task(name).schema)


def _is_shard_pattern(path: str) -> bool:
    return path.endswith(".tar") or any(c in path for c in "*?{")


def list_shards(path: str | os.PathLike | list[str]) -> list[str]:
    """Expand a shard specification into a sorted list of tar paths.

    Accepts a directory (its ``*.tar`` files), one ``.tar`` file, a glob
    (``data/shard-*.tar``), a brace pattern (``data/shard-{000000..000009}.tar``) or a list
    of any of these.

    Raises:
        FileNotFoundError: when nothing matches, naming the pattern.
    """
    if isinstance(path, (list, tuple)):
        out: list[str] = []
        for p in path:
            out.extend(list_shards(p))
        return out
    spec = os.fspath(path)
    if os.path.isdir(spec):
        shards = sorted(glob.glob(os.path.join(glob.escape(spec), "*.tar")))
    elif "{" in spec:
        shards = [s for s in braceexpand.braceexpand(spec)]
        missing = [s for s in shards if not os.path.isfile(s)]
        if missing:
            raise FileNotFoundError(f"{len(missing)} shard(s) of {spec!r} do not exist, e.g. {missing[0]!r}")
    elif any(c in spec for c in "*?["):
        shards = sorted(glob.glob(spec))
    else:
        shards = [spec] if os.path.isfile(spec) else []
    if not shards:
        raise FileNotFoundError(f"no tar shards found at {spec!r} (give a directory, a .tar file, a glob or a brace pattern)")
    return shards


def detect_format(path: str | os.PathLike) -> FormatName:
    """Guess the on-disk format of ``path``.

    * a ``.jsonl`` file, or a directory holding ``manifest.jsonl`` -> ``"jsonl"``
    * a ``.tar`` file, a glob/brace pattern, or a directory holding ``*.tar`` -> ``"wds"``
    * any other directory -> ``"folder"``

    Raises:
        FileNotFoundError: if ``path`` is none of these.
    """
    spec = os.fspath(path)
    p = Path(spec)
    if p.is_file():
        if p.suffix == ".jsonl":
            return "jsonl"
        if p.suffix == ".tar":
            return "wds"
        raise FileNotFoundError(f"cannot tell the format of file {spec!r}: expected a .jsonl manifest or a .tar shard")
    if p.is_dir():
        if (p / "manifest.jsonl").is_file():
            return "jsonl"
        if any(p.glob("*.tar")):
            return "wds"
        return "folder"
    if _is_shard_pattern(spec):
        return "wds"
    raise FileNotFoundError(f"dataset path {spec!r} does not exist")
