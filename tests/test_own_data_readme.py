"""README "Your own data", run as written: photos with captions -> tokenizer -> shards -> LM ->
generate, edit, answer -> evaluate.

The section's ```bash blocks are read out of README.md and run line by line with ``bash``
in a temporary directory (``configs`` linked in, so the relative paths resolve as in a
checkout). The only substitution is the environment the README asks the user to set:

    SIGLIP2  a SigLIP2 checkpoint directory: a tiny random one (arm_tokenizer.testing.hf_tiny)
    QWEN     a Qwen2.5 causal-LM directory: a tiny random Qwen2 (arm_tokenizer.testing.hf_tiny_lm)
    PHOTOS   photos with .txt captions: scikit-image's sample photographs (non-square,
             grayscale and RGBA among them) with captions written here
    VQA      a JSONL of questions about those photos
    EDITS    edit triplets (source, target, instruction) made from those photos
    LABELS   {photo: class}, for the tokenizer's zero-shot accuracy

Every command must exit 0; then the outputs are checked for format (the generated PNG at the
size its token grid gives, the edit PNG, the answer line, the evaluation JSONs' figures). The models are
tiny and trained for a few steps, so nothing here measures quality.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BIN, ROOT
from PIL import Image

README = ROOT / "README.md"
SECTION = "## Your own data"

skdata = pytest.importorskip("skimage.data")
pytest.importorskip("transformers")

# scikit-image sample -> (caption, question, answer, label); camera and coins are grayscale,
# logo RGBA, coffee / chelsea / rocket / coins wider than tall
PHOTOS = {
    "astronaut": ("an astronaut in a white suit in front of a flag", "who is in the picture?", "an astronaut",
                  "person"),
    "camera": ("a man with a camera on a tripod in a field", "what is on the tripod?", "a camera", "person"),
    "coffee": ("a cup of coffee on a saucer with a spoon", "what is in the cup?", "coffee", "cup"),
    "chelsea": ("an orange tabby cat looking to the side", "what animal is this?", "a cat", "cat"),
    "rocket": ("a rocket on its launch pad under a blue sky", "what color is the sky?", "blue", "rocket"),
    "logo": ("a colorful snake logo on a white background", "what animal is in the logo?", "a snake", "logo"),
    "coins": ("old coins laid out in rows", "what is laid out in rows?", "coins", "coin"),
    "immunohistochemistry": ("stained tissue seen through a microscope", "what is stained?", "tissue", "tissue"),
}
# what each README step must contain (so the section cannot lose one unnoticed)
STEPS = ["arm-tokenizer fit", "arm-tokenizer evaluate", "arm-data pretokenize", "arm-data train-text-tokenizer",
         "arm-lm fit", "arm-lm generate t2i", "arm-lm generate edit", "arm-lm generate understand", "arm-lm evaluate"]
# edit instruction -> how the target is made from the source (real pixel edits)
EDITS = {
    "flip the picture left to right": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "make it black and white": lambda im: im.convert("L").convert("RGB"),
}


def section_commands(text: str) -> list[str]:
    """The shell commands of the README section: its ```bash blocks, one command per
    logical line (backslash continuations joined; comment lines dropped), in order."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    body = text[start:end if end >= 0 else None]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


def write_user_data(root: Path) -> dict[str, str]:
    """The user's side: checkpoints and data, returned as the README's environment."""
    from arm_tokenizer.testing.hf_tiny import build_tiny_dual_encoder
    from arm_tokenizer.testing.hf_tiny_lm import build_tiny_qwen2

    siglip2 = build_tiny_dual_encoder(root / "siglip2", "siglip2")
    qwen = build_tiny_qwen2(root / "qwen2.5")
    photos, edits = root / "photos", root / "edits"
    photos.mkdir()
    edits.mkdir()
    questions = []
    for name, (caption, question, answer, _) in PHOTOS.items():
        img = Image.fromarray(getattr(skdata, name)())
        img.thumbnail((96, 96))  # small files; aspect ratio and mode kept
        img.save(photos / f"{name}.png")
        (photos / f"{name}.txt").write_text(caption + "\n")
        questions.append({"image": f"photos/{name}.png", "question": question, "answer": answer})
    for i, name in enumerate(PHOTOS):
        instruction, edit = list(EDITS.items())[i % len(EDITS)]
        src = Image.open(photos / f"{name}.png").convert("RGB")
        src.save(edits / f"{i:04d}.source.png")
        edit(src).save(edits / f"{i:04d}.target.png")
        (edits / f"{i:04d}.txt").write_text(instruction + "\n")
    vqa, labels = root / "vqa.jsonl", root / "labels.json"
    vqa.write_text("".join(json.dumps(q) + "\n" for q in questions))
    labels.write_text(json.dumps({name: v[3] for name, v in PHOTOS.items()}))
    return {"SIGLIP2": str(siglip2), "QWEN": str(qwen), "PHOTOS": str(photos), "VQA": str(vqa),
            "EDITS": str(edits), "LABELS": str(labels)}


def test_your_own_data_readme_runs(tmp_path):
    commands = section_commands(README.read_text())
    for step in STEPS:
        assert any(c.startswith(step + " ") for c in commands), f"README {SECTION!r} lost its {step!r} step"
    user = write_user_data(tmp_path / "user")
    work = tmp_path / "work"
    work.mkdir()
    (work / "configs").symlink_to(ROOT / "configs")
    env = {**os.environ, **user, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           # the README's commands as a user's shell finds them: the venv's console scripts
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = []
    for cmd in commands:
        t0 = time.perf_counter()
        proc = subprocess.run(["bash", "-eo", "pipefail", "-c", cmd], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
        log.append((cmd, proc, time.perf_counter() - t0))
        assert proc.returncode == 0, (f"README command failed ({proc.returncode}): {cmd}\n"
                                      f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-6000:]}")
    print("\n".join(f"{dt:6.1f} s  {shlex.split(c)[0]} {' '.join(shlex.split(c)[1:3])}" for c, _, dt in log),
          file=sys.stderr)
    check_outputs(work, {c: p.stdout for c, p, _ in log})


def _json(path: Path) -> dict:
    assert path.is_file(), f"{path} was not written"
    return json.loads(path.read_text())


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def check_outputs(work: Path, stdout: dict[str, str]) -> None:
    """The files and figures the README says each step gives, in their formats."""
    own = work / "runs" / "own"
    # the tokenizer: a self-contained export with the SigLIP head L_sig trained
    assert {"config.json", "model.safetensors", "siglip_head.json"} <= {p.name for p in (own / "tokenizer").iterdir()}
    ev = _json(own / "tokenizer-eval.json")
    fig = ev["figures"]
    assert ev["n"] == len(PHOTOS) and ev["skipped"] == 0
    for key in ("psnr", "ssim", "codebook_usage", "codebook_entropy_bits", "zero_shot_top1", "zero_shot_top5",
                "retrieval_i2t_r1", "retrieval_i2t_r5", "retrieval_t2i_r1", "retrieval_t2i_r5"):
        assert _finite(fig[key]), (key, fig[key])
    assert 0 < fig["codebook_usage"] <= 1 and 0 <= fig["zero_shot_top1"] <= fig["zero_shot_top5"] <= 1
    assert ev["settings"]["grid"] == [4, 4] and ev["codebook"]["codebook_size"] == 1000
    for key in ("lpips", "rfid"):  # no weights on disk here: null with the reason
        assert fig[key] is not None or ev["reasons"][key]
    with Image.open(own / "reconstructions.png") as grid:
        assert grid.width > grid.height  # originals over reconstructions, side by side
    # shards: three sources with their tasks, and the text tokenizer beside them
    manifest = _json(own / "tokens" / "manifest.json")
    text = json.dumps(manifest)
    for task in ("pair", "vqa", "edit"):
        assert f'"{task}"' in text, f"manifest names no {task} source"
    assert (own / "tokens" / "text_tokenizer.model").is_file()
    assert {"config.json", "model.safetensors"} <= {p.name for p in (own / "lm").iterdir()}
    # generation: a 4x6-token picture of 8-px patches is 48 x 32 px; the edit keeps the 4x4 grid
    drawn = sorted((own / "drawn").glob("*.png"))
    assert len(drawn) == 1
    with Image.open(drawn[0]) as im:
        assert (im.size, im.mode) == ((48, 32), "RGB")
    edited = sorted((own / "edited").glob("*.png"))
    assert len(edited) == 1
    with Image.open(edited[0]) as im:
        assert (im.size, im.mode) == ((32, 32), "RGB")
    answer = next(out for cmd, out in stdout.items() if cmd.startswith("arm-lm generate understand"))
    assert re.search(r"^Q: what animal is this\?\nA: .*$", answer, flags=re.M), answer
    # the LM's figures: loss per task, VQA exact match over every question, T2I alignment per prompt
    m = _json(own / "lm-eval.json")
    assert set(m["loss"]) == {"t2i", "und", "edit"} and all(_finite(r["loss"]) for r in m["loss"].values())
    assert m["vqa"]["n"] == len(PHOTOS) and 0 <= m["vqa"]["accuracy"] <= 1
    t2i = m["t2i"]["cfg=1"]
    assert t2i["n"] == len(PHOTOS) and -1 <= t2i["cosine"] <= 1 and 0 <= t2i["siglip_prob"] <= 1
    assert "HFVisionEncoder" in m["settings"]["scorer"] and "HFTextEncoder" in m["settings"]["scorer"]
