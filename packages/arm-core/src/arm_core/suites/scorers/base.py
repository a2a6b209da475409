"""The scorer interface: a suite's prompts with their generated images -> per-image scores.

A scorer (kind ``scorer``, entry-point group ``arm.scorers``) reads what ``arm-lm suite
generate`` wrote (or images held in memory, as RL does) as a list of :class:`SuiteItem`
(one prompt, its ``N`` images, its category ``tag`` and the suite's own record) and returns
one :class:`ScoreRecord` per item: a score per image, and where the scorer has a yes/no
verdict (GenEval's "all clauses hold"), ``correct`` per image. Subclasses implement
:meth:`Scorer.score`; callers use ``scorer(items)``, which checks the result (one record per
item, one finite score per image) and raises :class:`ScorerError` naming the scorer, the
item and the image otherwise, so a NaN never reaches a table or an RL advantage.

:meth:`Scorer.summarize` aggregates like GenEval's ``summary_scores.py``: the per-tag score
is the mean over that tag's images (of ``correct`` where present, else of ``scores``), and
the overall score is the unweighted mean over tags. A scorer whose benchmark aggregates
differently (ImgEdit: per image, then per category) overrides it.

Example (a scorer that rewards bright images)::

    class Brightness(Scorer):
        metric = "brightness"

        def score(self, items):
            return [ScoreRecord(it.item_id, it.tag,
                                [float(np.asarray(im).mean() / 255) for im in it.load_images()])
                    for it in items]
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = ["Scorer", "ScorerError", "ScoreRecord", "ScoreTable", "SuiteItem"]


class ScorerError(ValueError):
    """A scorer got input it cannot score or produced an invalid value (names the scorer)."""


@dataclass
class SuiteItem:
    """One prompt of a suite and the images generated for it.

    Args:
        suite: the suite's name (``geneval``, ``shapes``, ``dpg``, ``wise``, ``gedit``, ``imgedit``).
        item_id: the suite's own id (GenEval's folder ``00012``, DPG ``item_id``, WISE
            ``prompt_id``, GEdit / ImgEdit ``key``).
        prompt: the text prompt, or the edit instruction.
        images: the generated images, as files or PIL images (DPG's 2x2 grid arrives as its
            four tiles).
        tag: the category results are grouped by (GenEval tag, DPG category, GEdit task type...).
        source_image: for edits, the input image (file or PIL image).
        record: the suite's own record for this prompt (e.g. GenEval's metadata line).
    """

    suite: str
    item_id: str
    prompt: str
    images: list[Any]
    tag: str = "all"
    source_image: Any = None
    record: dict[str, Any] = field(default_factory=dict)

    def load_images(self) -> list[Any]:
        """The images as RGB PIL images (files are opened; a bad file is a :class:`ScorerError`)."""
        return [_open(im, f"{self.suite} item {self.item_id} image {i}") for i, im in enumerate(self.images)]

    def load_source(self) -> Any:
        """The edit's input image as an RGB PIL image (None for text-to-image items)."""
        if self.source_image is None:
            return None
        return _open(self.source_image, f"{self.suite} item {self.item_id} source image")


def _open(im: Any, what: str) -> Any:
    if isinstance(im, Image.Image):
        return im.convert("RGB")
    if isinstance(im, (str, os.PathLike)):
        try:
            with Image.open(Path(im)) as f:
                return f.convert("RGB")
        except (OSError, ValueError) as exc:
            raise ScorerError(f"{what}: cannot read {im}: {exc}") from exc
    raise ScorerError(f"{what}: expected a PIL image or a file path, got {type(im).__name__}")


@dataclass
class ScoreRecord:
    """The scores of one :class:`SuiteItem`.

    Args:
        item_id: the item's id.
        tag: the item's category.
        scores: one score per image (the scorer's scale: [0, 1] for rule / probability
            scorers, 0-10 for VIEScore-style judges).
        correct: one verdict per image where the scorer has one (GenEval-style), else None.
        details: one JSON-serializable dict per image (clauses, sub-scores, judge answers).
    """

    item_id: str
    tag: str
    scores: list[float]
    correct: list[bool] | None = None
    details: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "tag": self.tag, "scores": self.scores,
                "correct": self.correct, "details": self.details}


@dataclass
class ScoreTable:
    """Aggregated scores: per tag and overall (see :meth:`Scorer.summarize`)."""

    scorer: str
    suite: str
    metric: str
    per_tag: dict[str, float]
    images_per_tag: dict[str, int]
    overall: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"scorer": self.scorer, "suite": self.suite, "metric": self.metric,
                "overall": self.overall, "per_tag": self.per_tag,
                "images_per_tag": self.images_per_tag, **self.extra}

    def to_markdown(self) -> str:
        """A GitHub-markdown table: one row per tag, then the overall row."""
        lines = [f"| tag | images | {self.metric} |", "|---|---:|---:|"]
        for tag in self.per_tag:
            lines.append(f"| {tag} | {self.images_per_tag[tag]} | {self.per_tag[tag]:.3f} |")
        lines.append(f"| **overall** | {sum(self.images_per_tag.values())} | **{self.overall:.3f}** |")
        return "\n".join(lines) + "\n"


class Scorer:
    """Base class of suite scorers (see the module docstring).

    Subclasses implement :meth:`score` and document their constructor args (the YAML /
    ``--scorer-args`` schema).

    Args:
        name: label for tables and errors; None = the class name.
        device: where the scorer's own models run (``"cpu"``, ``"cuda:1"``, ...).
    """

    #: the suites this scorer understands; None = any.
    suites: tuple[str, ...] | None = None
    #: the column label of its tables.
    metric: str = "score"

    def __init__(self, name: str | None = None, device: str = "cpu") -> None:
        self.name = name or type(self).__name__
        self.device = device

    def score(self, items: Sequence[SuiteItem]) -> list[ScoreRecord]:
        """One :class:`ScoreRecord` per item, in order (override this)."""
        raise NotImplementedError(f"{type(self).__name__} must implement score()")

    def __call__(self, items: Sequence[SuiteItem]) -> list[ScoreRecord]:
        items = list(items)
        if self.suites is not None:
            wrong = sorted({it.suite for it in items} - set(self.suites))
            if wrong:
                raise ScorerError(f"scorer {self.name!r} scores the suites {', '.join(self.suites)}, "
                                  f"not {', '.join(wrong)}")
        records = self.score(items)
        self.check(items, records)
        return records

    def check(self, items: Sequence[SuiteItem], records: Sequence[ScoreRecord]) -> None:
        """Raise :class:`ScorerError` unless ``records`` match ``items`` with finite scores."""
        if not isinstance(records, (list, tuple)) or len(records) != len(items):
            n = len(records) if isinstance(records, (list, tuple)) else type(records).__name__
            raise ScorerError(f"scorer {self.name!r} returned {n} records for {len(items)} items")
        for it, rec in zip(items, records, strict=True):
            where = f"scorer {self.name!r}, {it.suite} item {it.item_id!r}"
            if not isinstance(rec, ScoreRecord) or rec.item_id != it.item_id:
                got = rec.item_id if isinstance(rec, ScoreRecord) else type(rec).__name__
                raise ScorerError(f"{where}: record out of order or of the wrong type (got {got!r})")
            if len(rec.scores) != len(it.images):
                raise ScorerError(f"{where}: {len(rec.scores)} scores for {len(it.images)} images")
            for i, s in enumerate(rec.scores):
                if not isinstance(s, (int, float)) or not math.isfinite(s):
                    raise ScorerError(f"{where}, image {i}: score {s!r} is not a finite number")
            if rec.correct is not None and len(rec.correct) != len(it.images):
                raise ScorerError(f"{where}: {len(rec.correct)} verdicts for {len(it.images)} images")

    def summarize(self, records: Sequence[ScoreRecord], suite: str = "") -> ScoreTable:
        """Per-tag mean over images (of ``correct`` where given), overall = mean over tags."""
        by_tag: dict[str, list[float]] = {}
        for rec in records:
            vals = [float(c) for c in rec.correct] if rec.correct is not None else rec.scores
            by_tag.setdefault(rec.tag, []).extend(vals)
        per_tag = {t: sum(v) / len(v) for t, v in by_tag.items() if v}
        if not per_tag:
            raise ScorerError(f"scorer {self.name!r}: nothing to summarize (no scored images)")
        return ScoreTable(scorer=self.name, suite=suite, metric=self.metric, per_tag=per_tag,
                          images_per_tag={t: len(v) for t, v in by_tag.items() if v},
                          overall=sum(per_tag.values()) / len(per_tag))
