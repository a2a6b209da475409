"""``make bench``'s scripts run: every section of bench_core on tiny shapes (``--smoke``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT


def test_bench_core_smoke_runs_every_section(tmp_path):
    out = tmp_path / "core.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_core.py"), "--smoke",
                           "--out", str(out)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["cpu_decode"]["same_tokens"] and res["cpu_decode"]["kv_cache_tok_s"] > 0
    assert res["cpu_train"]["ours_tok_s"] > 0
    ih = res["cpu_image_head"][0]
    assert ih["greedy_tokens_equal"] and ih["score_max_abs_diff"] < 1e-5
    assert ih["generate_tok_s_image_head_on"] > 0 and ih["generate_tok_s_image_head_off"] > 0
    cfg = res["cuda_cfg_image_gen"]
    assert cfg["spans_well_formed"] and cfg["image_head_speedup"] > 0
    assert res["cuda_mfu"]["ours_tok_s"] > 0 and res["cuda_decode_roofline"]["ours_tok_s"] > 0
