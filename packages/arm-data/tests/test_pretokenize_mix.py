"""Several sources in one pre-tokenization run: spec grammar, shares by weight, the manifest,
exact resumption, and the CLI's one-line errors."""

import json

import numpy as np
import pytest
from arm_data.pretokenize import PatchColorTokenizer, pretokenize, record_tasks
from arm_data.shards import Manifest, ShardError, iter_records, shard_name
from arm_data.source_mix import SourceSpec, make_sources, parse_source, read_sources_file, shares
from arm_data.tasks import Task
from PIL import Image

TOK = PatchColorTokenizer(image_size=16, patch=4, levels=4)


def _png(path, seed, size=(20, 24)):
    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return arr


@pytest.fixture
def data(tmp_path):
    """A JSONL manifest (4 pair + 2 vqa lines) and a folder of 3 captioned images."""
    jl = tmp_path / "jl"
    (jl / "img").mkdir(parents=True)
    lines = []
    for i in range(4):
        _png(jl / "img" / f"p{i}.png", i)
        lines.append({"task": "pair", "image": f"img/p{i}.png", "text": f"photo {i}", "key": f"p{i}"})
    for i in range(2):
        lines.append({"task": "vqa", "image": f"img/p{i}.png", "question": f"q{i}?", "answer": f"a{i}",
                      "key": f"v{i}"})
    (jl / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    folder = tmp_path / "folder"
    folder.mkdir()
    for i in range(3):
        _png(folder / f"f{i}.png", 100 + i)
        (folder / f"f{i}.txt").write_text(f"folder {i}")
    return {"jsonl": jl, "folder": folder}


def test_spec_grammar():
    assert parse_source("shapes:train") == SourceSpec("shapes:train", None, 1.0, "--source 'shapes:train'")
    s = parse_source("shapes:val:pair,edit@2.5")
    assert (s.path, s.tasks, s.weight) == ("shapes:val", ("pair", "edit"), 2.5)
    s = parse_source("data/x.jsonl:vqa@0.2")
    assert (s.path, s.tasks, s.weight) == ("data/x.jsonl", ("vqa",), 0.2)
    assert parse_source("data/x.jsonl@3").tasks is None and parse_source("data/x.jsonl@3").weight == 3
    assert parse_source("runs@v2/shards").path == "runs@v2/shards"  # an '@' inside a directory name
    with pytest.raises(ValueError, match=r"--source 'x.jsonl:pair,caption': unknown task 'caption'"):
        parse_source("x.jsonl:pair,caption")
    with pytest.raises(ValueError, match=r"--source 'x.jsonl@0': weight must be a number > 0"):
        parse_source("x.jsonl@0")
    with pytest.raises(ValueError, match=r"--source 'x.jsonl@-1'"):
        parse_source("x.jsonl@-1")
    with pytest.raises(ValueError, match=r"weight 'lots' is not a number"):
        parse_source("x.jsonl@lots")


def test_shares_by_largest_remainder():
    assert shares([0.7, 0.2, 0.1], 10) == [7, 2, 1]
    assert shares([1, 1, 1], 10) == [4, 3, 3]  # ties go to the earlier source
    assert sum(shares([0.33, 0.33, 0.34], 101)) == 101


def test_mix_takes_shares_cycles_and_records_the_sources(data, tmp_path):
    specs = [SourceSpec(str(data["jsonl"]), ("pair", "vqa"), 2.0),
             SourceSpec(str(data["folder"]), ("pair",), 1.0),
             SourceSpec("shapes:train", ("pair", "edit"), 1.0)]
    src = make_sources(specs, ["pair"], count=16, num_questions=1)
    # 16 items by weight 2:1:1 -> 8, 4, 4; the JSONL has 6 records and the folder 3: both cycle
    m = pretokenize(TOK, src, tmp_path / "out", shard_size=5, batch_size=4, num_workers=0, progress=False)
    described = m.settings["source"]
    assert described["kind"] == "mix" and m.settings["tasks"] == ["pair", "vqa", "edit"]
    assert [(d["weight"], d["items"], d["available"], d["tasks"], d["start"]) for d in described["sources"]] == [
        (2.0, 8, 6, ["pair", "vqa"], 0), (1.0, 4, 3, ["pair"], 8), (1.0, 4, None, ["pair", "edit"], 12)]
    assert described["sources"][2]["kind"] == "shapes" and described["sources"][0]["kind"] == "jsonl"
    recs = list(iter_records(tmp_path / "out"))
    by_source = {s: [r for r in recs if r.extra["mix_source"] == s] for s in range(3)}
    # JSONL: items 0..5 then 0..1 again (pair records first, then vqa), same index for a repeat
    assert [r.key for r in by_source[0]] == ["p0", "p1", "p2", "p3", "v0", "v1", "p0", "p1"]
    assert [r.index for r in by_source[0]] == [0, 1, 2, 3, 4, 5, 0, 1]
    assert by_source[0][0].image.codes == by_source[0][6].image.codes
    assert [r.texts["text"] for r in by_source[1]] == ["folder 0", "folder 1", "folder 2", "folder 0"]
    assert [r.index for r in by_source[1]] == [8, 9, 10, 8]
    # ShapesWorld: 4 scenes, each a pair and an edit record
    assert sorted({r.index for r in by_source[2]}) == [12, 13, 14, 15]
    assert sorted(r.task for r in by_source[2]) == ["edit"] * 4 + ["pair"] * 4
    # the codes are the tokenizer's for the centre-cropped image
    from arm_tokenizer.images import ImageTransform, pil_to_tensor

    img = ImageTransform((16, 16), crop="center")(Image.open(data["folder"] / "f2.png"))
    assert by_source[1][2].image.codes == TOK.encode(pil_to_tensor(img).unsqueeze(0))[0].tolist()


def test_default_count_uses_the_tightest_source_whole(data):
    # 6 JSONL records at weight 3 and 3 folder records at weight 1: N = min(6*4/3, 3*4/1) = 8
    src = make_sources([SourceSpec(str(data["jsonl"]), None, 3.0), SourceSpec(str(data["folder"]), None, 1.0)],
                       ["pair", "vqa"], count=None)
    assert len(src) == 8 and [n for _, _, n in src.parts] == [6, 2]
    with pytest.raises(ValueError, match="ShapesWorld is unbounded: give --count"):
        make_sources([SourceSpec("shapes:train"), SourceSpec("shapes:val")], ["pair"], count=None)
    with pytest.raises(ValueError, match=r"'tiny': weight 0.01 gives it 0 of the run's 8 items"):
        make_sources([SourceSpec(str(data["jsonl"]), None, 1.0),
                      SourceSpec(str(data["folder"]), None, 0.01, "'tiny'")], ["pair", "vqa"], count=8)
    with pytest.raises(ValueError, match=r"--source 'f:vqa': no vqa records in"):
        make_sources([SourceSpec(str(data["folder"]), ("vqa",), 1.0, "--source 'f:vqa'"),
                      SourceSpec("shapes:train")], ["pair"], count=4)


class CaptionTask(Task):
    """A plugin task reading pair records (all a source needs of it: its schema)."""

    name = "caption"
    token = "<caption>"
    reads = "t2i"


def test_a_source_takes_any_registered_task(data, tmp_path, arm_register):
    arm_register(f"task:caption={__name__}:CaptionTask")
    assert parse_source(f"{data['jsonl']}:caption,vqa@2").tasks == ("caption", "vqa")
    (tmp_path / "mix.yaml").write_text("- {path: jl, tasks: [caption, vqa], weight: 2}\n"
                                       "- {path: 'shapes:train', tasks: [interleaved]}\n")
    src = make_sources(read_sources_file(tmp_path / "mix.yaml"), ["pair"], count=9, num_questions=1)
    # 9 items by weight 2:1 -> the 6 JSONL records (caption reads pair records) and 3 edit chains
    m = pretokenize(TOK, src, tmp_path / "out", shard_size=5, batch_size=4, num_workers=0, progress=False)
    assert m.settings["tasks"] == ["pair", "vqa", "interleaved"]
    assert [d["tasks"] for d in m.settings["source"]["sources"]] == [["pair", "vqa"], ["interleaved"]]
    recs = list(iter_records(tmp_path / "out"))
    assert [r.task for r in recs] == ["pair"] * 4 + ["vqa"] * 2 + ["interleaved"] * 3
    (tmp_path / "mix.yaml").write_text("- {path: jl, tasks: [captions]}\n")
    with pytest.raises(ValueError, match=r"mix.yaml:1 \(source 0, 'jl'\): unknown task 'captions'; known tasks: "
                                         r"\[.*'caption'.*\]"):
        read_sources_file(tmp_path / "mix.yaml")


class Interrupt(Exception):
    pass


def test_mix_resumes_byte_identical_and_refuses_other_weights(data, tmp_path):
    def mix(w):
        return make_sources([SourceSpec(str(data["jsonl"]), ("pair", "vqa"), w),
                             SourceSpec("shapes:train", ("pair", "edit"), 1.0)], ["pair"], count=9, num_questions=1)

    def run(out, **kw):
        return pretokenize(TOK, kw.pop("source", mix(2.0)), out, shard_size=3, batch_size=4, num_workers=0,
                           progress=False, **kw)

    ref, out = tmp_path / "ref", tmp_path / "out"
    run(ref)

    def stop(k):
        if k == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(out, after_shard=stop)
    redone = []
    run(out, after_shard=redone.append)
    assert redone == [2]
    for k in range(3):
        assert (out / shard_name(k)).read_bytes() == (ref / shard_name(k)).read_bytes()
    assert Manifest.load(out).settings == Manifest.load(ref).settings
    with pytest.raises(ShardError, match=r"other settings \(differing: \['source'\]\)"):
        run(out, source=mix(1.0))


# ---------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def tok_dir(save_tiny_tokenizer):
    return save_tiny_tokenizer(16)


def _cli(args, capsys):
    from arm_data.cli import main

    with pytest.raises(SystemExit) as e:
        main(["pretokenize", *args])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_cli_mix_and_sources_file_agree(data, tok_dir, tmp_path, capsys):
    common = ["--tokenizer", str(tok_dir), "--count", "6", "--shard-size", "4", "--workers", "0", "--no-progress"]
    code, out, err = _cli([*common, "--out", str(tmp_path / "a"), "--source", f"{data['jsonl']}:vqa@2",
                           "--source", f"{data['folder']}@1", "--tasks", "pair"], capsys)
    assert code == 0, err
    assert "weight 2: 4 items (of 2)" in out and "[pair] weight 1: 2 items (of 3)" in out
    assert "2/2 shards, 6 records" in out
    recs = list(iter_records(tmp_path / "a"))
    assert [r.task for r in recs] == ["vqa"] * 4 + ["pair"] * 2
    (tmp_path / "mix.yaml").write_text(
        "sources:\n"
        "  - {path: jl, tasks: [vqa], weight: 2}\n"
        "  - path: folder\n"
        "    tasks: pair\n")
    code, out, err = _cli([*common, "--out", str(tmp_path / "b"), "--sources", str(tmp_path / "mix.yaml")], capsys)
    assert code == 0, err
    for k in range(2):
        assert (tmp_path / "a" / shard_name(k)).read_bytes() == (tmp_path / "b" / shard_name(k)).read_bytes()


@pytest.mark.parametrize("source, message", [
    ("{jsonl}:pair,captions@1", "--source '{jsonl}:pair,captions@1': {unknown}"),
    ("{jsonl}:vqa@0", "--source '{jsonl}:vqa@0': weight must be a number > 0, got 0.0"),
    ("{missing}:pair@1", "--source '{missing}:pair@1': no such dataset path '{missing}' (or use shapes:train|val|heldout)"),
])
def test_cli_bad_source_is_one_line_exit_2(data, tok_dir, tmp_path, capsys, source, message):
    with pytest.raises(ValueError) as unknown:  # the task registry's one-line error
        record_tasks(["captions"])
    paths = {"jsonl": str(data["jsonl"]), "missing": str(tmp_path / "nope"), "unknown": str(unknown.value)}
    code, out, err = _cli(["--tokenizer", str(tok_dir), "--out", str(tmp_path / "o"), "--count", "4",
                           "--source", "shapes:train", "--source", source.format(**paths)], capsys)
    assert code == 2
    assert err.strip().splitlines() == [f"arm-data: error: {message.format(**paths)}"]
    assert "Traceback" not in err


def test_cli_bad_sources_file_names_file_and_line(data, tok_dir, tmp_path, capsys):
    f = tmp_path / "mix.yaml"
    f.write_text(f"- path: {data['jsonl']}\n- path: {data['folder']}\n  weight: -2\n")
    code, _, err = _cli(["--tokenizer", str(tok_dir), "--out", str(tmp_path / "o"), "--sources", str(f)], capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"{f}:2 (source 1, '{data['folder']}'): weight must be a number > 0, got -2" in err
    f.write_text("- {path: jl, tasks: [pair], colour: red}\n")
    code, _, err = _cli(["--tokenizer", str(tok_dir), "--out", str(tmp_path / "o"), "--sources", str(f)], capsys)
    assert code == 2 and f"{f}:1: source 0 has unknown key(s) ['colour']" in err
    with pytest.raises(FileNotFoundError, match="nope.yaml'?: no such file"):
        read_sources_file(f.with_name("nope.yaml"))
    code, _, err = _cli(["--tokenizer", str(tok_dir), "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "--source SPEC (repeatable) or as --sources FILE" in err
