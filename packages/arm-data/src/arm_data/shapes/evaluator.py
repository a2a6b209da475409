"""Score images against ShapesWorld specs, clause by clause (GenEval-style).

Text-to-image (:func:`evaluate_t2i`). The image is parsed (:func:`parse_image`), spec
objects are matched one-to-one to detected objects (Hungarian assignment; cost: 4 per
wrong shape, 4 per wrong color, 1 per wrong size, plus the centroid distance, so matching
prefers the right kind of object and breaks ties by position), and these clauses are
checked, each pass/fail:

* ``count``: exactly ``len(spec.objects)`` objects detected.
* ``presence[i]``: spec object i is matched to a detection of the same shape.
* ``color[i]``, ``size[i]``, ``region[i]``: the matched detection has that attribute
  (an unmatched object fails all its clauses).
* ``relation[i,j,axis]``: for every pair in different columns (axis ``x``) or rows
  (``y``) of the 3x3 grid, the matched detections keep the left/right or above/below
  order (fails if either is unmatched).

``check`` selects clause kinds (a caption that names no positions should be scored with
``check={"count", "presence", "color"}``; :attr:`Caption.attributes` gives this set,
where "shape" means presence). **Partial credit**: ``score`` is the fraction of checked
clauses that pass, every clause weighing the same; ``strict`` is 1 only when all pass
(GenEval's per-prompt correctness); ``by_kind`` gives the pass rate per clause kind.

Editing (:func:`evaluate_edit`), two separate numbers:

* ``adherence``: the requested change happened: the clauses of the objects the edit
  changed or added (presence, color, size, region in the target), ``count`` for add /
  remove, and for remove that no object of the removed kind stays in its region.
* ``consistency``: everything else is unchanged: every untouched object keeps presence,
  color, size, region and position (centroid within ``position_tolerance`` of min side),
  ``count`` for edits that keep it, and the background: mean absolute difference to the
  source image (or to the spec's background) on pixels that are background in both,
  passing below ``background_tolerance``; ``background_similarity`` = 1 - MAD / 0.1.

Both are fractions of passing clauses in [0, 1] (1.0 when there is nothing to check).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from arm_data.shapes.edits import EditSpec, changed_indices
from arm_data.shapes.palette import REGIONS
from arm_data.shapes.perception import DetectedObject, ParsedScene, parse_image, to_float_image
from arm_data.shapes.rendering import render_background
from arm_data.shapes.spec import SceneSpec

CLAUSE_KINDS: tuple[str, ...] = ("count", "presence", "color", "size", "region", "relation")
_ALIASES = {"shape": "presence"}


@dataclass
class Clause:
    """One checked statement: ``name`` (e.g. ``color[1]``), its ``kind``, and the verdict."""

    name: str
    kind: str
    passed: bool
    expected: Any = None
    found: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "passed": self.passed,
                "expected": self.expected, "found": self.found}


def _fraction(clauses: list[Clause]) -> float:
    return float(np.mean([c.passed for c in clauses])) if clauses else 1.0


def clause_pass_rates(clauses: Iterable[Clause]) -> dict[str, float]:
    """Pass rate per clause kind over ``clauses`` (of one result, or pooled over many)."""
    out: dict[str, list[bool]] = {}
    for c in clauses:
        out.setdefault(c.kind, []).append(c.passed)
    return {k: float(np.mean(v)) for k, v in out.items()}


@dataclass
class T2IResult:
    """Result of :func:`evaluate_t2i`: overall ``score`` (fraction of clauses passed),
    ``strict`` (all passed), the ``clauses``, the detections and the matching
    (``matching[i]`` = index into ``detected`` of spec object i, or None)."""

    score: float
    strict: bool
    clauses: list[Clause]
    detected: list[DetectedObject]
    matching: list[int | None]
    parsed: ParsedScene | None = field(default=None, repr=False)

    @property
    def by_kind(self) -> dict[str, float]:
        return clause_pass_rates(self.clauses)

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "strict": self.strict, "by_kind": self.by_kind,
                "clauses": [c.to_dict() for c in self.clauses],
                "detected": [d.to_dict() for d in self.detected], "matching": self.matching}


@dataclass
class EditResult:
    """Result of :func:`evaluate_edit`: ``adherence`` and ``consistency`` (fractions of
    their clauses that pass), the clauses of each, and ``background_similarity``."""

    adherence: float
    consistency: float
    adherence_clauses: list[Clause]
    consistency_clauses: list[Clause]
    background_similarity: float
    detected: list[DetectedObject]

    @property
    def score(self) -> float:
        """Mean of adherence and consistency (a single reward when one is needed)."""
        return 0.5 * (self.adherence + self.consistency)

    def to_dict(self) -> dict[str, Any]:
        return {"adherence": self.adherence, "consistency": self.consistency, "score": self.score,
                "background_similarity": self.background_similarity,
                "adherence_clauses": [c.to_dict() for c in self.adherence_clauses],
                "consistency_clauses": [c.to_dict() for c in self.consistency_clauses],
                "detected": [d.to_dict() for d in self.detected]}


def normalize_check(check: Iterable[str] | None) -> frozenset[str]:
    """Clause kinds to check; accepts :attr:`Caption.attributes` ("shape" = presence)."""
    if check is None:
        return frozenset(CLAUSE_KINDS)
    if isinstance(check, str):
        check = [check]
    out = set()
    for k in check:
        k = _ALIASES.get(k, k)
        if k not in CLAUSE_KINDS:
            raise ValueError(f"unknown clause kind {k!r}; choose from {', '.join(CLAUSE_KINDS)} (or 'shape')")
        out.add(k)
    out.add("presence")  # an object that is not there cannot have attributes
    return frozenset(out)


def match_objects(spec: SceneSpec, detected: list[DetectedObject]) -> list[int | None]:
    """One-to-one assignment of spec objects to detections (see module docstring)."""
    if not spec.objects or not detected:
        return [None] * spec.count
    cost = np.zeros((spec.count, len(detected)))
    for i, o in enumerate(spec.objects):
        for j, d in enumerate(detected):
            cost[i, j] = (4.0 * (o.shape != d.shape) + 4.0 * (o.color != d.color)
                          + 1.0 * (o.size != d.size) + np.hypot(o.x - d.x, o.y - d.y))
    rows, cols = linear_sum_assignment(cost)
    match: list[int | None] = [None] * spec.count
    for r, c in zip(rows, cols, strict=True):
        match[r] = int(c)
    return match


def object_clauses(spec: SceneSpec, i: int, det: DetectedObject | None,
                   kinds: frozenset[str]) -> list[Clause]:
    """presence / color / size / region clauses of spec object ``i`` against ``det``."""
    o = spec.objects[i]
    out = [Clause(f"presence[{i}]", "presence", det is not None and det.shape == o.shape,
                  o.shape, det.shape if det else None)]
    for kind, attr in (("color", "color"), ("size", "size"), ("region", "region")):
        if kind in kinds:
            found = getattr(det, attr) if det else None
            out.append(Clause(f"{kind}[{i}]", kind, found == getattr(o, attr), getattr(o, attr), found))
    return out


def relation_clauses(spec: SceneSpec, dets: list[DetectedObject | None],
                     only: set[tuple[int, int, str]] | None = None) -> list[Clause]:
    """Order clauses for object pairs in different grid columns (x) / rows (y); ``only``
    restricts them to the given ``(i, j, axis)`` triples (i < j)."""
    out = []
    for i in range(spec.count):
        for j in range(i + 1, spec.count):
            ri, rj = divmod(REGIONS.index(spec.objects[i].region), 3), divmod(REGIONS.index(spec.objects[j].region), 3)
            for axis, a, b, attr in (("x", ri[1], rj[1], "x"), ("y", ri[0], rj[0], "y")):
                if a == b or (only is not None and (i, j, axis) not in only):
                    continue
                di, dj = dets[i], dets[j]
                ok = di is not None and dj is not None and ((getattr(di, attr) < getattr(dj, attr)) == (a < b))
                rel = ("left of" if a < b else "right of") if axis == "x" else ("above" if a < b else "below")
                out.append(Clause(f"relation[{i},{j},{axis}]", "relation", ok, f"{i} {rel} {j}", None))
    return out


def evaluate_t2i(image: Any, spec: SceneSpec, check: Iterable[str] | None = None,
                 parsed: ParsedScene | None = None,
                 relations: Iterable[tuple[int, int, str]] | None = None) -> T2IResult:
    """Score ``image`` against ``spec`` (see the module docstring for the clauses).

    Args:
        image: PIL image, uint8 array (H, W, 3) or tensor (3, H, W) in [-1, 1].
        spec: the scene the image should show.
        check: clause kinds to check (default all): any of ``count``, ``presence``
            (alias ``shape``), ``color``, ``size``, ``region``, ``relation``.
        parsed: a :class:`ParsedScene` of ``image`` to reuse (skips parsing).
        relations: check only these ``(i, j, axis)`` relations (e.g.
            :attr:`Caption.relations`); default: every pair in different columns / rows.
    """
    if isinstance(spec, str):
        spec = SceneSpec.from_json(spec)
    kinds = normalize_check(check)
    parsed = parsed if parsed is not None else parse_image(image)
    det = parsed.objects
    match = match_objects(spec, det)
    dets = [det[m] if m is not None else None for m in match]
    clauses: list[Clause] = []
    if "count" in kinds:
        clauses.append(Clause("count", "count", len(det) == spec.count, spec.count, len(det)))
    for i in range(spec.count):
        clauses += object_clauses(spec, i, dets[i], kinds)
    if "relation" in kinds:
        only = None if relations is None else {(min(i, j), max(i, j), ax) for i, j, ax in relations}
        clauses += relation_clauses(spec, dets, only)
    score = _fraction(clauses)
    return T2IResult(score=score, strict=all(c.passed for c in clauses), clauses=clauses,
                     detected=det, matching=match, parsed=parsed)


def _background_mad(edited: np.ndarray, parsed: ParsedScene, reference: np.ndarray,
                    ref_fg: np.ndarray | None) -> float:
    fg = parsed.foreground if ref_fg is None else (parsed.foreground | ref_fg)
    fg = ndimage.binary_dilation(fg, iterations=1)
    bgmask = ~fg
    if bgmask.sum() == 0:
        return 1.0
    return float(np.abs(edited - reference)[bgmask].mean())


def evaluate_edit(edited_image: Any, source_spec: SceneSpec, target_spec: SceneSpec,
                  edit: EditSpec | None = None, source_image: Any = None,
                  position_tolerance: float = 0.05, background_tolerance: float = 0.03) -> EditResult:
    """Score an edited image: instruction ``adherence`` and ``consistency``, separately.

    Args:
        edited_image: the model's output image.
        source_spec: the scene before the edit.
        target_spec: the scene the edit asked for.
        edit: the :class:`EditSpec` (recommended: it says which objects changed); when
            None, target objects with no identical source object count as changed.
        source_image: the source image, to compare backgrounds pixel by pixel; when None
            the background is compared with ``target_spec.background`` rendered.
        position_tolerance: max centroid drift of an untouched object (fraction of the
            image's width / height).
        background_tolerance: max mean absolute background difference (on [0, 1]).
    """
    if isinstance(source_spec, str):
        source_spec = SceneSpec.from_json(source_spec)
    if isinstance(target_spec, str):
        target_spec = SceneSpec.from_json(target_spec)
    img = to_float_image(edited_image)
    parsed = parse_image(img)
    t2i = evaluate_t2i(img, target_spec, parsed=parsed)
    det = parsed.objects
    dets = [det[m] if m is not None else None for m in t2i.matching]
    if edit is not None:
        changed = changed_indices(edit, target_spec)
    else:
        src = set(source_spec.objects)
        changed = {i for i, o in enumerate(target_spec.objects) if o not in src}
    all_kinds = frozenset(CLAUSE_KINDS)
    adherence: list[Clause] = []
    consistency: list[Clause] = []
    count_clause = Clause("count", "count", len(det) == target_spec.count, target_spec.count, len(det))
    count_changes = target_spec.count != source_spec.count
    (adherence if count_changes else consistency).append(count_clause)
    for i in range(target_spec.count):
        cl = object_clauses(target_spec, i, dets[i], all_kinds)
        if i in changed:
            adherence += cl
        else:
            o, d = target_spec.objects[i], dets[i]
            drift = None if d is None else float(np.hypot(o.x - d.x, o.y - d.y))
            cl.append(Clause(f"position[{i}]", "position", drift is not None and drift <= position_tolerance,
                             position_tolerance, drift))
            consistency += cl
    if edit is not None and edit.kind == "remove":
        gone = source_spec.objects[edit.index]
        stays = [d for d in det if d.shape == gone.shape and d.color == gone.color and d.region == gone.region]
        adherence.append(Clause("removed", "presence", not stays, "absent", len(stays)))
    # Background: compare with the source image (or the spec's background).
    h, w = img.shape[:2]
    if source_image is not None:
        ref = to_float_image(source_image)
        if ref.shape != img.shape:
            raise ValueError(f"source image shape {ref.shape} differs from edited image shape {img.shape}")
        ref_fg = parse_image(ref).foreground
    else:
        ref = render_background(target_spec.background, w, h) / 255.0
        ref_fg = None
    mad = _background_mad(img, parsed, ref, ref_fg)
    consistency.append(Clause("background", "background", mad <= background_tolerance,
                              background_tolerance, mad))
    return EditResult(adherence=_fraction(adherence), consistency=_fraction(consistency),
                      adherence_clauses=adherence, consistency_clauses=consistency,
                      background_similarity=float(max(0.0, 1.0 - mad / 0.1)), detected=det)
