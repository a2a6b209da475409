"""``arm-data check``: scan a real dataset once and report every bad sample before training on it.

Reads every record of a folder, JSONL manifest or shard set with the same readers (and
the same bad-input rules) that training uses, decodes every image, and prints counts per
reason with example files. Exit status 0 when every sample is good, 1 otherwise, so it
can gate a pipeline::

    arm-data check /data/cc3m-wds --task pair
    arm-data check data/edits/manifest.jsonl --task edit --json
"""

from __future__ import annotations

import argparse
import json
import warnings
from typing import Any, Literal

from arm_tokenizer.images import DEFAULT_MAX_PIXELS

from arm_data.datasets.common import FORMATS, detect_format
from arm_data.datasets.folder import FolderRecords
from arm_data.datasets.jsonl import JsonlRecords
from arm_data.datasets.wds import WdsRecords
from arm_data.errors import BadSampleError, ErrorPolicy, SkippedSampleWarning
from arm_data.records import TASKS, EditRecord, Record

__all__ = ["check_dataset", "check_command"]


def _decode_all(rec: Record) -> None:
    if isinstance(rec, EditRecord):
        rec.load_source()
        rec.load_target()
    else:
        rec.load_image()


def check_dataset(
    path: str,
    task: Literal["pair", "vqa", "edit"] = "pair",
    format: Literal["auto", "folder", "jsonl", "wds"] = "auto",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    recursive: bool = False,
) -> dict[str, Any]:
    """Read every sample of a dataset, decoding its images; return the counts.

    Returns:
        ``{"format", "task", "ok", "skipped", "by_reason", "examples"}`` (see
        :meth:`ErrorPolicy.state`); ``examples`` holds up to 5 files per reason.
    """
    fmt = detect_format(path) if format == "auto" else format
    policy = ErrorPolicy(on_error="skip", max_skip_fraction=1.0, warn_first=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedSampleWarning)  # the summary reports them
        if fmt == "wds":
            records: Any = WdsRecords(path, task=task, policy=policy, max_pixels=max_pixels)
            source = iter(records)
        elif fmt == "jsonl":
            records = JsonlRecords(path, task=task, policy=policy, max_pixels=max_pixels)
            source = (records[i] for i in range(len(records)))
        else:
            records = FolderRecords(path, task=task, policy=policy, recursive=recursive, max_pixels=max_pixels)

            def folder_records():
                for i in range(len(records)):
                    try:
                        yield records[i]
                    except BadSampleError as e:
                        policy.skip(e, was_ok=True)

            source = folder_records()
        for rec in source:
            try:
                _decode_all(rec)
            except BadSampleError as e:
                policy.skip(e, was_ok=True)
    return {"format": fmt, "task": task, **policy.state()}


def check_command(argv: list[str]) -> int:
    """Scan a dataset (folder, JSONL or shards) and report bad samples; exit 1 if any."""
    p = argparse.ArgumentParser(prog="arm-data check", description=check_command.__doc__)
    p.add_argument("path", help="a folder, a JSONL manifest (or its folder), or tar shards")
    p.add_argument("--task", choices=TASKS, default="pair")
    p.add_argument("--format", choices=("auto",) + FORMATS, default="auto")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"decompression-bomb limit, width*height (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--recursive", action="store_true", help="(folder) include sub-folders")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    args = p.parse_args(argv)
    report = check_dataset(args.path, task=args.task, format=args.format, max_pixels=args.max_pixels,
                           recursive=args.recursive)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        total = report["ok"] + report["skipped"]
        print(f"{args.path} ({report['format']}, task {report['task']}): "
              f"{report['ok']} good, {report['skipped']} bad of {total} samples")
        for reason, count in sorted(report["by_reason"].items(), key=lambda kv: -kv[1]):
            print(f"  {reason}: {count}")
            for ex in report["examples"].get(reason, []):
                print(f"    e.g. {ex}")
    return 0 if report["skipped"] == 0 else 1
