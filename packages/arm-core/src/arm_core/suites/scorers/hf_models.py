"""Loading the transformers models that scorers wrap: lazily, offline-aware, with one-line errors.

Both model-backed scorers (``siglip_score``, ``vlm_judge``) load a checkpoint with
``AutoProcessor`` and an ``Auto*`` model class from ``name_or_path`` (a local
``save_pretrained`` directory or a Hub id already in the local cache). What this module
adds to ``from_pretrained``:

- **offline first**: with ``HF_HUB_OFFLINE`` set (``1``/``true``/``yes``/``on``), or
  ``local_files_only=True``, nothing is downloaded and a model that is neither a local
  directory nor cached is one line naming the scorer and the model, not a stack of
  connection retries;
- **one-line errors**: every failure (transformers missing, a directory without
  ``config.json``, a model class that does not fit the checkpoint) is a
  :class:`~arm_core.suites.scorers.base.ScorerError` naming the scorer and ``name_or_path``;
- **dtype and device** chosen by the scorer's own options (its memory is where it says,
  never on the policy's device unless asked), the weights frozen and in eval mode;
- :func:`param_bytes`: the memory the weights take, for scorers to state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from arm_tokenizer.framework.hub import hub_offline  # re-exported: the library's one offline test

from arm_core.suites.scorers.base import ScorerError

__all__ = ["DTYPES", "hub_offline", "parse_dtype", "load_model_and_processor", "param_bytes", "format_bytes"]

#: dtype option values -> torch dtypes ("auto" keeps the checkpoint's own dtype).
DTYPES: dict[str, torch.dtype | None] = {"float32": torch.float32, "bfloat16": torch.bfloat16,
                                         "float16": torch.float16, "auto": None}


def parse_dtype(dtype: str, scorer: str) -> torch.dtype | None:
    """The torch dtype of a ``dtype`` option, or a :class:`ScorerError` listing the choices."""
    if dtype not in DTYPES:
        raise ScorerError(f"scorer {scorer!r}: dtype {dtype!r} is not one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def load_model_and_processor(name_or_path: str, model_class: str, scorer: str, *,
                             dtype: str = "float32", device: str = "cpu",
                             local_files_only: bool | None = None) -> tuple[Any, Any]:
    """``(model, processor)`` from ``name_or_path``, frozen, in eval mode, on ``device``.

    Args:
        name_or_path: a local ``save_pretrained`` directory or a Hub model id.
        model_class: the transformers class to load with (``AutoModel``,
            ``AutoModelForImageTextToText``, ...).
        scorer: the scorer's name, for error messages.
        dtype: a key of :data:`DTYPES`.
        device: where the model goes.
        local_files_only: never download; None = only when :func:`hub_offline`.
    """
    torch_dtype = parse_dtype(dtype, scorer)
    try:  # deferred: transformers is the optional [hf] extra, imported when a model loads
        import transformers
    except ImportError as exc:
        raise ScorerError(f"scorer {scorer!r} needs transformers: pip install 'arm-core[hf]' "
                          f"({_first_line(exc)})") from exc
    local = Path(name_or_path).expanduser()
    is_dir = local.is_dir()
    if is_dir and not (local / "config.json").is_file():
        raise ScorerError(f"scorer {scorer!r}: {local} has no config.json; give a directory written "
                          "by save_pretrained, or a Hub model id")
    # a Hub id is "name" or "org/name"; anything else that is not a directory is a wrong path
    if not is_dir and (name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1):
        raise ScorerError(f"scorer {scorer!r}: model directory {name_or_path} does not exist")
    offline = hub_offline() if local_files_only is None else bool(local_files_only)
    where = str(local) if is_dir else name_or_path
    kwargs: dict[str, Any] = {"local_files_only": offline or is_dir}
    try:
        processor = transformers.AutoProcessor.from_pretrained(where, **kwargs)
        cls = getattr(transformers, model_class)
        model = cls.from_pretrained(where, dtype=torch_dtype if torch_dtype is not None else "auto", **kwargs)
    except (OSError, ValueError, KeyError, TypeError, ImportError, AttributeError, RuntimeError) as exc:
        if offline and not is_dir:
            raise ScorerError(f"scorer {scorer!r}: model {name_or_path!r} is not a local directory and "
                              "not in the Hugging Face cache, and HF_HUB_OFFLINE forbids downloading it: "
                              "give a local save_pretrained directory") from exc
        raise ScorerError(f"scorer {scorer!r}: cannot load {where!r} with {model_class}: "
                          f"{type(exc).__name__}: {_first_line(exc)}") from exc
    try:
        model = model.to(torch.device(device))
    except (RuntimeError, AssertionError) as exc:     # e.g. cuda:1 on a one-GPU machine
        raise ScorerError(f"scorer {scorer!r}: cannot put {where!r} on device {device!r}: "
                          f"{_first_line(exc)}") from exc
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, processor


def param_bytes(model: torch.nn.Module) -> int:
    """Bytes the model's parameters and buffers take (the weights' share of its memory)."""
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))


def format_bytes(n: float) -> str:
    """``1.2 GB`` style (decimal units, as GPU memory is usually quoted)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"
