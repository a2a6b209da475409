"""ShapesWorld export (three formats read back by the real-data readers), CLI, datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from arm_data.cli import EXTRA_COMMANDS
from arm_data.datasets import FolderRecords, JsonlRecords, WdsRecords
from arm_data.shapes import (
    SceneSpec,
    ShapesEditDataset,
    ShapesImageDataset,
    ShapesVQADataset,
    ShapesWorld,
    ShapesWorldDataModule,
)
from arm_data.shapes.export import export_split, export_tasks
from arm_data.tasks import Task

READERS = {"folder": FolderRecords, "jsonl": JsonlRecords, "wds": WdsRecords}


def _pixels(img):
    return np.asarray(img.convert("RGB"))


@pytest.mark.parametrize("fmt", ["folder", "jsonl", "wds"])
@pytest.mark.parametrize("task", ["pair", "vqa", "edit"])
def test_export_reads_back_identical(tmp_path, task, fmt):
    out = tmp_path / f"{task}-{fmt}"
    export_split(out, split="heldout", task=task, fmt=fmt, count=3, start=5, width=48, height=32,
                 samples_per_shard=2)
    recs = sorted(READERS[fmt](str(out), task=task), key=lambda r: r.key)
    world = ShapesWorld("heldout", seed=0, width=48, height=32)
    assert [r.key for r in recs] == [f"heldout-{i:08d}" for i in (5, 6, 7)]
    for r, i in zip(recs, (5, 6, 7), strict=True):
        s = world[i]
        if task == "edit":
            assert r.instruction == s.edit.instruction
            assert np.array_equal(_pixels(r.load_source()), _pixels(s.edit.source_image))
            assert np.array_equal(_pixels(r.load_target()), _pixels(s.edit.target_image))
            assert SceneSpec.from_dict(r.extra["target_spec"]) == s.edit.target
        else:
            assert np.array_equal(_pixels(r.load_image()), _pixels(s.image))
            assert SceneSpec.from_dict(r.extra["spec"]) == s.spec
            if task == "pair":
                assert r.text == s.caption
            else:
                assert [t["text"] for t in r.turns()][1::2] == [q.answer for q in s.qa]
    if fmt == "wds":
        index = json.loads((out / "index.json").read_text())
        assert index["num_samples"] == 3 and [s["num_samples"] for s in index["shards"]] == [2, 1]
        assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_cli_export_show_render_eval(tmp_path, capsys):
    shapes = EXTRA_COMMANDS["shapes"]
    out = tmp_path / "wds"
    assert shapes(["export", "--split", "train", "--task", "pair", "--format", "wds", "--count", "4",
                   "--size", "64", "--out", str(out)]) == 0
    assert (out / "shard-000000.tar").exists()
    capsys.readouterr()
    assert shapes(["show", "--split", "heldout", "--index", "3"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["caption"] == ShapesWorld("heldout")[3].caption
    png = tmp_path / "x.png"
    assert shapes(["render", "--split", "heldout", "--index", "3", "--out", str(png)]) == 0
    spec_json = json.dumps(shown["spec"])
    capsys.readouterr()
    assert shapes(["eval", str(png), "--spec", spec_json]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["score"] == 1.0 and res["strict"]
    # A spec file works too, and a wrong spec scores below 1.
    wrong = dict(shown["spec"])
    wrong["objects"] = [dict(o, color="black" if o["color"] != "black" else "red") for o in wrong["objects"]]
    f = tmp_path / "wrong.json"
    f.write_text(json.dumps(wrong))
    assert shapes(["eval", str(png), "--spec", str(f), "--check", "count", "color"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] < 1.0
    assert shapes(["nope"]) == 2
    assert shapes(["splits"]) == 0 and "heldout_pairs" in capsys.readouterr().out


class CaptionTask(Task):
    """A plugin task reading pair records (all an export needs of it: its schema)."""

    name = "caption"
    reads = "t2i"


class StereoTask(Task):
    """A plugin task with a schema of its own, which ShapesWorld does not make."""

    name = "stereo"


def test_cli_export_task_choices_are_the_tasks_shapesworld_can_write(tmp_path, capsys, arm_register):
    shapes = EXTRA_COMMANDS["shapes"]
    assert export_tasks() == ("pair", "vqa", "edit", "t2i", "und", "text")  # not interleaved
    arm_register(f"task:caption={__name__}:CaptionTask,task:stereo={__name__}:StereoTask")
    assert export_tasks() == ("pair", "vqa", "edit", "t2i", "und", "text", "caption")
    out = tmp_path / "caption"
    assert shapes(["export", "--task", "caption", "--format", "jsonl", "--count", "2", "--size", "32",
                   "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "pair"  # written under its record name
    assert [r.text for r in JsonlRecords(str(out), task="pair")] == [ShapesWorld("train")[i].caption for i in (0, 1)]
    with pytest.raises(SystemExit) as e:
        shapes(["export", "--task", "stereo", "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "invalid choice: 'stereo'" in capsys.readouterr().err


def test_datasets_and_datamodule_batches():
    dm = ShapesWorldDataModule(batch_size=3, width=48, height=32, train_length=6, val_length=3, seed=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (3, 3, 32, 48) and batch["images"].dtype.is_floating_point
    assert -1.0 <= float(batch["images"].min()) and float(batch["images"].max()) <= 1.0
    assert len(batch["captions"]) == 3 and all(isinstance(c, str) for c in batch["captions"])
    assert all(SceneSpec.from_json(s) for s in batch["specs"])
    # Same seed, same batches (reproducible shuffle).
    dm2 = ShapesWorldDataModule(batch_size=3, width=48, height=32, train_length=6, val_length=3, seed=0)
    dm2.setup("fit")
    assert next(iter(dm2.train_dataloader()))["captions"] == batch["captions"]
    val = next(iter(dm.val_dataloader()))
    assert val["indices"] == [0, 1, 2]
    v = ShapesVQADataset(split="val", length=4, questions_per_image=2)[3]
    assert v["questions"].endswith("?") or v["questions"].endswith(".")
    e = ShapesEditDataset(split="train", length=2)[1]
    assert e["sources"].shape == e["targets"].shape == (3, 64, 64)
    with pytest.raises(IndexError):
        ShapesImageDataset(length=2)[2]
    with pytest.raises(ValueError, match="unknown split"):
        ShapesWorldDataModule(train_split="test")


def test_registered_entry_points():
    from arm_tokenizer.framework import registry

    assert registry.get("datamodule", "shapes_world") is ShapesWorldDataModule
    assert registry.get("dataset", "shapes_images") is ShapesImageDataset
