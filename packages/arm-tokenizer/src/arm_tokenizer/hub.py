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
from urllib.parse import urlparse

__all__ = ["HubUnavailableError", "hub_offline", "hub_endpoint", "hub_unreachable_reason", "timm_cached_weights"]

_TRUE = {"1", "true", "yes", "on"}
_PROBE: dict[str, str | None] = {}


class HubUnavailableError(OSError):
    """Pretrained weights are not on this machine and the hub cannot be reached."""


def hub_offline() -> bool:
    """True when the user asked for offline mode (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def hub_unreachable_reason(timeout: float = 3.0) -> str | None:
    """Why the hub cannot be used now, or ``None`` when a TCP connect to it succeeds."""
    if hub_offline():
        return "HF_HUB_OFFLINE=1 is set"
    endpoint = hub_endpoint()
    if endpoint not in _PROBE:
        url = urlparse(endpoint)
        host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
        try:
            # A plain connect, no request: tells "no network" from "slow network" in <= timeout.
            with socket.create_connection((host, port), timeout=timeout):
                _PROBE[endpoint] = None
        except OSError as exc:
            _PROBE[endpoint] = f"cannot reach {endpoint} ({exc.strerror or type(exc).__name__})"
    return _PROBE[endpoint]


def timm_cached_weights(model_name: str) -> str | None:
    """The cached weight file of timm's pretrained ``model_name`` on the Hugging Face hub:
    its local path, ``""`` when the tag is on the hub but not cached here, or ``None``
    when it is not a hub tag (timm then downloads from a URL; let timm try)."""
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
