"""Readers, writers, shards and the vocabulary ask the task: a plugin task with two named
images reads and writes through every format, and its tokens extend the vocabulary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from arm_data.datasets import FolderRecords, JsonlRecords, RecordDataset, WdsDataset, WdsRecords
from arm_data.datasets.writers import write_folder, write_jsonl, write_wds
from arm_data.errors import BadSampleError, ErrorPolicy
from arm_data.formats import ImageTokens
from arm_data.records import as_pil
from arm_data.shapes.export import sample_record
from arm_data.shapes.world import ShapesWorld
from arm_data.shards import ShardError, TokenRecord
from arm_data.tasks import Task, vocab_specials
from arm_data.vocab import DEFAULT_SPECIAL_TOKENS
from PIL import Image


@dataclass
class StereoRecord:
    task: ClassVar[str] = "stereo"
    left: Any
    right: Any
    text: str
    key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class StereoTask(Task):
    """A plugin schema: two named images and a caption (only what the readers need)."""

    name = "stereo"
    token = "<stereo>"
    special_tokens = ("<left>",)
    image_fields = ("left", "right")
    text_field = "text"
    sidecars = (("txt",),)

    def read(self, fields, images, key, where):
        fields = dict(fields)
        for f in ("task", "left", "right"):
            fields.pop(f, None)
        if not isinstance(fields.get("text"), str):
            raise BadSampleError(where, "invalid_record", "stereo record has no 'text' field")
        text = fields.pop("text")
        return StereoRecord(images["left"], images["right"], text, key, fields)

    def record_fields(self, record):
        return {"text": record.text}


@pytest.fixture
def stereo(arm_register):
    arm_register(f"task:stereo={__name__}:StereoTask")


def _records(n=3):
    return [StereoRecord(Image.new("RGB", (8, 6), (40 * i, 0, 0)), Image.new("RGB", (8, 6), (0, 40 * i, 0)),
                         f"pair {i}", f"s{i}", {"n": i}) for i in range(n)]


def test_a_plugin_schema_round_trips_through_every_format(stereo, tmp_path):
    recs = _records()
    write_folder(recs, tmp_path / "folder")
    assert (tmp_path / "folder" / "s1.left.png").is_file() and (tmp_path / "folder" / "s1.txt").read_text() == "pair 1"
    write_jsonl(recs, tmp_path / "jsonl")
    write_wds(recs, tmp_path / "wds", samples_per_shard=2)
    readers = [FolderRecords(tmp_path / "folder", task="stereo"), JsonlRecords(tmp_path / "jsonl", task="stereo"),
               list(WdsRecords(tmp_path / "wds", task="stereo"))]
    for reader in readers:
        back = [reader[i] for i in range(len(reader))]
        assert [r.text for r in back] == ["pair 0", "pair 1", "pair 2"] and back[2].extra == {"n": 2}
        assert as_pil(back[2].left).getpixel((0, 0)) == (80, 0, 0)
        assert as_pil(back[2].right).getpixel((0, 0)) == (0, 80, 0)
    item = RecordDataset(str(tmp_path / "folder"), task="stereo", size=4, on_error="raise")[1]
    assert item["left"].shape == item["right"].shape == (3, 4, 4) and item["text"] == "pair 1"
    streamed = list(WdsDataset(str(tmp_path / "wds"), task="stereo", size=4, on_error="raise"))
    assert [s["key"] for s in streamed] == ["s0", "s1", "s2"]

    # a sample without the sidecar the task requires is named and left out, as for built-ins
    (tmp_path / "folder" / "s1.txt").unlink()
    with pytest.warns(UserWarning, match=r"s1 \[missing_sidecar\]: missing txt"):
        assert FolderRecords(tmp_path / "folder", task="stereo", policy=ErrorPolicy()).keys() == ["s0", "s2"]


def test_shard_records_hold_as_many_images_as_their_task_says(stereo):
    img = ImageTokens([0] * 4, 2, 2)
    assert len(TokenRecord("stereo", {"text": "x"}, [img, img]).images) == 2
    with pytest.raises(ShardError, match="a stereo record holds 2 image"):
        TokenRecord("stereo", {"text": "x"}, [img])
    with pytest.raises(ShardError, match="a edit record holds 2 image"):
        TokenRecord("edit", {"instruction": "x"}, [img])
    with pytest.raises(ShardError, match="record task 'stereos' is not known"):
        TokenRecord("stereos", {}, [img])


def test_plugin_tokens_are_appended_after_the_builtin_specials(stereo):
    assert vocab_specials(["t2i", "und", "edit", "text"]) == DEFAULT_SPECIAL_TOKENS
    assert vocab_specials(["stereo", "t2i"]) == (*DEFAULT_SPECIAL_TOKENS, "<stereo>", "<left>")


def test_shapes_export_builds_records_through_the_task():
    sample = ShapesWorld("train", seed=0, width=16, height=16, length=1)[0]
    pair = sample_record(sample, "text")  # a task reading pair records exports them
    assert pair.task == "pair" and pair.text == sample.caption and set(pair.extra) >= {"spec", "caption_attributes"}
    edit = sample_record(sample, "edit")
    assert edit.instruction == sample.edit.instruction and "target_spec" in edit.extra
    with pytest.raises(ValueError, match="unknown task 'captions'"):
        sample_record(sample, "captions")
