"""RL prompt sets from files (data module ``file_prompts``): GenEval, DPG-Bench, edit triplets.

RL need not stay on ShapesWorld: the same prompt files the benchmark suites read
(:mod:`arm_core.suites`) feed rollouts, validated by the suites' own readers (a bad line is
one error naming the file, the line and the field):

- ``geneval``: GenEval's ``evaluation_metadata.jsonl`` (``tag``, ``include``, ``exclude``,
  ``prompt``). Each line's clauses become yes/no questions for judges (``questions``):
  "Is there a red car?" / "Are there 2 dogs?" (yes), "Is the dog to the left of the cat?"
  (yes) and every ``exclude`` as "Are there 3 or more dogs?" (no). Lines written by the
  ``shapes`` suite also carry their ShapesWorld scene (``shapes`` field), so the rule
  rewards (``shapes_t2i``) score them too: ShapesWorld prompts in GenEval's format.
- ``dpg``: DPG-Bench's ``prompts/`` folder of ``<item_id>.txt`` or ``dpg_bench.csv``; from the
  csv, each item's ``question_natural_language`` propositions become its questions (yes).
- ``edits``: a JSONL of edit triplets, one object a line: ``source_image`` (a path, relative
  to ``image_root`` or else to the file's folder), ``instruction`` and optionally
  ``target_caption`` (what the result shows: for ``dual_encoder_alignment`` and
  ``siglip_score``), ``id`` and ``questions`` (``[[question, "yes"|"no"], ...]``). Every
  image is checked to exist and be readable when the file is read; images are loaded
  when a batch needs them.

``format: auto`` tells them apart: a folder or ``.csv`` is DPG; a JSONL whose first line
has ``include`` is GenEval, one with ``instruction`` is edits.

:class:`FilePromptDataModule` batches these records exactly as
:class:`~arm_rl.prompts.ShapesPromptDataModule` batches ShapesWorld's (it subclasses it for
the seeded, resumable epoch order), so a resumed run continues with the same prompts.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from arm_core.suites.base import SuiteError, SuiteFormatError, read_jsonl, require_str
from arm_core.suites.dpg import DPGSuite
from arm_core.suites.geneval import GenEvalSuite
from arm_data.shapes.spec import SceneSpec
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from arm_rl.prompts import PromptRecord, ShapesPromptDataModule

__all__ = ["PROMPT_FORMATS", "FilePromptDataset", "FilePromptDataModule", "detect_format",
           "geneval_questions", "read_prompt_file"]

PROMPT_FORMATS: tuple[str, ...] = ("geneval", "dpg", "edits")
_EDIT_FIELDS = ("source_image", "instruction", "target_caption", "id", "questions")
_RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above",
                   "below": "below"}


def _error(path: Path, where: str, message: str) -> Exception:
    return SuiteFormatError(path, where, message)


def detect_format(path: str | Path) -> str:
    """``geneval``, ``dpg`` or ``edits`` for the prompt file (or folder) at ``path``."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() == ".csv":
        return "dpg"
    if not path.is_file():
        raise SuiteError(f"prompt file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read the prompt file: {exc}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _error(path, f"line {n}", f"not valid JSON ({exc.msg})") from None
        if isinstance(obj, dict) and "include" in obj:
            return "geneval"
        if isinstance(obj, dict) and "instruction" in obj:
            return "edits"
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise _error(path, f"line {n}", f"cannot tell the prompt format from the fields {keys}: GenEval "
                     "lines have 'include', edit triplets 'instruction'; or set format: geneval|dpg|edits")
    raise SuiteError(f"{path}: no prompts (an empty file)")


# ---------------------------------------------------------------------- GenEval
def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


def _phrase(c: dict[str, Any], plural: bool = False) -> str:
    noun = _plural(c["class"]) if plural else c["class"]
    return f"{c['color']} {noun}" if c.get("color") else noun


def _a(phrase: str) -> str:
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def geneval_questions(line: dict[str, Any]) -> list[tuple[str, str]]:
    """Yes/no questions that a GenEval metadata line's clauses ask (see the module docstring)."""
    include = line.get("include") or []
    qs: list[tuple[str, str]] = []
    for c in include:
        n = int(c.get("count", 1))
        qs.append((f"Is there {_a(_phrase(c))} in the image?", "yes") if n <= 1 else
                  (f"Are there {n} {_phrase(c, True)} in the image?", "yes"))
        pos = c.get("position")
        if pos and 0 <= pos[1] < len(include):
            rel = _RELATION_WORDS.get(pos[0], pos[0])
            qs.append((f"Is the {_phrase(c)} {rel} the {_phrase(include[pos[1]])}?", "yes"))
    for c in line.get("exclude") or []:
        n = int(c.get("count", 1))
        qs.append((f"Is there {_a(_phrase(c))} in the image?", "no") if n <= 1 else
                  (f"Are there {n} or more {_phrase(c, True)} in the image?", "no"))
    return qs


def _read_geneval(path: Path) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(GenEvalSuite().read(path)):
        line = item.record
        kw: dict[str, Any] = {"task": "t2i", "text": item.prompt, "index": i, "split": path.name,
                              "questions": geneval_questions(line),
                              "meta": {"suite": "geneval", "item_id": item.item_id, "tag": item.tag,
                                       "record": line, "where": item.where}}
        shapes = line.get("shapes")
        if isinstance(shapes, dict) and "spec" in shapes:     # a ``shapes`` suite line
            try:
                kw["spec"] = SceneSpec.from_dict(shapes["spec"])
            except (KeyError, TypeError, ValueError) as exc:
                raise _error(path, f"line {item.where.rsplit(':', 1)[-1]}",
                             f"field 'shapes.spec' is not a ShapesWorld scene: {exc}") from exc
            kw["check"] = frozenset(shapes.get("check") or ()) or None
            kw["relations"] = tuple(tuple(r) for r in shapes.get("relations") or ()) or None
            kw["meta"]["suite"] = "shapes"
        out.append(kw)
    return out


# ---------------------------------------------------------------------- DPG-Bench
def _read_dpg(path: Path) -> list[dict[str, Any]]:
    items = DPGSuite().read(path)
    questions: dict[str, list[tuple[str, str]]] = {}
    if not path.is_dir():        # the csv's propositions; DPGSuite.read has validated its rows
        with path.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                q = (row.get("question_natural_language") or "").strip()
                if q:
                    questions.setdefault(row["item_id"].strip(), []).append((q, "yes"))
    return [{"task": "t2i", "text": it.prompt, "index": i, "split": path.name,
             "questions": questions.get(it.item_id) or None,
             "meta": {"suite": "dpg", "item_id": it.item_id, "tag": it.tag, "record": it.record,
                      "where": it.where}}
            for i, it in enumerate(items)]


# ---------------------------------------------------------------------- edit triplets
def _check_image(file: Path, path: Path, where: str) -> None:
    if not file.is_file():
        raise _error(path, where, f"source_image {file} does not exist")
    try:
        with Image.open(file) as im:
            im.verify()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise _error(path, where, f"source_image {file} is not a readable image ({exc})") from exc


def _read_edits(path: Path, image_root: str | None) -> list[dict[str, Any]]:
    root = Path(image_root) if image_root else path.parent
    out = []
    for n, obj in read_jsonl(path, "edit-triplet"):
        where = f"line {n}"
        unknown = sorted(set(obj) - set(_EDIT_FIELDS))
        if unknown:
            raise _error(path, where, f"unknown field(s) {unknown}; edit triplets have {list(_EDIT_FIELDS)}")
        src = require_str(obj, "source_image", path, where, "edit-triplet")
        text = require_str(obj, "instruction", path, where, "edit-triplet")
        target = obj.get("target_caption")
        if target is not None and (not isinstance(target, str) or not target.strip()):
            raise _error(path, where, f"field 'target_caption' must be a non-empty string, got {target!r}")
        questions = obj.get("questions")
        if questions is not None:
            ok = isinstance(questions, list) and all(
                isinstance(q, list) and len(q) == 2 and isinstance(q[0], str) and q[1] in ("yes", "no")
                for q in questions)
            if not ok:
                raise _error(path, where, "field 'questions' must be a list of [question, \"yes\"|\"no\"]")
            questions = [tuple(q) for q in questions]
        file = (root / src).expanduser()
        _check_image(file, path, where)
        meta = {"suite": "edits", "item_id": str(obj.get("id", len(out))), "record": obj,
                "where": f"{path}:{where}", "source_path": str(file)}
        if target is not None:
            meta["target_caption"] = target
        out.append({"task": "edit", "text": text, "index": len(out), "split": path.name,
                    "questions": questions, "meta": meta})
    if not out:
        raise SuiteError(f"{path}: no edit triplets (an empty file)")
    return out


def read_prompt_file(path: str | Path, format: str = "auto", image_root: str | None = None) -> list[dict[str, Any]]:
    """The validated prompts of a file, as :class:`~arm_rl.prompts.PromptRecord` keyword
    arguments (edit sources as ``meta["source_path"]``, loaded by :class:`FilePromptDataset`)."""
    path = Path(path)
    if format == "auto":
        format = detect_format(path)
    if format not in PROMPT_FORMATS:
        raise SuiteError(f"unknown prompt format {format!r}; choose from auto, {', '.join(PROMPT_FORMATS)}")
    if not path.exists():
        raise SuiteError(f"{format} prompt file {path} does not exist")
    if format == "geneval":
        return _read_geneval(path)
    if format == "dpg":
        return _read_dpg(path)
    return _read_edits(path, image_root)


class FilePromptDataset(Dataset):
    """Prompt records from :func:`read_prompt_file`'s entries; edit sources loaded on access.

    Args:
        entries: the entries of :func:`read_prompt_file`.
    """

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            raise ValueError("the prompt set is empty")
        self.entries = entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> PromptRecord:
        kw = dict(self.entries[i])
        src = kw["meta"].get("source_path")
        if src is not None:
            try:
                with Image.open(src) as im:
                    kw["source_image"] = im.convert("RGB")
            except OSError as exc:     # changed on disk since it was checked
                raise SuiteError(f"{kw['meta']['where']}: source_image {src} cannot be read: {exc}") from exc
        return PromptRecord(**kw)


class FilePromptDataModule(ShapesPromptDataModule):
    """Batches of prompt records from a GenEval / DPG-Bench / edit-triplet file (``file_prompts``).

    Args:
        path: the prompt file (GenEval ``evaluation_metadata.jsonl``, DPG ``prompts/`` folder
            or ``dpg_bench.csv``, or an edit-triplet JSONL).
        format: ``auto``, ``geneval``, ``dpg`` or ``edits``.
        image_root: folder edit ``source_image`` paths are relative to; None = the file's folder.
        prompts_per_step: prompts per training step (each rolled out ``group_size`` times).
        limit: use only the first ``limit`` prompts (None = all).
        seed: the epoch order's seed.
        shuffle: shuffle each epoch.
    """

    def __init__(self, path: str, format: str = "auto", image_root: str | None = None,
                 prompts_per_step: int = 4, limit: int | None = None, seed: int = 0,
                 shuffle: bool = True) -> None:
        super().__init__(prompts_per_step=prompts_per_step, num_prompts=1, seed=seed, shuffle=shuffle)
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        # read now: a bad file stops the run before any model is loaded
        self.entries = read_prompt_file(path, format, image_root)[:limit]
        self.path, self.format = path, format
        self.num_prompts = len(self.entries)

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = FilePromptDataset(self.entries)

    def follow_task_weights(self, weights: dict[str, float] | None, trained: Sequence[str]) -> None:
        """The file's lines say their tasks, so a task mix does not apply; every task in the
        file must be one the model trains."""
        tasks = sorted({e["task"] for e in self.entries})
        missing = [t for t in tasks if t not in trained]
        if missing:
            raise ValueError(f"{self.path} has {missing} prompts, but the model trains only {list(trained)}: "
                             f"add model.init_args.tasks.{missing[0]} (a reward and sampling settings)")
