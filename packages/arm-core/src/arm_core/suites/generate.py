"""Generate a benchmark suite in its own layout: batched, seeded, resumable, on N devices.

``generate_suite`` reads the benchmark's prompt files through its :class:`~.base.Suite`,
plans fixed batches over the whole suite (``batch_size`` images a batch, whole prompts only,
batch ``b`` seeded ``seed + b``), and runs the pending batches through the pipelines'
batched CFG generation (:class:`~arm_core.pipelines.TextToImage` / ``Edit``: one engine call
per batch, all branches stacked; no per-prompt loop) inside Lightning's own predict loop
(:class:`SuiteGenerator`, ``Trainer.predict``), which shards the batches over devices
(``devices=N``: DDP with a distributed sampler). Because a batch's seed depends only on its
index in the plan, the images are the same whatever the device count and however often a
run was resumed.

Resumable: an item whose files all exist is skipped; files are written atomically.
``OUT/arm_suite_manifest.json`` records the model, tokenizer and settings that made the
images, the seed and batch row of every image, and the items skipped (edits whose input
image is missing or unreadable). A directory made by another model or other settings, or
holding files this tool did not write, is refused (:class:`~.base.SuiteError`); nothing is
overwritten.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from arm_tokenizer.framework.checkpoint import atomic_write_bytes

from arm_core.pipelines import Edit, TextToImage
from arm_core.suites.base import PromptItem, Skipped, Suite, SuiteError

__all__ = ["MANIFEST", "SUITES", "GenerationSettings", "SuiteGenerator", "generate_suite",
           "get_suite", "plan_batches", "model_fingerprint"]

MANIFEST = "arm_suite_manifest.json"
MANIFEST_FORMAT = "arm-suite-manifest/1"

#: ``--suite`` name -> ``module:Class``
SUITES: dict[str, str] = {
    "geneval": "arm_core.suites.geneval:GenEvalSuite",
    "dpg": "arm_core.suites.dpg:DPGSuite",
    "wise": "arm_core.suites.wise:WISESuite",
    "gedit": "arm_core.suites.gedit:GEditSuite",
    "imgedit": "arm_core.suites.imgedit:ImgEditSuite",
    "shapes": "arm_core.suites.shapes:ShapesSuite",
}


def get_suite(name: str, **kwargs: Any) -> Suite:
    """The suite ``name`` (one of :data:`SUITES`), constructed with ``kwargs``."""
    if name not in SUITES:
        raise SuiteError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}")
    module, _, cls = SUITES[name].partition(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


@dataclass
class GenerationSettings:
    """Sampling settings of a suite run (recorded in the manifest; a resumed run must match).

    Args:
        guidance_scale: T2I classifier-free guidance (ARM: 1.5), or the edit's text guidance.
        image_guidance_scale: the edit's image guidance (ARM: 1.25).
        temperature: sampling temperature (0 = greedy).
        top_k: keep the k most likely codes (None = all).
        top_p: nucleus sampling mass.
        seed: batch ``b`` of the plan is seeded ``seed + b``.
        batch_size: images per engine call (whole prompts: ``batch_size // samples`` prompts).
        grid: the token grid ``(h, w)`` of generated images, stated by shape tokens (None:
            the tokenizer's grid; edits: the source's).
    """

    guidance_scale: float = 1.5
    image_guidance_scale: float = 1.25
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 16
    grid: tuple[int, int] | None = None

    def identity(self) -> dict[str, Any]:
        """What decides the images (batch_size too: it decides the batches, so the seeds)."""
        d = asdict(self)
        d["grid"] = list(self.grid) if self.grid else None
        return d


def plan_batches(n_items: int, samples: int, batch_size: int) -> list[list[int]]:
    """Item indices per batch: whole prompts, at most ``batch_size`` images (at least one prompt)."""
    if batch_size < 1:
        raise SuiteError(f"batch_size must be >= 1, got {batch_size}")
    per = max(1, batch_size // samples)
    return [list(range(s, min(s + per, n_items))) for s in range(0, n_items, per)]


def _hash_file(h: Any, path: Path, chunk: int = 1 << 20) -> None:
    # Size plus the first and last MiB: enough to tell checkpoints apart without reading 15 GB.
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with path.open("rb") as f:
        h.update(f.read(chunk))
        if size > 2 * chunk:
            f.seek(size - chunk)
            h.update(f.read(chunk))


def model_fingerprint(directory: str | os.PathLike | None) -> str | None:
    """A short hash of an exported directory's files (names, sizes, first and last MiB)."""
    if directory is None:
        return None
    root = Path(directory)
    h = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for p in files:
        _hash_file(h, p)
    return h.hexdigest()[:16]


class _Batches(torch.utils.data.Dataset):
    """The pending batch indices of the plan (one dataset element = one engine call)."""

    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> int:
        return self.indices[i]


class SuiteGenerator(pl.LightningModule):
    """Lightning predict module: one ``predict_step`` generates and writes one planned batch.

    Args:
        pipeline: a ``TextToImage`` (T2I suites) or ``Edit`` (edit suites) pipeline.
        suite: the suite (its layout).
        items: the suite's prompts.
        batches: the plan (:func:`plan_batches`).
        out: the output directory.
        settings: the sampling settings.
    """

    def __init__(self, pipeline: Any, suite: Suite, items: list[PromptItem], batches: list[list[int]],
                 out: str | os.PathLike, settings: GenerationSettings) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.lm = pipeline.model  # submodules, so Lightning places them on each rank's device
        self.visual_tokenizer = pipeline.visual_tokenizer
        self.suite, self.items, self.batches = suite, items, batches
        self.out = Path(out)
        self.settings = settings

    def on_predict_start(self) -> None:
        self.pipeline.device = self.device  # decode_images moves codes to the pipeline's device

    def generate_batch(self, b: int) -> list[Any]:
        """The images of planned batch ``b`` (its prompts' samples, consecutive)."""
        s = self.settings
        items = [self.items[i] for i in self.batches[b]]
        n = self.suite.n_samples
        common = dict(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, seed=s.seed + b,
                      batch_size=len(items) * n, progress=False, grid=s.grid)
        if self.suite.task == "edit":
            sources = [it.load_source() for it in items for _ in range(n)]
            texts = [it.prompt for it in items for _ in range(n)]
            return self.pipeline(sources, texts, guidance_scale=s.guidance_scale,
                                 image_guidance_scale=s.image_guidance_scale, **common)
        return self.pipeline([it.prompt for it in items], guidance_scale=s.guidance_scale,
                             num_images_per_prompt=n, **common)

    def predict_step(self, batch: int, batch_idx: int = 0) -> list[str]:
        b = int(batch)
        images = self.generate_batch(b)
        n = self.suite.n_samples
        done = []
        for k, i in enumerate(self.batches[b]):
            self.suite.write(self.items[i], images[k * n:(k + 1) * n], self.out)
            done.append(self.items[i].item_id)
        return done


def _check_sources(suite: Suite, items: list[PromptItem]) -> tuple[list[PromptItem], list[Skipped]]:
    """Edit items whose input image reads; the others as counted skips."""
    if suite.task != "edit":
        return items, []
    ok, skipped = [], []
    for it in items:
        try:
            it.load_source()
        except SuiteError as exc:
            skipped.append(Skipped(it.item_id, it.where, str(exc)))
            continue
        ok.append(it)
    return ok, skipped


def _identity(suite: Suite, lm: Any, tokenizer: Any, model_id: str | None,
              settings: GenerationSettings) -> dict[str, Any]:
    return {"model": model_id or model_fingerprint(lm), "lm": None if lm is None else str(lm),
            "tokenizer": model_fingerprint(tokenizer), "suite": suite.settings(),
            "settings": settings.identity()}


def _check_out(out: Path, suite: Suite, items: list[PromptItem], identity: dict[str, Any]) -> dict | None:
    """The existing manifest when ``out`` may be resumed; raise when it must not be touched."""
    manifest = out / MANIFEST
    if manifest.exists():
        try:
            old = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SuiteError(f"{manifest}: unreadable manifest ({exc}); use a new --out") from exc
        diffs = [k for k in ("model", "tokenizer", "suite", "settings") if old.get(k) != identity[k]]
        if diffs:
            detail = "; ".join(f"{k}: {old.get(k)!r} there, {identity[k]!r} now" for k in diffs)
            raise SuiteError(f"{out} holds images of another run ({detail}). Nothing was overwritten; "
                             "use a new --out, or the same model and settings to resume")
        return old
    if out.exists() and any(out.iterdir()):
        written = [p for it in items for p in suite.outputs(it, out) if p.exists()]
        what = f"{len(written)} of this suite's output files" if written else "other files"
        raise SuiteError(f"{out} is not empty and has no {MANIFEST}: it holds {what} not written by "
                         "`arm-lm suite generate` (another model's images?). Nothing was overwritten; "
                         "use a new --out")
    return None


def generate_suite(suite: str | Suite, prompts: str | os.PathLike, out: str | os.PathLike, *,
                   lm: str | os.PathLike | None = None, tokenizer: str | os.PathLike | None = None,
                   pipeline: Any | None = None, model_id: str | None = None,
                   settings: GenerationSettings | None = None, samples: int | None = None,
                   method: str = "arm", images: str | os.PathLike | None = None,
                   devices: int | str = 1, accelerator: str = "auto", limit: int | None = None,
                   progress: bool = False) -> dict[str, Any]:
    """Generate ``suite`` from its prompt file(s) into ``out`` in its official layout.

    Args:
        suite: a suite name (:data:`SUITES`) or a :class:`Suite`.
        prompts: the benchmark's own prompt file (or folder, for DPG / WISE).
        out: output directory (resumed when its manifest matches).
        lm: exported LM directory (loaded unless ``pipeline`` is given).
        tokenizer: visual tokenizer directory (default: the one the LM references).
        pipeline: an already loaded ``TextToImage`` / ``Edit`` (then ``model_id`` names it).
        model_id: identity recorded for an in-memory ``pipeline``.
        settings: sampling settings (:class:`GenerationSettings`).
        samples: samples per prompt (suite default: GenEval / shapes 4, DPG 4, others 1).
        method: GEdit's ``<method>`` folder name.
        images: ImgEdit's image folder (default: the JSON's folder).
        devices, accelerator: Lightning's (``devices=N`` shards the batches over N devices).
        limit: only the first ``limit`` prompts (a quick look).
        progress: Lightning's progress bar.

    Returns the manifest (also written to ``out/arm_suite_manifest.json``).
    """
    settings = settings or GenerationSettings()
    if isinstance(suite, str):
        kw: dict[str, Any] = {"samples": samples, "method": method}
        if suite == "imgedit":
            kw["images"] = images
        suite = get_suite(suite, **kw)
    out = Path(out)
    items = suite.read(prompts)
    if limit is not None:
        items = items[:limit]
    items, skipped = _check_sources(suite, items)
    for s in skipped:
        print(f"skipped {s.item_id}: {s.reason}")
    if not items:
        raise SuiteError(f"{prompts}: no {suite.name} item can be generated ({len(skipped)} skipped)")
    if pipeline is None and lm is None:
        raise SuiteError("give lm=<exported LM dir> (or a loaded pipeline)")
    identity = _identity(suite, lm, tokenizer, model_id, settings)
    _check_out(out, suite, items, identity)
    if pipeline is None:
        cls = Edit if suite.task == "edit" else TextToImage
        pipeline = cls.from_pretrained(lm, tokenizer)
    batches = plan_batches(len(items), suite.n_samples, settings.batch_size)
    done_before = {it.item_id for it in items if suite.done(it, out)}
    pending = [b for b, idx in enumerate(batches) if any(items[i].item_id not in done_before for i in idx)]
    header = {"format": MANIFEST_FORMAT, **identity, "prompts": str(prompts), "status": "running"}
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    is_zero = True
    if pending:
        trainer = pl.Trainer(accelerator=accelerator, devices=devices, logger=False,
                             enable_checkpointing=False, enable_model_summary=False,
                             enable_progress_bar=progress)
        is_zero = trainer.is_global_zero
        if is_zero and not (out / MANIFEST).exists():
            atomic_write_bytes(out / MANIFEST, json.dumps(header, indent=1).encode())
        module = SuiteGenerator(pipeline, suite, items, batches, out, settings)
        loader = torch.utils.data.DataLoader(_Batches(pending), batch_size=None, shuffle=False)
        trainer.predict(module, loader, return_predictions=False)
        trainer.strategy.barrier()
    seconds = time.perf_counter() - t0
    generated = [it for b in pending for it in (items[i] for i in batches[b])
                 if it.item_id not in done_before]
    manifest = {**header, "status": "complete", "counts": {
        "items": len(items) + len(skipped), "generated": len(generated),
        "resumed_done": len(done_before), "skipped": len(skipped),
        "images": len(generated) * suite.n_samples},
        "seconds": round(seconds, 3),
        "images_per_s": round(len(generated) * suite.n_samples / seconds, 3) if generated else None,
        "skipped": [s.to_dict() for s in skipped],
        "images": {it.item_id: {"files": [str(p.relative_to(out)) for p in suite.outputs(it, out)],
                                "tag": it.tag, "batch": b,
                                "samples": [{"seed": settings.seed + b, "row": k * suite.n_samples + r}
                                            for r in range(suite.n_samples)]}
                   for b, idx in enumerate(batches) for k, it in ((k, items[i]) for k, i in enumerate(idx))}}
    if is_zero:
        atomic_write_bytes(out / MANIFEST, json.dumps(manifest, indent=1).encode())
    return manifest
