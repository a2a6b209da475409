"""Benchmark suites: each suite's real prompt format in, its official layout out; resume,
seeds, batching, and bad input (one message naming file / line / field, exit 2)."""

from __future__ import annotations

import csv
import json
import os

import pytest
import torch
from arm_core.cli import main as arm_lm
from arm_core.suites.base import SuiteError
from arm_core.suites.dpg import split_2x2
from arm_core.suites.generate import MANIFEST, GenerationSettings, generate_suite, plan_batches
from arm_core.testing import save_tiny_lm
from arm_data.text_tokenizer import TextTokenizer
from arm_tokenizer.testing.toys import tiny_projected_tokenizer
from PIL import Image

CORPUS = ["a photo of a red circle", "a blue square left of a green star", "two yellow triangles",
          "make the circle blue", "remove the star", "an old clock on a wooden table"]


def make_tiny(root, seed: int = 0, name: str = "lm"):
    """A random tiny LM + toy visual tokenizer (32 px images, 4x4 tokens), exported to disk."""
    text = TextTokenizer.train(CORPUS * 4, vocab_size=300)
    text.save(root / "tt")
    torch.manual_seed(seed)
    vis = tiny_projected_tokenizer()
    vis.save_pretrained(root / "tok")
    layout = text.layout(codebook_size=vis.codebook_size, max_grid_h=8, max_grid_w=8)
    return save_tiny_lm(root, layout, name)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return make_tiny(tmp_path_factory.mktemp("suite-model"))


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


GENEVAL = [{"tag": "single_object", "include": [{"class": "clock", "count": 1}], "prompt": "a photo of a clock"},
           {"tag": "position", "include": [{"class": "circle", "count": 1},
                                           {"class": "square", "count": 1, "position": ["right of", 0]}],
            "prompt": "a photo of a square right of a circle"},
           {"tag": "counting", "include": [{"class": "star", "count": 2}], "exclude": [{"class": "star", "count": 3}],
            "prompt": "a photo of two stars"}]


def test_geneval_layout_seeds_and_resume(lm, tmp_path) -> None:
    prompts = _jsonl(tmp_path / "evaluation_metadata.jsonl", GENEVAL)
    out = tmp_path / "out"
    s = GenerationSettings(batch_size=4, seed=7)
    m = generate_suite("geneval", prompts, out, lm=lm, settings=s, samples=2)
    # GenEval's layout: <5-digit index>/metadata.jsonl (the prompt's own line) + samples/<4-digit>.png
    assert sorted(p.name for p in out.iterdir()) == ["00000", "00001", "00002", MANIFEST]
    for i, row in enumerate(GENEVAL):
        d = out / f"{i:05d}"
        assert json.loads((d / "metadata.jsonl").read_text()) == row
        assert sorted(p.name for p in (d / "samples").iterdir()) == ["0000.png", "0001.png"]
        assert Image.open(d / "samples" / "0000.png").size == (32, 32)
    # batches of whole prompts (4 images = 2 prompts), batch b seeded seed + b, rows recorded
    assert plan_batches(3, 2, 4) == [[0, 1], [2]]
    assert m["images"]["00001"]["samples"] == [{"seed": 7, "row": 2}, {"seed": 7, "row": 3}]
    assert m["images"]["00002"]["samples"][0] == {"seed": 8, "row": 0}
    assert m["counts"]["generated"] == 3 and m["counts"]["images"] == 6
    # resume: nothing regenerated; a lost file comes back bit-identical (seeds follow the plan)
    lost = out / "00001" / "samples" / "0001.png"
    before = lost.read_bytes()
    kept = out / "00000" / "samples" / "0000.png"
    mtime = kept.stat().st_mtime_ns
    assert generate_suite("geneval", prompts, out, lm=lm, settings=s, samples=2)["counts"]["generated"] == 0
    lost.unlink()
    m2 = generate_suite("geneval", prompts, out, lm=lm, settings=s, samples=2)
    assert m2["counts"]["generated"] == 1 and m2["counts"]["resumed_done"] == 2
    assert lost.read_bytes() == before and kept.stat().st_mtime_ns == mtime


def test_batched_engine_calls_and_grid(lm, tmp_path, monkeypatch) -> None:
    """One engine call per planned batch (no per-prompt loop); --grid reaches the shape tokens."""
    from arm_core.generation import Engine

    calls = []
    real = Engine.generate

    def counting(self, prompts, *a, **k):
        calls.append(len(prompts))
        return real(self, prompts, *a, **k)

    monkeypatch.setattr(Engine, "generate", counting)
    rows = [dict(GENEVAL[0], prompt=f"a photo of a clock {i}") for i in range(8)]
    prompts = _jsonl(tmp_path / "m.jsonl", rows)
    generate_suite("geneval", prompts, tmp_path / "o", lm=lm, samples=2,
                   settings=GenerationSettings(batch_size=8, grid=(2, 8)))
    assert calls == [8, 8]   # 8 prompts x 2 samples in batches of 8 images
    assert Image.open(tmp_path / "o" / "00000" / "samples" / "0000.png").size == (64, 16)   # 8 x 2 tokens of 8 px


def test_dpg_folder_and_csv(lm, tmp_path) -> None:
    folder = tmp_path / "prompts"
    folder.mkdir()
    (folder / "partiprompts12.txt").write_text("An old clock on a wooden table.\n")
    (folder / "coco7.txt").write_text("A red circle.")
    out = generate_suite("dpg", folder, tmp_path / "o1", lm=lm, settings=GenerationSettings(batch_size=8))
    grid = Image.open(tmp_path / "o1" / "partiprompts12.png")
    assert grid.size == (64, 64) and (tmp_path / "o1" / "coco7.png").exists()
    assert out["counts"]["images"] == 8
    assert [t.size for t in split_2x2(grid)] == [(32, 32)] * 4
    # the csv: one row per proposition, an item repeats; category_broad becomes the tag
    path = tmp_path / "dpg_bench.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item_id", "text", "keywords", "proposition_id", "dependency", "category_broad",
                    "category_detailed", "tuple", "question_natural_language"])
        w.writerow(["coco7", "A red circle.", "", 1, 0, "entity", "whole", "entity - whole (circle)", "Is there a circle?"])
        w.writerow(["coco7", "A red circle.", "", 2, 1, "attribute", "color", "attribute - color (circle, red)", "Is it red?"])
    m = generate_suite("dpg", path, tmp_path / "o2", lm=lm)
    assert list(m["images"]) == ["coco7"] and m["images"]["coco7"]["tag"] == "entity"
    assert sorted(p.name for p in (tmp_path / "o2").iterdir()) == [MANIFEST, "coco7.png"]
    with pytest.raises(SuiteError, match="exactly 4 samples"):
        generate_suite("dpg", path, tmp_path / "o3", lm=lm, samples=2)


def test_wise_three_files(lm, tmp_path) -> None:
    d = tmp_path / "wise"
    d.mkdir()
    for name, ids in (("cultural_common_sense", [1, 2]), ("spatio-temporal_reasoning", [401]),
                      ("natural_science", [701])):
        (d / f"{name}.json").write_text(json.dumps([
            {"prompt_id": i, "Prompt": f"the traditional object of festival {i}", "Category": name,
             "Subcategory": "x", "Explanation": "y"} for i in ids]))
    generate_suite("wise", d, tmp_path / "o", lm=lm)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["1.png", "2.png", "401.png", "701.png", MANIFEST]


def _edit_images(tmp_path):
    img = tmp_path / "imgs"
    (img / "animal").mkdir(parents=True)
    Image.new("RGB", (48, 40), (200, 30, 30)).save(img / "animal" / "a.jpg")
    Image.new("RGB", (32, 32), (30, 30, 200)).save(img / "b.png")
    (img / "broken.png").write_bytes(b"not a png at all")
    return img


def test_gedit_layout_with_counted_skips(lm, tmp_path) -> None:
    _edit_images(tmp_path)
    rows = [{"task_type": "color_alter", "key": "k1", "instruction": "make the circle blue",
             "instruction_language": "en", "input_image": "imgs/animal/a.jpg", "Intersection_exist": True},
            {"task_type": "subject-remove", "key": "k2", "instruction": "去掉星星",
             "instruction_language": "cn", "input_image": "imgs/b.png"},
            {"task_type": "color_alter", "key": "k3", "instruction": "make it red",
             "instruction_language": "en", "input_image": "imgs/missing.png"},
            {"task_type": "color_alter", "key": "k4", "instruction": "make it red",
             "instruction_language": "en", "input_image": "imgs/broken.png"}]
    prompts = _jsonl(tmp_path / "gedit.jsonl", rows)
    m = generate_suite("gedit", prompts, tmp_path / "o", lm=lm, method="arm-tiny")
    base = tmp_path / "o" / "arm-tiny" / "fullset"
    assert (base / "color_alter" / "en" / "k1.png").exists()
    assert (base / "subject-remove" / "cn" / "k2.png").exists()
    assert not (base / "color_alter" / "en" / "k3.png").exists()
    assert m["counts"]["skipped"] == 2 and m["counts"]["generated"] == 2
    reasons = {s["item_id"]: s for s in m["skipped"]}
    assert "missing.png" in reasons["color_alter/en/k3"]["reason"]
    assert "line 3" in reasons["color_alter/en/k3"]["where"]
    assert "broken.png" in reasons["color_alter/en/k4"]["reason"]


def test_imgedit_basic(lm, tmp_path) -> None:
    img = _edit_images(tmp_path)
    data = {"1": {"id": "animal/a.jpg", "prompt": "Replace the cat with a dog", "edit_type": "replace"},
            "2": {"id": "b.png", "prompt": "Add a hat", "edit_type": "add"}}
    path = tmp_path / "basic_edit.json"
    path.write_text(json.dumps(data))
    m = generate_suite("imgedit", path, tmp_path / "o", lm=lm, images=img)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["1.png", "2.png", MANIFEST]
    assert m["images"]["1"]["tag"] == "replace"


# -- bad input through the CLI: one message, exit 2, nothing overwritten -----------------------
def _cli(argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as e:
        arm_lm(argv)
    return e.value.code, capsys.readouterr().err


def test_cli_bad_prompt_files(lm, tmp_path, capsys) -> None:
    geneval = _jsonl(tmp_path / "evaluation_metadata.jsonl", GENEVAL)
    code, err = _cli(["suite", "generate", "--suite", "gedit", "--prompts", str(geneval), "--lm", str(lm),
                      "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "line 1" in err and "'task_type'" in err and "gedit" in err and "Traceback" not in err
    bad = _jsonl(tmp_path / "bad.jsonl", [GENEVAL[0], {"tag": "counting", "include": []}])
    code, err = _cli(["suite", "generate", "--suite", "geneval", "--prompts", str(bad), "--lm", str(lm),
                      "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "bad.jsonl:line 2" in err and "'prompt'" in err
    code, err = _cli(["suite", "generate", "--suite", "shapes", "--prompts", str(geneval), "--lm", str(lm),
                      "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "line 1" in err and "'shapes'" in err
    assert not (tmp_path / "o").exists()


def test_cli_refuses_other_models_output(lm, tmp_path, capsys) -> None:
    prompts = _jsonl(tmp_path / "evaluation_metadata.jsonl", GENEVAL[:1])
    out = tmp_path / "o"
    args = ["suite", "generate", "--suite", "geneval", "--prompts", str(prompts), "--out", str(out),
            "--samples", "1"]
    assert _cli(args + ["--lm", str(lm)], capsys)[0] == 0
    png = out / "00000" / "samples" / "0000.png"
    before = png.read_bytes()
    other = make_tiny(tmp_path / "other", seed=1, name="lm2")
    code, err = _cli(args + ["--lm", str(other)], capsys)
    assert code == 2 and "another run" in err and "model" in err and png.read_bytes() == before
    code, err = _cli(args + ["--lm", str(lm), "--guidance-scale", "3.0"], capsys)
    assert code == 2 and "guidance_scale" in err
    foreign = tmp_path / "foreign"
    (foreign / "00000" / "samples").mkdir(parents=True)
    (foreign / "00000" / "samples" / "0000.png").write_bytes(b"someone else's")
    code, err = _cli(["suite", "generate", "--suite", "geneval", "--prompts", str(prompts), "--out", str(foreign),
                      "--lm", str(lm)], capsys)
    assert code == 2 and "not written by" in err and "1 of this suite's output files" in err
    assert (foreign / "00000" / "samples" / "0000.png").read_bytes() == b"someone else's"
    assert os.listdir(foreign) == ["00000"]


def test_cli_old_guidance_flags_warn_and_set_the_same_settings(lm, tmp_path, capsys) -> None:
    """`arm-lm suite generate --cfg / --image-cfg`: hidden aliases of --guidance-scale /
    --image-guidance-scale (issue 32): the same settings, so a run resumes under either."""
    prompts = _jsonl(tmp_path / "evaluation_metadata.jsonl", GENEVAL[:1])
    out = tmp_path / "o"
    args = ["suite", "generate", "--suite", "geneval", "--prompts", str(prompts), "--out", str(out),
            "--samples", "1", "--lm", str(lm)]
    assert _cli(args + ["--guidance-scale", "2.0", "--image-guidance-scale", "1.5"], capsys)[0] == 0
    png = out / "00000" / "samples" / "0000.png"
    before = png.read_bytes()
    with pytest.warns(DeprecationWarning) as caught:
        assert _cli(args + ["--cfg", "2.0", "--image-cfg", "1.5"], capsys)[0] == 0   # resumed: same settings
    said = " | ".join(str(w.message) for w in caught)
    assert "--cfg is deprecated, use --guidance-scale" in said
    assert "--image-cfg is deprecated, use --image-guidance-scale" in said
    assert png.read_bytes() == before
    with pytest.warns(DeprecationWarning, match="--cfg is deprecated"):
        code, err = _cli(args + ["--cfg", "3.0", "--image-guidance-scale", "1.5"], capsys)
    assert code == 2 and "guidance_scale" in err


def test_shapes_loop_prompt_file_to_table(lm, tmp_path, capsys) -> None:
    """prompt file -> images -> GenEval-style table, through the CLI, on a (random) tiny LM."""
    prompts, out = tmp_path / "shapes.jsonl", tmp_path / "gen"
    assert _cli(["suite", "prompts", "--suite", "shapes", "--out", str(prompts), "--per-tag", "1"], capsys)[0] == 0
    assert _cli(["suite", "generate", "--suite", "shapes", "--prompts", str(prompts), "--lm", str(lm),
                 "--out", str(out), "--samples", "2"], capsys)[0] == 0
    code = _cli(["suite", "score", "--scorer", "shapes", "--suite", "shapes", "--out", str(out)], capsys)[0]
    assert code == 0
    data = json.loads((out / "scores-shapes.json").read_text())
    table = data["table"]
    assert set(table["per_tag"]) == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
    assert all(n == 2 for n in table["images_per_tag"].values())
    assert 0.0 <= table["overall"] <= 1.0 and data["prompts"] == str(prompts)
    assert all(len(r["scores"]) == 2 and len(r["correct"]) == 2 for r in data["records"])
    assert "| **overall** | 12 |" in (out / "scores-shapes.md").read_text()
    # scoring one suite's output as another is refused
    code, err = _cli(["suite", "score", "--scorer", "shapes", "--suite", "geneval", "--out", str(out)], capsys)
    assert code == 2 and "holds the 'shapes' suite" in err
