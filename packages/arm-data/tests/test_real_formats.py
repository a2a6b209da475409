"""Real-data readers on good data: every task in every format, hand-made files and writer round trips."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import torch
from arm_data.datasets import (
    EditDataset,
    FolderRecords,
    JsonlRecords,
    PairDataset,
    VQADataset,
    WdsDataset,
    WdsRecords,
    collate_samples,
)
from arm_data.datasets.common import detect_format, list_shards
from arm_data.datasets.writers import write_folder, write_jsonl, write_wds
from arm_data.records import EditRecord, PairRecord, VQARecord
from PIL import Image


def _img(seed: int, w: int = 10, h: int = 8) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _records(task: str, n: int = 5):
    out = []
    for i in range(n):
        key = f"s{i:03d}"
        extra = {"spec": {"objects": [{"shape": "circle", "i": i}]}, "note": "ünïcödé ✓"}
        if task == "pair":
            out.append(PairRecord(_img(i), f"a caption number {i} — ok", key=key, extra=extra))
        elif task == "vqa":
            if i % 2:
                conv = [{"role": "user", "text": f"q{i}?"}, {"role": "assistant", "text": f"a{i}"},
                        {"role": "user", "text": "more?"}, {"role": "assistant", "text": "no"}]
                out.append(VQARecord(_img(i), conversation=conv, key=key, extra=extra))
            else:
                out.append(VQARecord(_img(i), question=f"what is {i}?", answer=f"it is {i}", key=key, extra=extra))
        else:
            out.append(EditRecord(_img(i), _img(100 + i), f"make object {i} red", key=key, extra=extra))
    return out


def _assert_same(a, b):
    assert type(a) is type(b) and a.key == b.key and a.extra == b.extra
    if isinstance(a, PairRecord):
        assert a.text == b.text
        assert np.array_equal(np.asarray(a.load_image()), np.asarray(b.load_image()))
    elif isinstance(a, VQARecord):
        assert (a.question, a.answer, a.conversation) == (b.question, b.answer, b.conversation)
        assert np.array_equal(np.asarray(a.load_image()), np.asarray(b.load_image()))
    else:
        assert a.instruction == b.instruction
        assert np.array_equal(np.asarray(a.load_source()), np.asarray(b.load_source()))
        assert np.array_equal(np.asarray(a.load_target()), np.asarray(b.load_target()))


@pytest.mark.parametrize("task", ["pair", "vqa", "edit"])
@pytest.mark.parametrize("fmt", ["folder", "jsonl", "wds"])
def test_writer_reader_roundtrip(tmp_path, task, fmt):
    recs = _records(task)
    if fmt == "folder":
        write_folder(recs, tmp_path)
        back = list(FolderRecords(tmp_path, task=task))
    elif fmt == "jsonl":
        write_jsonl(recs, tmp_path)
        back = list(JsonlRecords(tmp_path, task=task))
    else:
        write_wds(recs, tmp_path, samples_per_shard=2)
        assert len(list_shards(tmp_path)) == 3
        reader = WdsRecords(tmp_path, task=task)
        back = list(reader)
        assert reader.policy.num_skipped == 0
    assert detect_format(tmp_path) == fmt
    assert [r.key for r in back] == [r.key for r in recs]
    for a, b in zip(recs, back, strict=True):
        _assert_same(a, b)


def test_wds_shards_are_byte_identical_when_rewritten(tmp_path):
    recs = _records("pair", 3)
    a = write_wds(recs, tmp_path / "a")
    b = write_wds(recs, tmp_path / "b")
    assert open(a[0], "rb").read() == open(b[0], "rb").read()
    assert json.loads((tmp_path / "a" / "index.json").read_text())["num_samples"] == 3


def test_mixed_jsonl_manifest_serves_each_task(tmp_path):
    recs = _records("pair", 2) + [
        VQARecord(_img(7), question="q?", answer="a", key="v0"),
        EditRecord(_img(8), _img(9), "swap", key="e0"),
    ]
    write_jsonl(recs, tmp_path)
    pairs = JsonlRecords(tmp_path, task="pair")
    assert [r.key for r in pairs] == ["s000", "s001"] and pairs.other_tasks == 2
    assert [r.key for r in JsonlRecords(tmp_path, task="vqa")] == ["v0"]
    assert [r.key for r in JsonlRecords(tmp_path / "manifest.jsonl", task="edit")] == ["e0"]


def test_handmade_folder_jsonl_and_tar(tmp_path):
    """Files written by hand exactly as formats.md says (not by our writers)."""
    folder = tmp_path / "folder"
    folder.mkdir()
    _img(1).save(folder / "cat.jpg", quality=95)
    (folder / "cat.txt").write_text("a cat\n", encoding="utf-8")
    _img(2).save(folder / "dog.v2.png")  # keys may contain dots in folders
    (folder / "dog.v2.txt").write_text("a dog", encoding="utf-8")
    (folder / "dog.v2.json").write_text('{"source": "web", "score": 0.5}', encoding="utf-8")
    (folder / "README.md").write_text("ignored")
    (folder / "._cat.jpg").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")  # hidden: not a sample
    (folder / ".DS_Store").write_bytes(b"\x00")
    recs = FolderRecords(folder, task="pair")
    assert recs.keys() == ["cat", "dog.v2"] and recs.policy.num_skipped == 0
    assert recs[0].text == "a cat" and recs[1].extra == {"source": "web", "score": 0.5}
    assert recs[0].load_image().size == (10, 8)

    jdir = tmp_path / "j"
    (jdir / "imgs").mkdir(parents=True)
    _img(3).save(jdir / "imgs" / "x.png")
    abs_img = tmp_path / "abs.png"
    _img(4).save(abs_img)
    lines = [
        {"task": "pair", "image": "imgs/x.png", "text": "rel path", "lang": "en"},
        {"image": str(abs_img), "caption": "absolute path, no task field"},
    ]
    (jdir / "manifest.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    j = JsonlRecords(jdir, task="pair")
    assert [r.text for r in j] == ["rel path", "absolute path, no task field"]
    assert j[0].extra == {"lang": "en"} and j[0].key == "manifest.jsonl:1"
    assert np.array_equal(np.asarray(j[1].load_image()), np.asarray(_img(4)))

    tar_path = tmp_path / "shard-000000.tar"
    with tarfile.open(tar_path, "w") as tf:
        for key, seed in (("k1", 5), ("k2", 6)):
            import io

            for suffix, data in (("source.png", _img(seed)), ("target.png", _img(seed + 10)),
                                 ("txt", f"edit {key}".encode())):
                if isinstance(data, Image.Image):
                    buf = io.BytesIO()
                    data.save(buf, format="PNG")
                    data = buf.getvalue()
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    edits = list(WdsRecords(str(tar_path), task="edit"))
    assert [(e.key, e.instruction) for e in edits] == [("k1", "edit k1"), ("k2", "edit k2")]
    assert np.array_equal(np.asarray(edits[1].load_target()), np.asarray(_img(16)))


def test_torch_datasets_items_and_collate(tmp_path):
    write_folder(_records("pair", 3), tmp_path / "p")
    write_jsonl(_records("vqa", 3), tmp_path / "v")
    write_folder(_records("edit", 3), tmp_path / "e")
    write_wds(_records("vqa", 4), tmp_path / "w", samples_per_shard=2)

    p = PairDataset(str(tmp_path / "p"), size=(4, 6))
    item = p[1]
    assert item["image"].shape == (3, 4, 6) and item["text"] == "a caption number 1 — ok"
    assert float(item["image"].min()) >= -1 and float(item["image"].max()) <= 1
    batch = collate_samples([p[0], p[1]])
    assert batch["image"].shape == (2, 3, 4, 6) and batch["key"] == ["s000", "s001"]

    v = VQADataset(str(tmp_path / "v"), size=8)
    assert v[0]["question"] == "what is 0?" and v[0]["answer"] == "it is 0"
    assert v[1]["question"] == "q1?" and v[1]["answer"] == "a1" and len(v[1]["conversation"]) == 4

    e = EditDataset(str(tmp_path / "e"), size=4, crop="random")
    it = e[2]
    assert it["source"].shape == it["target"].shape == (3, 4, 4) and it["instruction"] == "make object 2 red"

    w = WdsDataset(str(tmp_path / "w"), task="vqa", size=None)
    items = list(w)
    assert [x["key"] for x in items] == ["s000", "s001", "s002", "s003"]
    assert items[3]["image"].shape == (3, 8, 10)  # size=None keeps the original size
    expected = torch.from_numpy(np.array(_img(3))).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(items[3]["image"], expected)


def test_edit_random_crop_is_aligned(tmp_path):
    # target == source: any misaligned crop would make them differ
    big = _img(3, 40, 30)
    write_folder([EditRecord(big, big.copy(), "nothing", key="k")], tmp_path)
    ds = EditDataset(str(tmp_path), size=(8, 8), crop="random")
    for _ in range(5):
        it = ds[0]
        assert torch.equal(it["source"], it["target"])


def test_wds_shuffle_buffer_is_a_permutation(tmp_path):
    write_wds(_records("pair", 9), tmp_path, samples_per_shard=3)
    ds = WdsDataset(str(tmp_path), task="pair", size=4, shuffle_shards=True, shuffle_buffer=4, seed=1)
    a = [x["key"] for x in ds]
    assert sorted(a) == [f"s{i:03d}" for i in range(9)]
    ds.set_epoch(1)
    b = [x["key"] for x in ds]
    assert sorted(b) == sorted(a) and a != b  # reshuffled per epoch
    ds.set_epoch(0)
    assert [x["key"] for x in ds] == a  # reproducible


def test_folder_recursive_and_extension_case(tmp_path):
    (tmp_path / "sub" / ".hidden").mkdir(parents=True)
    _img(1).save(tmp_path / "TOP.JPG", format="JPEG")
    (tmp_path / "TOP.txt").write_text("upper-case extension")
    _img(2).save(tmp_path / "sub" / "deep.png")
    (tmp_path / "sub" / "deep.txt").write_text("in a sub-folder")
    _img(3).save(tmp_path / "sub" / ".hidden" / "h.png")
    (tmp_path / "sub" / ".hidden" / "h.txt").write_text("hidden folder: not read")
    flat = FolderRecords(tmp_path, task="pair")
    assert flat.keys() == ["TOP"] and flat.files(0)["image"].endswith("TOP.JPG")
    deep = FolderRecords(tmp_path, task="pair", recursive=True)
    assert deep.keys() == ["TOP", "sub/deep"] and deep.policy.num_skipped == 0
    assert [r.text for r in deep] == ["upper-case extension", "in a sub-folder"]
    assert np.array_equal(np.asarray(deep[1].load_image()), np.asarray(_img(2)))
    with pytest.raises(IndexError):
        deep[2]
