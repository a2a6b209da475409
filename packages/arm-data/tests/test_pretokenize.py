"""Pre-tokenization: shard contents, atomic + resumable writes, byte-identical after interruption."""

import json

import pytest
import torch
from arm_data.errors import BadSampleError, ErrorPolicy
from arm_data.pretokenize import PatchColorTokenizer, RawRecord, pretokenize
from arm_data.shards import Manifest, ShardError, iter_records, open_shards, read_shard, shard_name


class ToySource:
    """Deterministic items: a colored-quadrant image; each item gives pair, vqa and edit records."""

    tasks = ("pair", "vqa", "edit")

    def __init__(self, n: int, bad: frozenset = frozenset()) -> None:
        self.n, self.bad = n, bad

    def __len__(self):
        return self.n

    def describe(self):
        return {"kind": "toy", "n": self.n}

    @staticmethod
    def image(i: int, size) -> torch.Tensor:
        g = torch.Generator().manual_seed(i)
        h, w = size
        img = torch.zeros(3, h, w, dtype=torch.uint8)
        for qy in range(2):
            for qx in range(2):
                img[:, qy * h // 2:(qy + 1) * h // 2, qx * w // 2:(qx + 1) * w // 2] = \
                    torch.randint(0, 256, (3, 1, 1), generator=g, dtype=torch.uint8)
        return img

    def load(self, i, image_size):
        if i in self.bad:
            raise BadSampleError(f"toy:{i}", "corrupt_image", "synthetic failure")
        a, b = self.image(i, image_size), self.image(i + 10_000, image_size)
        return [RawRecord("pair", {"text": f"scene {i}"}, [a], f"k{i}", i, {"n": i}),
                RawRecord("vqa", {"question": f"q{i}?", "answer": f"a{i}"}, [a], f"k{i}-qa", i),
                RawRecord("edit", {"instruction": f"make {i}"}, [a, b], f"k{i}-edit", i)]


TOK = PatchColorTokenizer(image_size=16, patch=4, levels=4)


def run(out, **kw):
    kw.setdefault("num_workers", 0)
    kw.setdefault("progress", False)
    return pretokenize(TOK, kw.pop("source", ToySource(10)), out, shard_size=3, batch_size=4, **kw)


def shard_bytes(d):
    return {p.name: p.read_bytes() for p in sorted(d.glob("shard-*.safetensors"))}


def test_shards_hold_the_encoded_images_and_texts(tmp_path):
    m = run(tmp_path)
    assert m.complete and m.num_shards == 4 and m.grid == (4, 4) and m.codebook_size == 64
    records = list(iter_records(tmp_path))
    assert [r.task for r in records[:3]] == ["pair", "vqa", "edit"] and len(records) == 30
    for r in records:
        i = r.index
        want = TOK.encode(ToySource.image(i, (16, 16)).float().div(127.5).sub(1).unsqueeze(0))[0].tolist()
        assert r.images[0].codes == want and (r.images[0].h, r.images[0].w) == (4, 4)
        if r.task == "edit":
            tgt = TOK.encode(ToySource.image(i + 10_000, (16, 16)).float().div(127.5).sub(1).unsqueeze(0))[0]
            assert r.target.codes == tgt.tolist() and r.texts == {"instruction": f"make {i}"}
    assert records[0].texts == {"text": "scene 0"} and records[0].extra == {"n": 0}
    # the codes are not trivial: images differ, so do their tokens
    assert len({tuple(r.image.codes) for r in records if r.task == "pair"}) == 10
    # an image shared by several records is encoded and stored once (pair, vqa, edit source)
    from safetensors.numpy import load_file

    assert load_file(str(tmp_path / shard_name(0)))["image_grid"].shape == (3 * 2, 2)
    # no temp files left behind
    assert not list(tmp_path.glob(".*tmp"))


class Interrupt(Exception):
    """Raised from ``after_shard`` to stop a run where a crash would."""


def stop_after(n: int):
    def hook(k: int) -> None:
        if k == n:
            raise Interrupt
    return hook


def test_interrupted_run_resumes_to_byte_identical_shards(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    run(ref)

    with pytest.raises(Interrupt):
        run(out, after_shard=stop_after(1))
    partial = Manifest.load(out)
    assert sorted(partial.shards) == [shard_name(0), shard_name(1)] and not partial.complete
    with pytest.raises(ShardError, match="only 2 of 4 shards"):
        open_shards(out)
    # a half-written shard left by a crash (not in the manifest) is redone, not trusted
    (out / shard_name(2)).write_bytes(b"garbage from a killed process")
    redone = []
    run(out, after_shard=redone.append)
    assert redone == [2, 3]  # finished shards were skipped
    assert shard_bytes(out) == shard_bytes(ref)
    assert json.loads((out / "manifest.json").read_text()) == json.loads((ref / "manifest.json").read_text())


def _plant_temp(directory, target_name: str, data: bytes) -> str:
    """A temp file named exactly as atomic_write_bytes names it (as a SIGKILL mid-write leaves it)."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{target_name}.", suffix=".tmp", dir=directory)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return os.path.basename(tmp)


def test_stale_temporaries_removed_on_resume_and_fresh_start(tmp_path):
    ref, out, fresh = tmp_path / "ref", tmp_path / "out", tmp_path / "fresh"
    run(ref)

    with pytest.raises(Interrupt):
        run(out, after_shard=stop_after(0))
    # what a run killed while writing shard 1 and the manifest leaves behind
    stale = [_plant_temp(out, shard_name(1), b"half a shard"), _plant_temp(out, "manifest.json", b"{")]
    (out / ".notes.tmp").write_text("not ours")  # other files are left alone
    (out / "shard-notes.txt").write_text("not ours either")
    assert all((out / name).exists() for name in stale)
    redone = []
    run(out, after_shard=redone.append)
    assert redone == [1, 2, 3]
    assert not [name for name in stale if (out / name).exists()]
    assert not list(out.glob(".shard-*.tmp")) and not list(out.glob(".manifest.json.*.tmp"))
    assert (out / ".notes.tmp").exists() and (out / "shard-notes.txt").exists()
    assert shard_bytes(out) == shard_bytes(ref)
    assert json.loads((out / "manifest.json").read_text()) == json.loads((ref / "manifest.json").read_text())
    assert len(list(iter_records(out))) == 30

    # a fresh start in a directory holding only a dead run's temporaries cleans them too
    fresh.mkdir()
    stale = _plant_temp(fresh, shard_name(0), b"x")
    run(fresh)
    assert not (fresh / stale).exists() and not list(fresh.glob(".*.tmp"))
    assert shard_bytes(fresh) == shard_bytes(ref)


def test_corrupted_finished_shard_is_redone(tmp_path):
    run(tmp_path)
    good = shard_bytes(tmp_path)
    (tmp_path / shard_name(1)).write_bytes(good[shard_name(1)][:-5])  # truncated on disk
    redone = []
    run(tmp_path, after_shard=redone.append)
    assert redone == [1] and shard_bytes(tmp_path) == good


def test_workers_give_identical_shards(tmp_path):
    run(tmp_path / "a", num_workers=0)
    run(tmp_path / "b", num_workers=2)
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")


def test_other_settings_are_refused(tmp_path):
    run(tmp_path)
    with pytest.raises(ShardError, match=r"other settings \(differing: \['codebook_size', 'tokenizer'\]\)"):
        pretokenize(PatchColorTokenizer(16, 4, levels=3), ToySource(10), tmp_path, shard_size=3, batch_size=4,
                    num_workers=0, progress=False)


def test_bad_samples_are_counted_or_raised(tmp_path):
    policy = ErrorPolicy(min_samples=0, max_skip_fraction=0.5)
    with pytest.warns(UserWarning, match="toy:4"):
        run(tmp_path / "skip", source=ToySource(10, bad=frozenset({4})), policy=policy)
    assert policy.num_skipped == 1 and policy.num_ok == 9
    assert {r.index for r in iter_records(tmp_path / "skip")} == set(range(10)) - {4}
    with pytest.raises(BadSampleError, match="toy:4"):
        run(tmp_path / "raise", source=ToySource(10, bad=frozenset({4})), policy=ErrorPolicy(on_error="raise"))


def test_read_shard_errors(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_bytes(b"\x00" * 20)
    with pytest.raises(ShardError, match="not a readable safetensors shard"):
        read_shard(p)
    with pytest.raises(ShardError, match="no manifest.json"):
        Manifest.load(tmp_path)


def test_patch_color_tokenizer_round_trip():
    x = ToySource.image(3, (16, 16)).float().div(127.5).sub(1).unsqueeze(0)
    codes = TOK.encode(x)
    assert codes.shape == (1, 16) and int(codes.max()) < 64
    rec = TOK.decode(codes)
    assert rec.shape == x.shape and (rec - x).abs().max() <= 2 / 4 / 2 + 1e-6  # within half a bin
    assert torch.equal(TOK.encode(rec), codes)


def test_jsonl_dataset_source(tmp_path):
    """A real dataset path (JSONL manifest, arm_data.datasets) with all three tasks and a corrupt image."""
    import numpy as np
    from arm_data.pretokenize import make_source
    from PIL import Image

    root = tmp_path / "ds"
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for name in ("a", "b", "c"):
        arr = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)  # not the tokenizer's size: resized + cropped
        Image.fromarray(arr).save(root / "img" / f"{name}.png")
        arrays[name] = arr
    (root / "img" / "broken.png").write_bytes(b"\x89PNG truncated")
    lines = [
        {"task": "pair", "image": "img/a.png", "text": "first", "key": "p0"},
        {"task": "pair", "image": "img/broken.png", "text": "bad", "key": "p1"},
        {"task": "vqa", "image": "img/b.png", "question": "q?", "answer": "yes", "key": "v0"},
        {"task": "edit", "source": "img/b.png", "target": "img/c.png", "instruction": "swap", "key": "e0"},
    ]
    (root / "manifest.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    src = make_source(str(root), ["pair", "vqa", "edit"], None)
    assert len(src) == 4
    policy = ErrorPolicy(min_samples=0, max_skip_fraction=0.5)
    with pytest.warns(UserWarning, match="broken.png"):
        m = pretokenize(TOK, src, tmp_path / "out", shard_size=2, batch_size=2, num_workers=0, progress=False,
                        policy=policy)
    assert m.settings["source"]["kind"] == "jsonl" and policy.num_skipped == 1
    recs = {r.key: r for r in iter_records(tmp_path / "out")}
    assert set(recs) == {"p0", "v0", "e0"}
    assert recs["v0"].texts == {"question": "q?", "answer": "yes"} and recs["e0"].texts == {"instruction": "swap"}
    from arm_tokenizer.images import ImageTransform, pil_to_tensor

    def expect(name):
        img = ImageTransform((16, 16), crop="center")(Image.fromarray(arrays[name]))
        return TOK.encode(pil_to_tensor(img).unsqueeze(0))[0].tolist()

    assert recs["p0"].image.codes == expect("a")
    assert recs["e0"].source.codes == expect("b") == recs["v0"].image.codes
    assert recs["e0"].target.codes == expect("c")


def test_webdataset_source(tmp_path):
    import io
    import tarfile

    import numpy as np
    from arm_data.pretokenize import make_source
    from PIL import Image

    shards = tmp_path / "wds"
    shards.mkdir()
    with tarfile.open(shards / "shard-000000.tar", "w") as tar:
        for i in range(3):
            buf = io.BytesIO()
            Image.fromarray(np.full((16, 16, 3), 90 * i, np.uint8)).save(buf, format="PNG")
            for name, data in ((f"s{i}.png", buf.getvalue()), (f"s{i}.txt", f"gray {i}".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    src = make_source(str(shards), ["pair"], None)
    m = pretokenize(TOK, src, tmp_path / "out", shard_size=2, num_workers=0, progress=False)
    recs = list(iter_records(tmp_path / "out"))
    assert m.settings["source"]["kind"] == "wds" and [r.texts["text"] for r in recs] == ["gray 0", "gray 1", "gray 2"]
    assert len({tuple(r.image.codes) for r in recs}) == 3
