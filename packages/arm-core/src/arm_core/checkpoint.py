"""Self-contained LM checkpoints: one directory that pipelines, evaluation and RL load.

A Lightning ``.ckpt`` is for *resuming* (optimizer, scheduler, loops, data state, RNG). What
users load to *run* the model is an exported directory, written by :func:`save_lm` (the
training module does it at fit end)::

    lm/
      model.safetensors        weights of the LM (shared tensors stored once)
      config.json              {"format": "arm-lm", "lm": "gpt", "model": Config, "vocab": VocabLayout,
                                "text_tokenizer": "text_tokenizer.model",
                                "visual_tokenizer": {"path", "relative_path", "codebook_size"},
                                "versions": {...}, "metadata": {...}}
      text_tokenizer.model     the sentencepiece model the text ids come from (copied), or
                               text_tokenizer.json for a HF tokenizer (an LM from Qwen2.5)

``lm`` is the registered name (registry kind ``lm``, entry-point group ``arm.lms``) of the
LM class, so :func:`load_lm` rebuilds the same class: the built-in ``gpt``
(:class:`arm_core.model.GPT`) or a plugin's. Exports written before the field existed have
no ``lm`` and load as ``gpt``.

The visual tokenizer is *referenced*, not copied (it is large and shared with arm-data's
pre-tokenization); the reference keeps both the absolute path and the path relative to the
checkpoint, so a directory tree moved as a whole still resolves. :func:`load_lm` checks the
three vocabularies agree (LM config, layout, visual tokenizer codebook) and says what to
change when they do not.

Writes are atomic at the directory level: everything goes into a temporary sibling
directory, which then replaces the target with ``os.replace`` (an old export is moved aside
first and removed after), so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from arm_data.text_tokenizer import TextTokenizer
from arm_data.vocab import VocabLayout
from arm_tokenizer.framework.checkpoint import CheckpointError, make_temp_dir, new_file_mode
from arm_tokenizer.tokenizer import VisualTokenizer
from safetensors.torch import load_file, save_file

from arm_core.config import Config
from arm_core.model import DEFAULT_LM, GPT, LM_KIND, lm_name_of, resolve_lm, rope_inv_freq

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointError",  # arm_tokenizer's: one error class for LM and tokenizer checkpoints
    "LMCheckpoint",
    "save_lm",
    "load_lm",
    "read_lm_config",
    "resolve_visual_tokenizer",
]

FORMAT = "arm-lm"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TEXT_TOKENIZER_NAME = "text_tokenizer.model"
HF_TEXT_TOKENIZER_NAME = "text_tokenizer.json"


@dataclass
class LMCheckpoint:
    """What :func:`load_lm` returns.

    model: the LM (``arm_core.model.GPT`` or the registered class ``lm_name`` names) in eval
        mode on the requested device.
    config: its :class:`~arm_core.config.Config`.
    layout: the ``arm_data.vocab.VocabLayout`` it was trained with (None for a text-only LM).
    text_tokenizer_path: the copied sentencepiece model, or None.
    visual_tokenizer_dir: the referenced visual tokenizer directory if it exists, else None.
    directory: the checkpoint directory.
    metadata: free-form training metadata saved with it (steps, data, ...).
    lm_name: the registered name of the model's class (kind ``lm``; ``gpt`` by default).
    """

    model: torch.nn.Module
    config: Config
    layout: Any | None
    text_tokenizer_path: Path | None
    visual_tokenizer_dir: Path | None
    directory: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    lm_name: str = "gpt"

    def load_text_tokenizer(self) -> Any:
        """The ``arm_data.text_tokenizer.TextTokenizer`` saved with the checkpoint."""
        if self.text_tokenizer_path is None:
            raise CheckpointError(f"{self.directory}: this checkpoint has no text tokenizer; "
                                  "export it with save_lm(..., text_tokenizer=PATH)")

        return TextTokenizer.load(self.text_tokenizer_path)

    def load_visual_tokenizer(self, tokenizer_dir: str | os.PathLike | None = None,
                              device: str | torch.device = "cpu") -> Any:
        """The ``arm_tokenizer`` ``VisualTokenizer``: ``tokenizer_dir`` or the referenced one.

        Its codebook size must match the LM's image block.
        """
        path = Path(tokenizer_dir) if tokenizer_dir is not None else self.visual_tokenizer_dir
        if path is None:
            raise CheckpointError(
                f"{self.directory}: no visual tokenizer found (the referenced directory does not "
                "exist or none was recorded); pass tokenizer_dir=... / --tokenizer DIR")
        tok = VisualTokenizer.from_pretrained(path).to(device).eval()
        if self.config.image_codebook_size and tok.codebook_size != self.config.image_codebook_size:
            raise CheckpointError(
                f"visual tokenizer {path} has {tok.codebook_size} codes but the LM in "
                f"{self.directory} was trained on {self.config.image_codebook_size}; use the "
                "tokenizer the LM's data was pre-tokenized with")
        return tok


def _versions() -> dict[str, str]:
    out = {"torch": torch.__version__}
    for dist in ("arm-core", "arm-data", "arm-tokenizer"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _unique_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Drop tensors sharing storage with an earlier key (tied embeddings); return the aliases.

    safetensors refuses shared tensors; we store each once and re-tie on load.
    """
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        unique[name] = t.detach().to("cpu").contiguous()
    return unique, aliases


def save_lm(
    directory: str | os.PathLike,
    model: torch.nn.Module | dict[str, torch.Tensor],
    config: Config,
    layout: Any | None = None,
    text_tokenizer: str | os.PathLike | None = None,
    visual_tokenizer_dir: str | os.PathLike | None = None,
    metadata: dict[str, Any] | None = None,
    lm: str | None = None,
) -> Path:
    """Write a self-contained LM checkpoint directory atomically; returns its path.

    Args:
        directory: target directory (replaced if it exists).
        model: the LM module or its state dict.
        config: the model's Config (its vocabulary must agree with ``layout``).
        layout: the ``VocabLayout`` (or its dict) used to build the training sequences.
        text_tokenizer: path of the sentencepiece ``.model`` file or HF ``tokenizer.json``
            (or a directory holding one); copied into the checkpoint.
        visual_tokenizer_dir: the visual tokenizer the image codes come from (referenced).
        metadata: JSON-able extra information (training steps, data, metrics).
        lm: the registered name (kind ``lm``) of the model's class, recorded so
            :func:`load_lm` rebuilds that class; None: looked up from ``model``'s class
            (``gpt`` for a state dict).
    """
    directory = Path(directory)
    lm_name = _lm_name_for_save(model, lm, directory)
    state = model.state_dict() if isinstance(model, torch.nn.Module) else dict(model)
    layout_dict = None
    if layout is not None:
        layout_dict = layout if isinstance(layout, dict) else layout.to_dict()
        _check_config_layout(config, layout_dict, where=str(directory))
    tok_src = _find_text_tokenizer(text_tokenizer) if text_tokenizer is not None else None
    vis = None
    if visual_tokenizer_dir is not None:
        vdir = Path(visual_tokenizer_dir).resolve()
        vis = {"path": str(vdir), "relative_path": os.path.relpath(vdir, directory.resolve()),
               "codebook_size": config.image_codebook_size}
    unique, aliases = _unique_state_dict(state)
    cfg = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "lm": lm_name,
        "model": config.to_dict(),
        "vocab": layout_dict,
        "text_tokenizer": _text_tokenizer_name(tok_src) if tok_src is not None else None,
        "visual_tokenizer": vis,
        "tied_weights": aliases,
        "versions": _versions(),
        "metadata": metadata or {},
    }
    directory.parent.mkdir(parents=True, exist_ok=True)
    # umask permissions (mkdtemp alone would leave the renamed export 0700)
    tmp = make_temp_dir(directory.parent, prefix=f".{directory.name}.tmp-")
    try:
        save_file(unique, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        os.chmod(tmp / WEIGHTS_NAME, new_file_mode())  # safetensors creates its files 0600
        if tok_src is not None:
            shutil.copyfile(tok_src, tmp / _text_tokenizer_name(tok_src))
        (tmp / CONFIG_NAME).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
        old = None
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _lm_name_for_save(model: torch.nn.Module | dict[str, torch.Tensor], lm: str | None,
                      directory: Path) -> str:
    if lm is None:
        if not isinstance(model, torch.nn.Module):
            return DEFAULT_LM
        try:
            return lm_name_of(model)
        except ValueError as e:
            raise CheckpointError(f"save_lm({directory}): {e}") from None
    try:
        name, cls = resolve_lm(lm)
    except LookupError as e:      # the registry's unknown-name / duplicate errors
        raise CheckpointError(f"save_lm({directory}): lm={lm!r}: {e}") from None
    if isinstance(model, torch.nn.Module):
        own = type(getattr(model, "_orig_mod", model))
        if not issubclass(own, cls):
            raise CheckpointError(f"save_lm({directory}): lm={lm!r} is {cls.__module__}.{cls.__qualname__} "
                                  f"but the model is a {own.__module__}.{own.__qualname__}; pass the "
                                  "name its class is registered under")
    return name


def _text_tokenizer_name(src: Path) -> str:
    return HF_TEXT_TOKENIZER_NAME if src.suffix == ".json" else TEXT_TOKENIZER_NAME


def _find_text_tokenizer(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        models = sorted(p.glob("*.model"))
        if not models and (p / "tokenizer.json").is_file():
            models = [p / "tokenizer.json"]             # a HF model directory
        if len(models) != 1:
            raise CheckpointError(f"text tokenizer directory {p} must hold exactly one *.model "
                                  f"file (or a HF tokenizer.json), found {[m.name for m in models]}; "
                                  "pass the file itself")
        p = models[0]
    if not p.is_file():
        raise CheckpointError(f"text tokenizer model not found: {p}")
    return p


def _check_config_layout(config: Config, layout: dict[str, Any], where: str) -> None:
    """The LM's vocabulary numbers must be those of the layout."""
    pairs = [("vocab_size", config.vocab_size, layout["total_size"]),
             ("image_offset", config.image_offset, layout["image_offset"]),
             ("image_codebook_size", config.image_codebook_size, layout["codebook_size"])]
    bad = [f"{k}: model {a} vs layout {b}" for k, a, b in pairs if a != b]
    if bad:
        raise CheckpointError(
            f"{where}: the model's vocabulary does not match the VocabLayout ({'; '.join(bad)}); "
            "build the Config with Config.with_vocab(layout.total_size, layout.image_offset, "
            "layout.codebook_size)")


def read_lm_config(directory: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``config.json`` of an exported LM (validated format marker)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"LM checkpoint directory not found: {directory}")
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.is_file() or not (directory / WEIGHTS_NAME).is_file():
        have = sorted(p.name for p in directory.iterdir())
        hint = ""
        if any(n.endswith(".ckpt") for n in have):
            hint = (" (this looks like a Lightning checkpoint folder: export one with "
                    "`arm_core.lightning_module.LMTrainer.export(...)` or point at the export dir)")
        raise CheckpointError(f"{directory} is not an ARM LM checkpoint: it needs {CONFIG_NAME} and "
                              f"{WEIGHTS_NAME}, has {have}{hint}")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path}: invalid JSON ({e})") from e
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_path}: format is {cfg.get('format')!r}, expected {FORMAT!r} "
                              "(a visual tokenizer or HF directory? use the matching loader)")
    if cfg.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{cfg_path}: format_version {cfg['format_version']} is newer than "
                              f"this arm-core reads ({FORMAT_VERSION}); upgrade arm-core")
    return cfg


def resolve_visual_tokenizer(directory: str | os.PathLike, cfg: dict[str, Any]) -> Path | None:
    """The referenced visual tokenizer dir: relative to the checkpoint first, then absolute."""
    vis = cfg.get("visual_tokenizer")
    if not vis:
        return None
    cands = [Path(directory) / vis["relative_path"]] if vis.get("relative_path") else []
    cands.append(Path(vis["path"]))
    for cand in cands:
        if (cand / "config.json").is_file():
            return cand.resolve()
    return None


def load_lm(directory: str | os.PathLike, device: str | torch.device = "cpu",
            dtype: torch.dtype | None = None, expected_layout: Any | None = None) -> LMCheckpoint:
    """Load an exported LM directory (see the module docstring).

    Args:
        directory: written by :func:`save_lm`.
        device: where to put the model.
        dtype: cast floating weights to this dtype (default: as stored).
        expected_layout: a ``VocabLayout`` the caller's data uses; a different one is an
            error saying which numbers differ.
    """
    directory = Path(directory)
    cfg = read_lm_config(directory)
    config = Config.from_dict(cfg["model"])
    lm_name, lm_cls = _lm_class_for_load(directory, cfg)
    layout = None
    if cfg.get("vocab") is not None:
        layout = VocabLayout.from_dict(cfg["vocab"])
        _check_config_layout(config, layout.to_dict(), where=str(directory))
        if expected_layout is not None:
            expected_layout.check_compatible(layout, what=f"LM checkpoint {directory}")
    state = load_file(str(directory / WEIGHTS_NAME))
    for alias, src in (cfg.get("tied_weights") or {}).items():
        state[alias] = state[src]
    model = _build_loaded(lm_name, lm_cls, config, state, directory)
    model = model.to(device=device)
    if dtype is not None:
        model = model.to(dtype=dtype)
    model.eval()
    tok_name = cfg.get("text_tokenizer")
    tok_path = directory / tok_name if tok_name else None
    if tok_path is not None and not tok_path.is_file():
        raise CheckpointError(f"{directory}: config names text tokenizer {tok_name!r} but the file "
                              "is missing; re-export the checkpoint")
    return LMCheckpoint(model=model, config=config, layout=layout, text_tokenizer_path=tok_path,
                        visual_tokenizer_dir=resolve_visual_tokenizer(directory, cfg),
                        directory=directory, metadata=cfg.get("metadata") or {}, lm_name=lm_name)


def _lm_class_for_load(directory: Path, cfg: dict[str, Any]) -> tuple[str, type]:
    """The registered LM class the export names (``gpt`` for exports without ``lm``)."""
    name = cfg.get("lm") or DEFAULT_LM
    try:
        return resolve_lm(name)
    except LookupError as e:      # unknown name, or a plugin that failed to import
        raise CheckpointError(
            f"{directory}: the LM was exported as {LM_KIND} {name!r}, which cannot be loaded "
            f"here: {e} Install the package that registers it (entry point group 'arm.lms') or "
            "register it with ARM_EXTRA_COMPONENTS") from None


def _build_loaded(name: str, cls: type, config: Config, state: dict[str, torch.Tensor],
                  directory: Path) -> torch.nn.Module:
    """``cls(config)`` with the saved weights.

    Built on the meta device and assigned (no random init, no second copy); buffers that
    are not in the file (GPT's RoPE frequencies) are recomputed. A plugin class with other
    non-persistent buffers is built normally instead, so its constructor computes them."""
    with torch.device("meta"):
        model = cls(config)
    _check_shapes(model, state, directory, config)
    model.load_state_dict(state, strict=True, assign=True)
    if isinstance(model, GPT):
        # The RoPE frequencies are a non-persistent buffer (not in the file): recompute them.
        model.register_buffer("inv_freq", rope_inv_freq(config), persistent=False)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model = cls(config)
        model.load_state_dict(state, strict=True)
    return model


def _check_shapes(model: torch.nn.Module, state: dict[str, torch.Tensor], directory: Path,
                  config: Config) -> None:
    """Mismatched keys/shapes -> one error listing them (vocab size changes say so)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != expected[k])
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}")
    if unexpected:
        parts.append(f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    if wrong:
        parts.append("shape mismatch " + ", ".join(
            f"{k}: file {tuple(state[k].shape)} vs config {expected[k]}" for k in wrong[:5]))
    raise CheckpointError(
        f"{directory}: weights do not match config.json's model (vocab_size={config.vocab_size}, "
        f"n_embd={config.n_embd}, n_layer={config.n_layer}): {'; '.join(parts)}. The weights come "
        "from a different model or vocabulary size; re-export the checkpoint rather than editing "
        "config.json by hand")
