"""The bad-input battery, file by file: each bad file is skipped with a counted warning naming it
(``on_error="skip"``) or stops the run with an error naming it (``on_error="raise"``)."""

from __future__ import annotations

import io
import json
import tarfile
import warnings

import numpy as np
import pytest
from arm_data.datasets import PairDataset, VQADataset, WdsDataset
from arm_data.datasets.writers import write_folder, write_jsonl, write_wds
from arm_data.errors import (
    BadSampleError,
    ErrorPolicy,
    SkippedSampleWarning,
    TooManyBadSamplesError,
)
from arm_data.records import PairRecord, VQARecord
from PIL import Image

GOOD = ["g0", "g1", "g2"]


def _img(seed: int, size: int = 8) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _png(seed: int, size: int = 8) -> bytes:
    buf = io.BytesIO()
    _img(seed, size).save(buf, format="PNG")
    return buf.getvalue()


def _good(task: str = "pair"):
    if task == "vqa":
        return [VQARecord(_img(i), question=f"q{i}", answer=f"a{i}", key=k) for i, k in enumerate(GOOD)]
    return [PairRecord(_img(i), f"caption {i}", key=k) for i, k in enumerate(GOOD)]


def _tar_add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


# ---- builders: write 3 good samples + one bad thing; return (dataset factory, name the error must carry)

def _folder_with_image(d, name: str, data: bytes):
    """The good pairs plus ``<name>.png`` holding ``data`` (captioned); the dataset factory."""
    write_folder(_good(), d)
    (d / f"{name}.png").write_bytes(data)
    (d / f"{name}.txt").write_text("x")
    return lambda **kw: PairDataset(str(d), size=8, **kw)


def folder_corrupt_image(d):
    return _folder_with_image(d, "bad", b"\x89PNG\r\n\x1a\n this is garbage"), "bad.png", "corrupt_image"


def folder_truncated_image(d):
    data = _png(9, size=64)
    return _folder_with_image(d, "trunc", data[: len(data) // 2]), "trunc.png", "corrupt_image"


def folder_zero_byte_image(d):
    return _folder_with_image(d, "zero", b""), "zero.png", "empty_file"


def folder_missing_sidecar(d):
    write_folder(_good(), d)
    _img(5).save(d / "lonely.png")
    return (lambda **kw: PairDataset(str(d), size=8, **kw)), "lonely", "missing_sidecar"


def folder_non_utf8_caption(d):
    write_folder(_good(), d)
    _img(5).save(d / "latin.png")
    (d / "latin.txt").write_bytes("café".encode("latin-1"))
    return (lambda **kw: PairDataset(str(d), size=8, **kw)), "latin.txt", "bad_utf8"


def folder_invalid_json_sidecar(d):
    write_folder(_good("vqa"), d)
    _img(5).save(d / "broken.png")
    (d / "broken.json").write_text('{"question": "q", "answer": ')
    return (lambda **kw: VQADataset(str(d), size=8, **kw)), "broken.json", "invalid_json"


def folder_decompression_bomb(d):
    write_folder(_good(), d)
    Image.new("RGB", (300, 300)).save(d / "bomb.png")
    (d / "bomb.txt").write_text("x")
    return (lambda **kw: PairDataset(str(d), size=8, max_pixels=10_000, **kw)), "bomb.png", "image_too_large"


def jsonl_invalid_line(d):
    write_jsonl(_good(), d)
    with open(d / "manifest.jsonl", "a") as f:
        f.write('{"task": "pair", "image": "images/g0.png", "text": "unterminated\n')
    return (lambda **kw: PairDataset(str(d), size=8, **kw)), "manifest.jsonl:4", "invalid_json"


def jsonl_non_utf8_line(d):
    write_jsonl(_good(), d)
    with open(d / "manifest.jsonl", "ab") as f:
        f.write(b'{"task": "pair", "image": "images/g0.png", "text": "caf\xe9"}\n')
    return (lambda **kw: PairDataset(str(d), size=8, **kw)), "manifest.jsonl:4", "bad_utf8"


def jsonl_missing_field(d):
    write_jsonl(_good(), d)
    with open(d / "manifest.jsonl", "a") as f:
        f.write(json.dumps({"task": "pair", "image": "images/g0.png"}) + "\n")
    return (lambda **kw: PairDataset(str(d), size=8, **kw)), "manifest.jsonl:4", "invalid_record"


def jsonl_missing_image_file(d):
    write_jsonl(_good(), d)
    with open(d / "manifest.jsonl", "a") as f:
        f.write(json.dumps({"task": "pair", "image": "images/gone.png", "text": "t"}) + "\n")
    return (lambda **kw: PairDataset(str(d), size=8, **kw)), "gone.png", "missing_file"


def _shard_with(d, members: dict[str, bytes]):
    """The good pairs in one shard, then ``members`` (name: bytes) appended; the dataset factory."""
    write_wds(_good(), d, samples_per_shard=10)
    with tarfile.open(d / "shard-000000.tar", "a") as tf:
        for name, data in members.items():
            _tar_add(tf, name, data)
    return lambda **kw: WdsDataset(str(d), task="pair", size=8, **kw)


def wds_truncated_member(d):
    make = _shard_with(d, {"cut.png": _png(7, size=64), "cut.txt": b"cut"})
    shard = d / "shard-000000.tar"
    raw = shard.read_bytes()
    # cut in the middle of cut.png's data (before cut.txt and the end-of-archive blocks)
    png_at = raw.index(b"\x89PNG", raw.index(b"cut.png"))
    shard.write_bytes(raw[: png_at + 100])
    (d / "index.json").unlink()
    return make, "shard-000000.tar", "truncated_tar"


def wds_cut_between_samples(d):
    # a cut exactly at a member boundary reads cleanly; index.json says a sample is missing
    write_wds(_good() + [PairRecord(_img(4), "last", key="last")], d, samples_per_shard=10)
    shard = d / "shard-000000.tar"
    raw = shard.read_bytes()
    header = raw.index(b"last.png")  # tar header of the last sample's first member (512-aligned)
    shard.write_bytes(raw[:header])
    return (lambda **kw: WdsDataset(str(d), task="pair", size=8, **kw)), "shard-000000.tar", "truncated_tar"


def wds_missing_member(d):
    return _shard_with(d, {"notext.png": _png(3)}), "shard-000000.tar:notext", "missing_sidecar"


def wds_corrupt_image_member(d):
    return _shard_with(d, {"junk.png": b"not a png", "junk.txt": b"x"}), "shard-000000.tar:junk.png", "corrupt_image"


def wds_non_utf8_text_member(d):
    return _shard_with(d, {"enc.png": _png(3), "enc.txt": b"\xff\xfe caf\xe9"}), "shard-000000.tar:enc.txt", "bad_utf8"


def wds_zero_byte_image_member(d):
    return _shard_with(d, {"empty.png": b"", "empty.txt": b"x"}), "shard-000000.tar:empty.png", "empty_file"


BUILDERS = [
    folder_corrupt_image, folder_truncated_image, folder_zero_byte_image, folder_missing_sidecar,
    folder_non_utf8_caption, folder_invalid_json_sidecar, folder_decompression_bomb,
    jsonl_invalid_line, jsonl_non_utf8_line, jsonl_missing_field, jsonl_missing_image_file,
    wds_truncated_member, wds_cut_between_samples, wds_missing_member, wds_corrupt_image_member,
    wds_non_utf8_text_member, wds_zero_byte_image_member,
]


def _read_all(ds) -> list[dict]:
    if isinstance(ds, WdsDataset):
        return list(ds)
    return [ds[i] for i in range(len(ds))]


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_bad_input_skipped_with_named_warning(tmp_path, builder):
    make, name, reason = builder(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = make(on_error="skip", min_samples=1000)
        items = _read_all(ds)
    keys = {it["key"] for it in items}
    assert set(GOOD) <= keys and not keys - set(GOOD) - {"last"}
    assert ds.policy.num_skipped == 1, ds.policy.summary()
    assert dict(ds.policy.counts) == {reason: 1}
    msgs = [str(w.message) for w in caught if issubclass(w.category, SkippedSampleWarning)]
    assert len(msgs) == 1 and name in msgs[0] and reason in msgs[0]
    assert name in ds.policy.summary()


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_bad_input_raises_naming_the_file(tmp_path, builder):
    make, name, reason = builder(tmp_path)
    with pytest.raises(BadSampleError) as e:
        _read_all(make(on_error="raise"))
    assert e.value.reason == reason and name in str(e.value)


def test_truncated_shard_does_not_stop_the_next_shard(tmp_path):
    write_wds(_good() + [PairRecord(_img(i), f"c{i}", key=f"h{i}") for i in range(3)], tmp_path, samples_per_shard=3)
    first = tmp_path / "shard-000000.tar"
    raw = first.read_bytes()
    first.write_bytes(raw[: raw.index(b"g1.png") + 700])  # inside g1's image data
    ds = WdsDataset(str(tmp_path), task="pair", size=8, min_samples=1000)
    with pytest.warns(SkippedSampleWarning, match="shard-000000.tar"):
        keys = [it["key"] for it in ds]
    assert keys == ["g0", "h0", "h1", "h2"]
    assert dict(ds.policy.counts) == {"truncated_tar": 1}
    assert "g1" in ds.policy.summary()  # the sample cut short is named


def test_too_many_bad_samples_fails_with_summary(tmp_path):
    recs = [PairRecord(_img(i), f"c{i}", key=f"k{i:02d}") for i in range(12)]
    write_folder(recs, tmp_path)
    for i in range(0, 12, 3):  # 4 of 12 images corrupt
        (tmp_path / f"k{i:02d}.png").write_bytes(b"garbage")
    ds = PairDataset(str(tmp_path), size=8, max_skip_fraction=0.2, min_samples=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedSampleWarning)
        with pytest.raises(TooManyBadSamplesError) as e:
            for i in range(len(ds)):
                ds[i]
    msg = str(e.value)
    assert "max_skip_fraction=20.0%" in msg and "corrupt_image" in msg and "k00.png" in msg


def test_fraction_not_checked_before_min_samples(tmp_path):
    recs = [PairRecord(_img(i), f"c{i}", key=f"k{i}") for i in range(4)]
    write_folder(recs, tmp_path)
    (tmp_path / "k0.png").write_bytes(b"garbage")
    ds = PairDataset(str(tmp_path), size=8, max_skip_fraction=0.1, min_samples=100)
    with pytest.warns(SkippedSampleWarning, match="k0.png"):
        items = [ds[i] for i in range(4)]
    assert [it["key"] for it in items] == ["k1", "k1", "k2", "k3"]  # bad index 0 answered by index 1


def test_warnings_are_rate_limited():
    policy = ErrorPolicy(on_error="skip", max_skip_fraction=1.0, warn_first=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(100):
            policy.skip(BadSampleError(f"f{i}.png", "corrupt_image", "x"))
    msgs = [str(w.message) for w in caught]
    # 3 individual warnings, then summaries at 4, 8, 16, 32, 64
    assert len(msgs) == 8
    assert "f0.png" in msgs[0] and "4 bad samples skipped" in msgs[3] and "64 bad samples" in msgs[-1]
    assert policy.counts["corrupt_image"] == 100 and len(policy.examples["corrupt_image"]) == 5


def test_policy_validates_arguments():
    with pytest.raises(ValueError, match="on_error"):
        ErrorPolicy(on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown bad-sample reason"):
        BadSampleError("x", "oops", "y")


@pytest.mark.parametrize("builder", [folder_non_utf8_caption, jsonl_invalid_line, wds_truncated_member],
                         ids=lambda b: b.__name__)
def test_check_command_reports_bad_files(tmp_path, builder, capsys):
    from arm_data.datasets.check import check_command

    _, name, reason = builder(tmp_path)
    assert check_command([str(tmp_path), "--task", "pair", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["by_reason"] == {reason: 1} and report["ok"] == len(GOOD)
    assert any(name in ex for ex in report["examples"][reason])


def test_check_command_clean_dataset(tmp_path, capsys):
    from arm_data.datasets.check import check_command

    write_folder(_good(), tmp_path)
    assert check_command([str(tmp_path)]) == 0
    assert "3 good, 0 bad of 3 samples" in capsys.readouterr().out


def test_wds_duplicate_member_reported(tmp_path):
    write_wds(_good(), tmp_path, samples_per_shard=10)
    (tmp_path / "index.json").unlink()
    with tarfile.open(tmp_path / "shard-000000.tar", "a") as tf:
        _tar_add(tf, "dup.png", _png(3))
        _tar_add(tf, "dup.txt", b"first")
        _tar_add(tf, "dup.txt", b"second")
    ds = WdsDataset(str(tmp_path), task="pair", size=8, min_samples=1000)
    with pytest.warns(SkippedSampleWarning, match="duplicate"):
        items = {it["key"]: it["text"] for it in ds}
    assert items["dup"] == "first" and dict(ds.policy.counts) == {"invalid_record": 1}


# ---- where exactly: JSON line/column, our own max_pixels, the tar member's name

GOOD_LINE = '{"task": "pair", "image": "images/g0.png", "text": "ok"}'


@pytest.mark.parametrize("bad,column,what", [
    # cut after a key: the value is missing where the line ends (not at "line 2, column 1")
    ('{"task": "pair", "image": "images/g0.png", "text": ', 52, "Expecting value"),
    # cut inside a string: the string that is never closed (not the line break after it)
    ('{"task": "pair", "image": "images/g0.png", "text": "unterminated', 52, "Unterminated string starting"),
    ('{"task": "pair", "image": "images/g0.png", "text": "ok"', 56, "Expecting ',' delimiter"),
], ids=["after-key", "in-string", "unclosed-object"])
@pytest.mark.parametrize("ending", ["\n", "\r\n", ""], ids=["lf", "crlf", "eof"])
def test_jsonl_truncated_line_reported_at_its_line_and_column(tmp_path, bad, column, what, ending):
    write_jsonl(_good(), tmp_path)  # lines 1-3
    manifest = tmp_path / "manifest.jsonl"
    with open(manifest, "a", newline="") as f:
        f.write(GOOD_LINE + "\n" + bad + ending)  # the cut line is line 5 (the last one)
    with pytest.raises(BadSampleError) as e:
        PairDataset(str(tmp_path), size=8, on_error="raise")
    err = e.value
    assert err.reason == "invalid_json" and err.source == f"{manifest}:5"
    assert f"{what} at line 5, column {column}" in err.detail, err.detail
    assert str(manifest) in str(err)


def test_jsonl_bad_line_in_the_middle_and_bad_utf8_column(tmp_path):
    write_jsonl(_good(), tmp_path)
    manifest = tmp_path / "manifest.jsonl"
    lines = manifest.read_bytes().splitlines(keepends=True)
    lines.insert(1, b'{"task": "pair", "image": "images/g0.png", "text": \n')
    lines.insert(3, b'{"task": "pair", "image": "images/g0.png", "text": "caf\xe9"}\n')
    manifest.write_bytes(b"".join(lines))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedSampleWarning)
        ds = PairDataset(str(tmp_path), size=8, max_skip_fraction=1.0)
    assert len(ds) == 3 and ds.policy.num_skipped == 2
    examples = ds.policy.examples
    assert any(f"{manifest}:2" in x and "Expecting value at line 2, column 52" in x for x in examples["invalid_json"])
    assert any(f"{manifest}:4" in x and "line 4, column 56 (byte 55)" in x for x in examples["bad_utf8"])


def test_json_sidecar_error_gives_the_file_line():
    from arm_data.datasets.common import parse_json_object

    with pytest.raises(BadSampleError) as e:
        parse_json_object(b'{\n  "question": "q",\n  "answer": \n}\n', "k.json")
    assert "Expecting value at line 4, column 1" in e.value.detail


def test_decompression_bomb_message_quotes_our_max_pixels(tmp_path, monkeypatch):
    write_folder(_good(), tmp_path)
    Image.new("RGB", (300, 300)).save(tmp_path / "bomb.png")
    (tmp_path / "bomb.txt").write_text("x")
    # Pillow's own guard fires first at open (90,000 px is over twice its limit of 20,000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)
    ds = PairDataset(str(tmp_path), size=8, max_pixels=10_000, on_error="raise")
    with pytest.raises(BadSampleError) as e:
        [ds[i] for i in range(len(ds))]
    msg = str(e.value)
    assert e.value.reason == "image_too_large" and "bomb.png" in msg
    assert "90000 pixels exceeds max_pixels=10000" in msg
    assert "max_pixels=90000 or more" in msg  # how to raise it
    assert "20000" not in msg and "limit of" not in msg  # not Pillow's limit or wording
    # our limit is the one that counts: above Pillow's warning threshold, within max_pixels -> loads
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    ds = PairDataset(str(tmp_path), size=8, max_pixels=100_000, on_error="raise")
    assert len([ds[i] for i in range(len(ds))]) == 4
    # without our limit, Pillow's global one is named, with how to raise it
    ds = PairDataset(str(tmp_path), size=8, max_pixels=None, on_error="raise")
    with pytest.raises(BadSampleError) as e:
        [ds[i] for i in range(len(ds))]
    assert "PIL.Image.MAX_IMAGE_PIXELS=50000" in str(e.value) and "max_pixels=90000" in str(e.value)


def test_corrupt_tar_member_error_names_shard_and_member(tmp_path):
    make, name, reason = wds_corrupt_image_member(tmp_path)
    with pytest.raises(BadSampleError) as e:
        _read_all(make(on_error="raise"))
    msg = str(e.value)
    assert e.value.reason == "corrupt_image"
    assert "shard-000000.tar:junk.png" in e.value.source
    assert "cannot identify image file 'shard-000000.tar:junk.png'" in msg
    assert "BytesIO" not in msg and "object at 0x" not in msg
