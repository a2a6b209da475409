"""The bad-input policy of every real-data reader: raise, or skip with a counted warning.

Long runs over real data meet corrupt JPEGs, zero-byte files, missing caption sidecars,
truncated tar shards, broken JSON lines and non-UTF-8 text. The readers in
:mod:`arm_data.datasets` never drop such a sample silently; they report it as a
:class:`BadSampleError` (naming the file and a ``reason``) to an :class:`ErrorPolicy`:

* ``on_error="raise"``: the error propagates and stops the run at the first bad sample.
* ``on_error="skip"`` (default): the sample is skipped, counted per reason, and a
  :class:`SkippedSampleWarning` is emitted, rate-limited: the first ``warn_first`` skips
  each get their own warning naming the file; after that one summary warning is emitted
  whenever the skip count reaches a power of two (64, 128, 256, ...), so a million bad
  files cost about twenty lines, never silence.
* Either way, once at least ``min_samples`` samples have been seen, a skipped fraction
  above ``max_skip_fraction`` raises :class:`TooManyBadSamplesError` with the summary
  (counts per reason and the first files of each reason): a dataset that is mostly broken
  fails loudly instead of training on the few good samples.

"Seen" counts samples, each once: a sample is counted good when it is indexed (a
manifest line parsed, a shard sample grouped) and moves to skipped if a later check
fails (its image does not decode); a map-style dataset remembers the indices that failed
and does not decode or count them again. Each DataLoader worker process holds its own copy of the policy (it is pickled
into the worker), so with ``num_workers > 0`` counts and the fraction are per worker.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Literal

from arm_tokenizer.images import ImageLoadError

__all__ = [
    "REASONS",
    "BadSampleError",
    "TooManyBadSamplesError",
    "SkippedSampleWarning",
    "ErrorPolicy",
    "from_image_error",
]

REASONS: dict[str, str] = {
    "missing_file": "a referenced file does not exist",
    "empty_file": "a file has zero bytes",
    "image_too_large": "an image declares more pixels than max_pixels (decompression bomb guard)",
    "corrupt_image": "an image cannot be decoded (corrupt, truncated or not an image)",
    "missing_sidecar": "an image has no caption/annotation sidecar (or a sidecar has no image)",
    "invalid_json": "a JSON line or JSON sidecar does not parse",
    "bad_utf8": "a text file or field is not valid UTF-8",
    "truncated_tar": "a tar shard ends inside a member or cannot be read",
    "invalid_record": "a record lacks a required field or has one of the wrong type",
    "image_too_small": "an image's shorter side is below the reader's min_side (less than one encoder patch)",
}

_IMAGE_REASONS = {
    "missing": "missing_file",
    "empty": "empty_file",
    "too_large": "image_too_large",
    "corrupt": "corrupt_image",
}


class BadSampleError(ValueError):
    """One bad input sample.

    Attributes:
        source: where: a path, ``manifest.jsonl:17`` (file:line) or ``shard.tar:key.png``.
        reason: one of :data:`REASONS`.
        detail: what exactly was wrong.
    """

    def __init__(self, source: str, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown bad-sample reason {reason!r}; choose from {sorted(REASONS)}")
        self.source = source
        self.reason = reason
        self.detail = detail
        super().__init__(f"bad sample {source} [{reason}]: {detail}")

    def __reduce__(self):  # keep the three fields when crossing DataLoader worker processes
        return (type(self), (self.source, self.reason, self.detail))


def from_image_error(err: ImageLoadError) -> BadSampleError:
    """Translate :class:`arm_tokenizer.images.ImageLoadError` into a :class:`BadSampleError`."""
    return BadSampleError(err.source, _IMAGE_REASONS[err.reason], err.detail)


class TooManyBadSamplesError(RuntimeError):
    """More than ``max_skip_fraction`` of the samples seen were bad."""


class SkippedSampleWarning(UserWarning):
    """A bad sample was skipped (or a summary of skipped samples)."""


class ErrorPolicy:
    """Decides what happens to bad samples and keeps the counts.

    Readers call :meth:`ok` for every good sample and :meth:`skip` with the error for
    every bad one; :meth:`skip` raises in ``"raise"`` mode and when the skipped fraction
    is exceeded.
    """

    def __init__(
        self,
        on_error: Literal["raise", "skip"] = "skip",
        max_skip_fraction: float = 0.1,
        min_samples: int = 100,
        warn_first: int = 10,
        examples_per_reason: int = 5,
    ) -> None:
        """
        Args:
            on_error: ``"raise"`` stops at the first bad sample; ``"skip"`` skips it with
                a counted, rate-limited warning.
            max_skip_fraction: fail once more than this fraction of the samples seen were
                skipped (checked only after ``min_samples`` samples). ``1.0`` never fails.
            min_samples: samples to see before the fraction is checked, so that two bad
                files among the first ten do not end a run.
            warn_first: how many skips get an individual warning before warnings are
                only emitted as summaries at power-of-two counts.
            examples_per_reason: how many file names per reason the summary keeps.
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip'; got {on_error!r}")
        if not 0.0 <= max_skip_fraction <= 1.0:
            raise ValueError(f"max_skip_fraction must be within [0, 1]; got {max_skip_fraction}")
        if min_samples < 0 or warn_first < 0 or examples_per_reason < 0:
            raise ValueError("min_samples, warn_first and examples_per_reason must be >= 0")
        self.on_error = on_error
        self.max_skip_fraction = float(max_skip_fraction)
        self.min_samples = int(min_samples)
        self.warn_first = int(warn_first)
        self.examples_per_reason = int(examples_per_reason)
        self.reset()

    def reset(self) -> None:
        """Forget all counts."""
        self.num_ok = 0
        self.num_skipped = 0
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    @property
    def num_seen(self) -> int:
        """Good plus skipped samples."""
        return self.num_ok + self.num_skipped

    @property
    def skip_fraction(self) -> float:
        """Skipped / seen (0 before anything was seen)."""
        return self.num_skipped / self.num_seen if self.num_seen else 0.0

    def ok(self, n: int = 1) -> None:
        """Count ``n`` good samples."""
        self.num_ok += n
        self._check_fraction()

    def skip(self, err: BadSampleError, was_ok: bool = False) -> None:
        """Handle one bad sample: raise it (``on_error="raise"``) or count and warn.

        Args:
            err: what was wrong, and where.
            was_ok: the sample was already counted good by an earlier check (e.g. its
                index entry was fine, now its image fails to decode): it moves from good
                to skipped, so each sample counts once.

        Raises:
            BadSampleError: in ``"raise"`` mode.
            TooManyBadSamplesError: when the skipped fraction is exceeded.
        """
        if self.on_error == "raise":
            raise err
        if was_ok and self.num_ok > 0:
            self.num_ok -= 1
        self.num_skipped += 1
        self.counts[err.reason] += 1
        ex = self.examples.setdefault(err.reason, [])
        if len(ex) < self.examples_per_reason:
            ex.append(f"{err.source}: {err.detail}")
        n = self.num_skipped
        if n <= self.warn_first:
            warnings.warn(
                f"skipped bad sample {err.source} [{err.reason}]: {err.detail} "
                f"({n} skipped of {self.num_seen} seen)",
                SkippedSampleWarning, stacklevel=2,
            )
        elif n & (n - 1) == 0:  # power of two: a summary, so warnings stay logarithmic
            warnings.warn(
                f"{n} bad samples skipped so far; latest {err.source} [{err.reason}]. {self.summary()}",
                SkippedSampleWarning, stacklevel=2,
            )
        self._check_fraction()

    def _check_fraction(self) -> None:
        if self.num_skipped == 0 or self.num_seen < max(self.min_samples, 1):
            return
        if self.skip_fraction > self.max_skip_fraction:
            raise TooManyBadSamplesError(
                f"{self.num_skipped} of {self.num_seen} samples were bad "
                f"({self.skip_fraction:.1%} > max_skip_fraction={self.max_skip_fraction:.1%}); "
                f"fix the data or raise max_skip_fraction. {self.summary()}"
            )

    def summary(self) -> str:
        """Counts per reason and the first files of each reason, as one readable string."""
        if not self.num_skipped:
            return f"no bad samples among {self.num_seen} seen."
        lines = [f"skipped {self.num_skipped} of {self.num_seen} samples:"]
        for reason, count in self.counts.most_common():
            lines.append(f"  {reason} ({REASONS[reason]}): {count}")
            for example in self.examples.get(reason, []):
                lines.append(f"    e.g. {example}")
        return "\n".join(lines)

    def state(self) -> dict[str, object]:
        """The counts as plain data (for logging)."""
        return {
            "ok": self.num_ok,
            "skipped": self.num_skipped,
            "by_reason": dict(self.counts),
            "examples": {k: list(v) for k, v in self.examples.items()},
        }

    def __repr__(self) -> str:
        return (
            f"ErrorPolicy(on_error={self.on_error!r}, max_skip_fraction={self.max_skip_fraction}, "
            f"min_samples={self.min_samples}, ok={self.num_ok}, skipped={self.num_skipped})"
        )
