#!/usr/bin/env python
"""Run every benchmark in benchmarks/ and merge their JSON into one file (``make bench``).

Each ``benchmarks/bench_*.py`` prints one JSON object (figures are ratios measured in the
same run against a baseline, plus the raw numbers) and accepts ``--out``. A benchmark that
fails is recorded with its error instead of aborting the others.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results/bench.json")
    parser.add_argument("--only", nargs="*", help="benchmark names (e.g. tokenizer core)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per benchmark")
    args = parser.parse_args()
    import torch

    results: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "torch": torch.__version__,
                    "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "benchmarks": {},
    }
    scripts = sorted((ROOT / "benchmarks").glob("bench_*.py"))
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "out.json"
            start = time.time()
            proc = subprocess.run([sys.executable, str(script), "--out", str(out)],
                                  capture_output=True, text=True, timeout=args.timeout)
            entry: dict = {"wall_s": round(time.time() - start, 1)}
            if proc.returncode == 0 and out.exists():
                entry.update(json.loads(out.read_text()))
            else:
                entry["error"] = (proc.stderr or proc.stdout)[-2000:]
                print(entry["error"], file=sys.stderr)
        results["benchmarks"][name] = entry
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_suffix(".tmp")
    tmp_path.write_text(json.dumps(results, indent=2))
    os.replace(tmp_path, out_path)
    print(json.dumps(results, indent=2))
    return 0 if all("error" not in v for v in results["benchmarks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
