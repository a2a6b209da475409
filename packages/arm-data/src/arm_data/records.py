"""Sample records of the three data tasks: image–text pairs, VQA/conversations, edits.

Readers (:mod:`arm_data.datasets`) turn every on-disk format (folder with sidecars,
JSONL manifest, WebDataset shards; see ``.agents/formats.md`` and the package README)
into these records, and the ShapesWorld exporter writes them. Images are held as
:class:`ImageRef` — a path or the encoded bytes — and decoded only when asked
(:meth:`ImageRef.load`), so indexing a million-file folder decodes nothing. A record may
also hold an already decoded :class:`PIL.Image.Image` (e.g. one rendered in memory).

Each record keeps its ``key`` (the sample's name in its format) and ``extra``: every
JSON field beyond the task's own (ShapesWorld stores ``spec``, ``source_spec``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from arm_tokenizer.images import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from PIL import Image

from arm_data.errors import BadSampleError, from_image_error
from arm_data.tasks import get_task

__all__ = [
    "TASKS",
    "ROLES",
    "ImageRef",
    "ImageLike",
    "PairRecord",
    "VQARecord",
    "EditRecord",
    "Record",
    "as_pil",
    "image_fields",
    "record_from_fields",
    "validate_conversation",
]

TASKS = ("pair", "vqa", "edit")
ROLES = ("user", "assistant")


@dataclass(frozen=True)
class ImageRef:
    """An image not decoded yet: a file path or the encoded bytes of a file.

    Attributes:
        source: a filesystem path (``str``) or encoded image bytes (e.g. a tar member).
        name: how errors name it (the path, or ``shard.tar:key.png``).
        max_pixels: decompression-bomb limit passed to :func:`load_image`.
    """

    source: str | bytes
    name: str = ""
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(
                self, "name", self.source if isinstance(self.source, str) else f"<{len(self.source)} bytes>"
            )

    def load(self) -> Image.Image:
        """Decode to an RGB image.

        Raises:
            BadSampleError: reason ``missing_file``, ``empty_file``, ``image_too_large`` or
                ``corrupt_image``, naming the file.
        """
        try:
            return load_image(self.source, max_pixels=self.max_pixels, name=self.name)
        except ImageLoadError as e:
            raise from_image_error(e) from e

    def read_bytes(self) -> bytes:
        """The encoded bytes (reads the file for a path)."""
        if isinstance(self.source, bytes):
            return self.source
        with open(self.source, "rb") as f:
            return f.read()

    def __repr__(self) -> str:
        return f"ImageRef({self.name!r})"


ImageLike = ImageRef | Image.Image


def as_pil(image: ImageLike) -> Image.Image:
    """Decode an :class:`ImageRef` (or pass a PIL image through, converted to RGB)."""
    if isinstance(image, ImageRef):
        return image.load()
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    raise TypeError(f"expected an ImageRef or a PIL image; got {type(image).__name__}")


def _check_str(value: Any, what: str, source: str) -> str:
    if not isinstance(value, str):
        raise BadSampleError(source, "invalid_record", f"{what} must be a string; got {type(value).__name__}")
    return value


@dataclass
class PairRecord:
    """An image and its caption.

    Attributes:
        image: the image (lazy :class:`ImageRef` or a decoded PIL image).
        text: the caption.
        key: the sample's name in its dataset.
        extra: any further JSON fields.
    """

    task: ClassVar[str] = "pair"
    image: ImageLike
    text: str
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def load_image(self) -> Image.Image:
        """The decoded RGB image (raises :class:`BadSampleError`)."""
        return as_pil(self.image)


@dataclass
class VQARecord:
    """An image with a question and answer, or with a multi-turn conversation.

    ``question`` + ``answer`` or ``conversation`` (a list of
    ``{"role": "user"|"assistant", "text": ...}``), or both, are given; :meth:`turns` always returns
    the conversation form (a question/answer pair is one user and one assistant turn).

    Attributes:
        image: the image.
        question: the question (``None`` when only ``conversation`` is given).
        answer: the answer (``None`` when only ``conversation`` is given).
        conversation: the turns (``None`` when only question/answer are given).
        key: the sample's name in its dataset.
        extra: any further JSON fields.
    """

    task: ClassVar[str] = "vqa"
    image: ImageLike
    question: str | None = None
    answer: str | None = None
    conversation: list[dict[str, str]] | None = None
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = self.key or "<vqa record>"
        if self.conversation is None:
            if self.question is None or self.answer is None:
                raise BadSampleError(
                    where, "invalid_record", "a vqa record needs 'question' and 'answer', or 'conversation'"
                )
            _check_str(self.question, "question", where)
            _check_str(self.answer, "answer", where)
        else:  # question/answer may accompany a conversation; turns() prefers the conversation
            self.conversation = validate_conversation(self.conversation, where)

    def turns(self) -> list[dict[str, str]]:
        """The conversation as a list of ``{"role", "text"}`` turns."""
        if self.conversation is not None:
            return [dict(t) for t in self.conversation]
        return [{"role": "user", "text": self.question or ""}, {"role": "assistant", "text": self.answer or ""}]

    def load_image(self) -> Image.Image:
        """The decoded RGB image (raises :class:`BadSampleError`)."""
        return as_pil(self.image)


def validate_conversation(conv: Any, where: str) -> list[dict[str, str]]:
    """Check a conversation is a non-empty list of ``{"role": user|assistant, "text": str}``."""
    if not isinstance(conv, list) or not conv:
        raise BadSampleError(where, "invalid_record", "'conversation' must be a non-empty list of turns")
    out = []
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict) or "role" not in turn or "text" not in turn:
            raise BadSampleError(where, "invalid_record", f"conversation turn {i} must be {{'role': ..., 'text': ...}}")
        if turn["role"] not in ROLES:
            raise BadSampleError(
                where, "invalid_record", f"conversation turn {i} has role {turn['role']!r}; choose from {ROLES}"
            )
        out.append({"role": turn["role"], "text": _check_str(turn["text"], f"conversation turn {i} text", where)})
    return out


@dataclass
class EditRecord:
    """A source image, an edit instruction and the edited target image.

    Attributes:
        source: the image before the edit.
        target: the image after the edit.
        instruction: the edit instruction text.
        key: the sample's name in its dataset.
        extra: any further JSON fields.
    """

    task: ClassVar[str] = "edit"
    source: ImageLike
    target: ImageLike
    instruction: str
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def load_source(self) -> Image.Image:
        """The decoded source image (raises :class:`BadSampleError`)."""
        return as_pil(self.source)

    def load_target(self) -> Image.Image:
        """The decoded target image (raises :class:`BadSampleError`)."""
        return as_pil(self.target)


Record = PairRecord | VQARecord | EditRecord


def record_from_fields(task: str, fields: dict[str, Any], images: dict[str, ImageLike], key: str, where: str) -> Record:
    """Build a record of ``task`` from a JSON object and its already resolved images.

    The schema is the task's own (:meth:`arm_data.tasks.Task.read`).

    Args:
        task: ``"pair"``, ``"vqa"`` or ``"edit"`` (or the task name that owns the schema:
            ``t2i``, ``und``; or a registered third-party task).
        fields: the JSON fields (the task's own fields are consumed; the rest go to ``extra``).
        images: ``{"image": ...}`` (pair, vqa) or ``{"source": ..., "target": ...}`` (edit).
        key: the sample's key.
        where: how errors name the sample (e.g. ``manifest.jsonl:17``).

    Raises:
        BadSampleError: ``invalid_record`` for a missing or mistyped field.
        ValueError: an unknown task.
    """
    fields = dict(fields)
    fields.pop("task", None)
    return get_task(task).read(fields, images, key, where)


def image_fields(task: str) -> tuple[str, ...]:
    """The image fields of a task: ``("image",)`` or ``("source", "target")``."""
    return get_task(task).image_fields
