"""`make demo`'s small sibling end to end: every stage through the real CLIs and configs,
then the report and metrics are complete and in range; a re-run skips finished stages."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

# in the order the report shows them: the examples first, then the numbers
SECTIONS = ["Text to image", "Editing", "Visual question answering", "Tokenizer reconstructions",
            "Quality bars", "Training curves", "Stages", "Metrics", "Files"]
BARS = ["tokenizer_parse_back", "t2i_heldout", "t2i_seen", "vqa_heldout", "edit_adherence", "edit_consistency"]


def _demo(out, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), "--fast", "--threads", "1",
                           "--out", str(out), *extra], capture_output=True, text=True, env=env, timeout=1800)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    proc = _demo(out)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, proc


def test_every_stage_ran_and_summarized(demo_run):
    out, proc = demo_run
    for stage in ["teacher", "tokenizer", "eval_tokenizer", "tokens", "lm", "eval_sft", "rl", "eval_rl", "report"]:
        marker = json.loads((out / "stages" / f"{stage}.json").read_text())
        assert marker["seconds"] > 0 and marker["summary"]
        assert re.search(rf"\] {stage}: .+ \(\d+ s\)", proc.stdout), stage


def test_report_has_every_section_and_its_images(demo_run):
    out, _ = demo_run
    page = (out / "report.html").read_text()
    positions = [page.find(f"<h2>{section}") for section in SECTIONS]
    assert all(p >= 0 for p in positions), dict(zip(SECTIONS, positions, strict=False))
    assert positions == sorted(positions), dict(zip(SECTIONS, positions, strict=False))
    images = re.findall(r'src="(report/[^"]+)"', page)
    assert len(images) >= 6 * 4
    for rel in images:
        assert (out / rel).stat().st_size > 0, rel
    # the page opens with the overview picture, before any heading after the title or table
    assert images[0] == "report/overview.png"
    assert page.find("report/overview.png") < min(page.find("<h2>"), page.find("<table"))


def test_overview_picture(demo_run):
    from PIL import Image

    out, _ = demo_run
    with Image.open(out / "report" / "overview.png") as im:
        im.verify()
    with Image.open(out / "report" / "overview.png") as im:
        assert im.format == "PNG" and 1000 <= im.width <= 1400 and im.height > 4 * 96
    ex = json.loads((out / "report" / "examples.json").read_text())
    assert ex["difficulty"] == "demo"  # the examples come from the world the demo trained on
    for section in ("t2i", "edit", "vqa", "recon"):
        assert len(ex[section]) == 6, section
    assert set(ex["sampling"]) == {"lm", "rl"}
    assert all("lm" in e and "rl" in e for e in ex["t2i"] + ex["edit"] + ex["vqa"])


def test_readme_figure_from_the_run(demo_run, tmp_path):
    from PIL import Image

    out, _ = demo_run
    png = tmp_path / "demo.png"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_figure.py"), "--run", str(out),
                           "--out", str(png)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with Image.open(png) as im:
        assert im.format == "PNG" and 300 <= im.width <= 900
    assert png.stat().st_size < 400_000
    missing = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_figure.py"), "--run",
                              str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "no demo run" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()


def test_metrics_are_numbers_in_range(demo_run):
    out, _ = demo_run
    m = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= m["tokenizer"]["codebook_usage"] <= 1.0
    held = m["tokenizer"]["heldout"]
    for key in ("parse_back_strict", "parse_back_score", "codebook_usage", "probe_color", "probe_shape",
                "retrieval_r1_ridge"):
        assert 0.0 <= held[key] <= 1.0, key
    assert held["psnr"] > 0
    assert set(held["object_probe"]["shape"]) == {"single", "two", "three_plus"}
    # the demo world has 1-2 objects per scene: no 3+ group to probe (None), the others are rates
    shape = held["object_probe"]["shape"]
    assert shape["single"] is not None
    assert all(v is None or 0.0 <= v <= 1.0 for v in shape.values())
    for tag in ("sft", "rl"):
        s = m[tag]
        for value in (s["t2i"]["cfg1"], s["t2i"]["best"], s["vqa"]["heldout"],
                      s["edit"]["best"]["adherence"], s["edit"]["best"]["consistency"]):
            assert isinstance(value, float) and not math.isnan(value) and 0.0 <= value <= 1.0
    assert all(0.0 <= x <= 1.0 for x in m["examples"]["recon_parse_score"])
    assert m["difficulty"] == "demo"


def test_metrics_have_the_quality_bars(demo_run):
    out, _ = demo_run
    m = json.loads((out / "metrics.json").read_text())
    bars = m["bars"]
    assert bars["difficulty"] == "demo"
    assert set(bars) == {"difficulty", *BARS}
    targets = {"tokenizer_parse_back": 0.80, "t2i_heldout": 0.50, "t2i_seen": 0.70, "vqa_heldout": 0.70,
               "edit_adherence": 0.50, "edit_consistency": 0.70}
    for key in BARS:
        assert bars[key]["target"] == targets[key] and bars[key]["label"], key
        for tag in ("sft", "rl"):
            fig = bars[key][tag]
            assert set(fig) == {"value", "se", "target", "met"}, (key, tag)
            assert fig["target"] == targets[key]
            assert isinstance(fig["value"], float) and 0.0 <= fig["value"] <= 1.0, (key, tag)
            assert fig["se"] is None or 0.0 <= fig["se"] <= 0.5, (key, tag)
            assert fig["met"] is (fig["value"] >= fig["target"]), (key, tag)
    assert bars["t2i_heldout"]["sft"]["value"] == m["sft"]["t2i"]["best"]
    assert bars["vqa_heldout"]["rl"]["value"] == m["rl"]["vqa"]["heldout"]


def test_rerun_skips_complete_stages(demo_run):
    out, _ = demo_run
    proc = _demo(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = re.findall(r"^\[(\d+)/(\d+)\] \w+: complete, skipped", proc.stdout, re.M)
    assert skipped and len(skipped) == int(skipped[0][1]), proc.stdout[-3000:]   # every stage
