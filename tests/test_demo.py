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

SECTIONS = ["Stages", "Metrics", "Tokenizer reconstructions", "Text to image", "Editing",
            "Visual question answering", "Training curves"]


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
    for section in SECTIONS:
        assert f"<h2>{section}" in page, section
    images = re.findall(r'src="(report/[^"]+)"', page)
    assert len(images) >= 6 * 4
    for rel in images:
        assert (out / rel).stat().st_size > 0, rel


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
    assert all(0.0 <= v <= 1.0 for v in held["object_probe"]["shape"].values())
    for tag in ("sft", "rl"):
        s = m[tag]
        for value in (s["t2i"]["cfg1"], s["t2i"]["best"], s["vqa"]["heldout"],
                      s["edit"]["best"]["adherence"], s["edit"]["best"]["consistency"]):
            assert isinstance(value, float) and not math.isnan(value) and 0.0 <= value <= 1.0
    assert all(0.0 <= x <= 1.0 for x in m["examples"]["recon_parse_score"])


def test_rerun_skips_complete_stages(demo_run):
    out, _ = demo_run
    proc = _demo(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("complete, skipped") == 9
