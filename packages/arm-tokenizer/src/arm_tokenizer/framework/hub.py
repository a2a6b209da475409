"""Fail fast, in one line, when pretrained weights are neither on disk nor reachable.

huggingface_hub retries an unreachable hub with back-off (about 30 s per file here, 60 s
for a timm model), then raises a generic message. Our components know what they need and
how a user passes a local copy, so before any download they ask this module:

- :func:`hub_offline`: is ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set? Read from
  the environment at each call, since huggingface_hub reads it only once, at import.
- :func:`hub_unreachable_reason`: ``None`` when the hub answers a TCP connect within a few
  seconds; otherwise why not (offline mode, or the connect error). Cached per process.

Nothing here downloads anything.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from urllib.parse import urlparse

__all__ = ["HubUnavailableError", "hub_offline", "hub_endpoint", "hub_unreachable_reason", "looks_like_path",
           "missing_checkpoint_error", "timm_cached_weights"]

_TRUE = {"1", "true", "yes", "on"}
_PROBE: dict[str, str | None] = {}


class HubUnavailableError(OSError):
    """Pretrained weights are not on this machine and the hub cannot be reached."""


def hub_offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``
    in the environment, or huggingface_hub's own flag where it is already imported)."""
    if any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    constants = sys.modules.get("huggingface_hub.constants")  # never imported just for this
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _connect_error(host: str, port: int, timeout: float) -> str | None:
    """Why a TCP connect to ``host:port`` failed, or None. Run in a thread and joined with
    ``timeout``: a socket timeout does not bound the name lookup before it."""
    result: list[str | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as exc:
            result.append(exc.strerror or type(exc).__name__)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return result[0] if result else f"no answer within {timeout:g} s"


def hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be used now, or ``None`` when a TCP connect to it succeeds."""
    if hub_offline():
        return "HF_HUB_OFFLINE=1 is set"
    endpoint = hub_endpoint()
    if endpoint not in _PROBE:
        url = urlparse(endpoint)
        host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
        # A plain connect, no request: tells "no network" from "slow network" in <= timeout.
        error = _connect_error(host, port, timeout)
        _PROBE[endpoint] = None if error is None else f"cannot reach {endpoint} ({error})"
    return _PROBE[endpoint]


def looks_like_path(name_or_path: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else names a local path."""
    return (name_or_path.startswith(("/", "./", "../", "~", "."))
            or name_or_path.count("/") > 1 or os.path.exists(os.path.expanduser(name_or_path)))


def missing_checkpoint_error(component: str, name_or_path: str, reason: str,
                             what: str = "config.json and weights") -> HubUnavailableError:
    """The one line for a transformers checkpoint that is neither on disk nor reachable."""
    return HubUnavailableError(
        f"{component}: {name_or_path!r} is not a local directory and its {what} are not in the local "
        f"Hugging Face cache, and {reason}; pass name_or_path=/path/to/a/local/copy (a directory with "
        f"config.json and model.safetensors, e.g. from `hf download {name_or_path} --local-dir DIR` on a "
        "machine with internet)"
    )


def timm_cached_weights(model_name: str) -> str | None:
    """The cached weight file of timm's pretrained ``model_name`` on the Hugging Face hub:
    its local path, ``""`` when the tag is on the hub but not cached here, or ``None``
    when it is not a hub tag (timm then downloads from a URL; let timm try)."""
    # deferred: timm and huggingface_hub are slow imports, needed only for a timm model
    import timm
    from huggingface_hub import try_to_load_from_cache

    try:
        cfg = timm.models.get_pretrained_cfg(model_name)
    except Exception:  # unknown names are reported by timm.create_model itself
        return None
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    repo, _, revision = repo.partition("@")
    files = [getattr(cfg, "hf_hub_filename", None), "model.safetensors", "open_clip_model.safetensors",
             "pytorch_model.bin", "open_clip_pytorch_model.bin"]
    for f in filter(None, files):
        hit = try_to_load_from_cache(repo, f, revision=revision or None)
        if isinstance(hit, str):
            return hit
    return ""
