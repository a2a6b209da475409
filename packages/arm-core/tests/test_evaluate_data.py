"""``arm-lm evaluate`` on your own data: per-task loss on shards, VQA exact match from a JSONL,
T2I alignment through a registry dual encoder; figures with standard errors; CLI errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from arm_core.evaluate_data import (
    DualEncoder,
    _ratio_se,
    evaluate_task_loss,
    evaluate_vqa_file,
    normalize_vqa_answer,
    read_vqa_file,
    score_alignment,
)
from arm_data.shapes import ShapesWorld
from PIL import Image


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny visual tokenizer, shards of 6 ShapesWorld scenes, an exported random LM, and a
    VQA file / prompt file of PNGs on disk."""
    from arm_core.testing import save_tiny_lm
    from arm_data.pretokenize import make_source, pretokenize
    from arm_data.text_tokenizer import TextTokenizer
    from arm_tokenizer.testing.toys import tiny_projected_tokenizer

    root = tmp_path_factory.mktemp("evaldata")
    torch.manual_seed(0)
    vis = tiny_projected_tokenizer(image_size=64, patch_size=16)
    vis.save_pretrained(root / "tok")
    pretokenize(vis, make_source("shapes:train", ["pair", "vqa", "edit"], 6, num_questions=1),
                root / "shards", shard_size=3, num_workers=0, progress=False)
    world = ShapesWorld("train", 0, 64, 64)
    texts = [t for i in range(20) for t in (world[i].caption, world[i].edit.instruction,
                                            *[q.question for q in world[i].qa], *[q.answer for q in world[i].qa])]
    text = TextTokenizer.train(texts, vocab_size=400)
    text.save(root / "tt")
    layout = text.layout(codebook_size=16, max_grid_h=8, max_grid_w=8)
    save_tiny_lm(root, layout)
    (root / "img").mkdir()
    vqa, prompts = [], []
    for i in range(4):
        s = world[100 + i]
        s.image.save(root / "img" / f"{i}.png")
        qa = s.qa[0]
        vqa.append({"image": f"img/{i}.png", "question": qa.question, "answer": qa.answer, "kind": qa.kind})
        prompts.append({"prompt": s.caption, "image": f"img/{i}.png"})
    (root / "vqa.jsonl").write_text("".join(json.dumps(x) + "\n" for x in vqa))
    (root / "prompts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in prompts))
    return root


def test_ratio_se_and_vqa_normalisation():
    # documents (nll sum, tokens): r = 9 / 6; residuals 3-1.5*2=0, 6-1.5*4=0 -> 0
    assert _ratio_se([3.0, 6.0], [2.0, 4.0]) == 0.0
    ys, xs = [1.0, 5.0, 2.0], [2.0, 2.0, 4.0]
    r = sum(ys) / sum(xs)
    want = math.sqrt(sum((y - r * x) ** 2 for y, x in zip(ys, xs, strict=True)) / (3 * 2)) / (8 / 3)
    assert _ratio_se(ys, xs) == pytest.approx(want) and _ratio_se([1.0], [1.0]) is None
    assert normalize_vqa_answer("Two.") == "2" == normalize_vqa_answer("2")
    assert normalize_vqa_answer("The Red one!") == "red 1"


def test_task_loss_is_the_mean_token_nll(setup):
    from arm_core.checkpoint import load_lm

    lm = load_lm(setup / "lm")
    res = evaluate_task_loss(lm, setup / "shards", ("t2i", "und", "edit"), batch_size=4)
    assert {t: r["documents"] for t, r in res.items()} == {"t2i": 6, "und": 6, "edit": 6}
    # loss tokens: T2I = the 4x4 codes + <eoi> + <eos>
    assert res["t2i"]["tokens"] == 6 * (16 + 2)
    for r in res.values():
        assert r["loss"] > 0 and r["loss_se"] is not None and r["loss_se"] >= 0
        assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))
    # padding never leaks: one document per pass gives the same figures
    one = evaluate_task_loss(lm, setup / "shards", ("t2i", "und", "edit"), batch_size=1)
    for t in res:
        assert one[t]["loss"] == pytest.approx(res[t]["loss"], rel=1e-5)
    assert evaluate_task_loss(lm, setup / "shards", ("und",), max_documents=2)["und"]["documents"] == 2
    # a model with all-zero weights predicts uniformly: loss = log(vocabulary) exactly
    with torch.no_grad():
        for p in lm.model.parameters():
            p.zero_()
    v = lm.model(torch.zeros(1, 2, dtype=torch.long)).shape[-1]
    flat = evaluate_task_loss(lm, setup / "shards", ("t2i", "edit"))
    for r in flat.values():
        assert r["loss"] == pytest.approx(math.log(v), rel=1e-5) and r["loss_se"] == pytest.approx(0, abs=1e-5)
    with pytest.raises(ValueError, match="unknown task"):
        evaluate_task_loss(lm, setup / "shards", ("t2i", "caption"))


class _Answers:
    """An Understand stand-in that answers from a table, and records its calls."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def __call__(self, images, questions, **kw):
        self.calls.append((list(images), kw))
        return [self.table.get(q, "no idea") for q in questions]


def test_vqa_file_exact_match(setup, tmp_path):
    items = read_vqa_file(setup / "vqa.jsonl")
    assert len(items) == 4 and items[0].image == str(setup / "img" / "0.png")
    right = {it.question: f"The {it.answers[0].upper()}." for it in items[:3]}
    und = _Answers(right)
    res = evaluate_vqa_file(und, setup / "vqa.jsonl")
    assert res["n"] == 4 and res["accuracy"] == 0.75
    assert res["accuracy_se"] == pytest.approx(math.sqrt(0.75 * 0.25 / 3))
    assert und.calls[0][1]["temperature"] == 0.0 and und.calls[0][0][0].endswith("0.png")
    assert sum(k["n"] for k in res["by_kind"].values()) == 4
    assert [e["correct"] for e in res["examples"]] == [True, True, True, False]
    # several accepted answers, number words
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"image": str(setup / "img" / "0.png"), "question": "how many?",
                             "answers": ["three", "3 shapes"]}) + "\n")
    assert evaluate_vqa_file(_Answers({"how many?": "3"}), f)["accuracy"] == 1.0
    # bad lines name file and line
    f.write_text('{"image": "img/0.png", "question": "q", "answer": "a"}\n\n{"image": "nope.png", "question": "q"}\n')
    with pytest.raises(FileNotFoundError, match=rf"{f}:1: image .*img/0.png' does not exist"):
        read_vqa_file(f)
    f.write_text(f'{{"image": "{setup}/img/0.png", "question": "q"}}\n')
    with pytest.raises(ValueError, match=rf"{f}:1: field 'answer' must be a non-empty string"):
        read_vqa_file(f)


# ---------------------------------------------------------------------- alignment
class _ColorEncoder(torch.nn.Module):
    """An image tower with its own pooling head: the mean colour's dominant channel, one-hot."""

    out_dim, patch_size = 3, 8

    def forward(self, x):
        return x.flatten(2).transpose(1, 2)

    def embed_images(self, x):
        return torch.nn.functional.one_hot(x.mean((2, 3)).argmax(1), 3).float()


class _ColorText(torch.nn.Module):
    """Colour words -> one-hot, with a SigLIP logit scale and bias (transformers' names)."""

    embed_dim = 3

    def __init__(self):
        super().__init__()
        self.logit_scale, self.logit_bias = torch.nn.Parameter(torch.tensor(math.log(10.0))), torch.nn.Parameter(
            torch.tensor(-5.0))

    def encode_text(self, texts):
        return torch.stack([torch.nn.functional.one_hot(torch.tensor(
            ["red", "green", "blue"].index(t.split()[0])), 3).float() for t in texts])


def test_alignment_scores_the_right_pairs():
    scorer = DualEncoder(_ColorEncoder(), _ColorText(), image_size=8)
    images = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    good = score_alignment(scorer, images, ["red thing", "green thing", "blue thing"])
    assert good["cosine"] == 1.0 and good["prompt_r1"] == 1.0 and good["cosine_se"] == 0.0
    assert good["siglip_prob"] == pytest.approx(1 / (1 + math.exp(-(10 - 5))))
    bad = score_alignment(scorer, images[::-1], ["red thing", "green thing", "blue thing"])
    assert bad["prompt_r1"] == pytest.approx(1 / 3) and bad["cosine"] == pytest.approx(1 / 3)
    with pytest.raises(TypeError, match="no image head"):
        DualEncoder(torch.nn.Linear(2, 2), _ColorText())


def test_alignment_old_cfg_scales_warns_and_scores_the_same(tmp_path):
    """``evaluate_t2i_alignment(cfg_scales=)``: the deprecated name of ``guidance_scales``."""
    from arm_core.evaluate_data import evaluate_t2i_alignment

    colors = ("red", "green", "blue")
    (tmp_path / "p.txt").write_text("".join(f"{c} thing\n" for c in colors))
    calls = []

    def t2i(prompts, guidance_scale, **kw):  # draws the right colour at guidance > 1 only
        calls.append(guidance_scale)
        return [Image.new("RGB", (8, 8), p.split()[0] if guidance_scale > 1 else "red") for p in prompts]

    scorer = DualEncoder(_ColorEncoder(), _ColorText(), image_size=8)
    new = evaluate_t2i_alignment(t2i, scorer, tmp_path / "p.txt", guidance_scales=[1.0, 2.0])
    with pytest.warns(DeprecationWarning, match="evaluate_t2i_alignment: cfg_scales= is deprecated, use guidance_scales="):
        old = evaluate_t2i_alignment(t2i, scorer, tmp_path / "p.txt", cfg_scales=[1.0, 2.0])
    assert old == new and calls == [1.0, 2.0, 1.0, 2.0]
    assert new["cfg=2"]["prompt_r1"] == 1.0 and new["cfg=1"]["prompt_r1"] < 1.0


def _teacher_args(teacher):
    tower = json.loads((teacher / "image_tower.json").read_text())
    return {"model_name": tower["model_name"], "model_kwargs": tower.get("model_kwargs") or {},
            "checkpoint_path": str(teacher / "image_tower.safetensors")}


def test_registry_pair_matches_the_teacher(tmp_path):
    """``timm`` + ``teacher_text`` from the registry: the teacher's own head, scale and bias."""
    from pathlib import Path

    from arm_tokenizer.teachers.toy import toy_teacher_dir

    teacher = Path(toy_teacher_dir())
    scorer = DualEncoder.from_registry("timm", "teacher_text", _teacher_args(teacher),
                                       {"checkpoint": str(teacher)}, image_size=32)
    assert scorer.log_scale == pytest.approx(float(scorer.text_encoder.log_temperature))
    images = [Image.new("RGB", (40, 32), c) for c in ("red", "blue")]
    prompts = ["a red circle on the left", "a blue square on the right"]
    res = score_alignment(scorer, images, prompts)
    from arm_tokenizer.images import pil_to_tensor

    x = torch.stack([pil_to_tensor(im.crop((4, 0, 36, 32))) for im in images])  # the centre 32x32
    with torch.no_grad():
        img = torch.nn.functional.normalize(scorer.text_encoder.embed_image_tokens(scorer.encoder(x)), dim=-1)
        txt = torch.nn.functional.normalize(scorer.text_encoder.encode_text(prompts), dim=-1)
    cos = (img * txt).sum(1)
    assert res["cosine"] == pytest.approx(float(cos.mean()), abs=1e-5)
    assert 0.0 < res["siglip_prob"] < 1.0 and res["prompt_r1"] in (0.0, 0.5, 1.0)


def test_siglip_head_of_a_tokenizer_export(tmp_path, capsys):
    """An explicit SigLIP head (a tokenizer's L_sig, saved beside its export) comes first; the
    CLI rebuilds it, with the text encoder it records, from ``--scorer-head DIR``."""
    from pathlib import Path

    from arm_tokenizer.losses.siglip import SigLIPLoss
    from arm_tokenizer.siglip_export import save_siglip_heads
    from arm_tokenizer.teachers.frozen import TeacherTextEncoder
    from arm_tokenizer.teachers.toy import toy_teacher_dir

    teacher = Path(toy_teacher_dir())
    args = _teacher_args(teacher)
    from arm_tokenizer.framework import registry

    enc = registry.create("encoder", "timm", **args)
    torch.manual_seed(3)
    loss = SigLIPLoss(TeacherTextEncoder(str(teacher)), in_dim=enc.out_dim, head="mlp", init_bias=-3.0)
    scorer = DualEncoder(enc, loss.text_encoder, head=loss, image_size=32)
    assert (scorer.log_scale, scorer.bias) == (pytest.approx(math.log(10.0)), -3.0)
    images = [Image.new("RGB", (32, 32), c) for c in ("red", "blue", "green")]
    prompts = ["a red circle on the left", "a blue square on the right", "a green circle on the left"]
    res = score_alignment(scorer, images, prompts)
    from arm_tokenizer.images import pil_to_tensor

    with torch.no_grad():
        img = loss.embed_tokens(enc(torch.stack([pil_to_tensor(im) for im in images])))
        txt = torch.nn.functional.normalize(loss.text_encoder.encode_text(prompts), dim=-1)
    assert res["cosine"] == pytest.approx(float((img * txt).sum(1).mean()), abs=1e-5)
    save_siglip_heads([loss], tmp_path)
    rebuilt = DualEncoder.from_registry("timm", None, args, head_dir=str(tmp_path), image_size=32)
    assert score_alignment(rebuilt, images, prompts)["cosine"] == pytest.approx(res["cosine"], abs=1e-5)
    with pytest.raises(FileNotFoundError, match="has no SigLIP head"):
        DualEncoder.from_registry("timm", None, args, head_dir=str(tmp_path / "nothing"))


# ---------------------------------------------------------------------- the CLI
def _run(argv, capsys):
    from arm_core.cli import main

    with pytest.raises(SystemExit) as e:
        main(["evaluate", *argv])
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_cli_on_own_data(setup, tmp_path, capsys):
    from pathlib import Path

    from arm_tokenizer.teachers.toy import toy_teacher_dir

    teacher = Path(toy_teacher_dir())
    out = tmp_path / "m.json"
    code, stdout, err = _run(["--lm", str(setup / "lm"), "--data", str(setup / "shards"),
                              "--vqa", str(setup / "vqa.jsonl"), "--t2i-prompts", str(setup / "prompts.jsonl"),
                              "--guidance-scale", "1", "2", "--batch-size", "4", "--max-new-tokens", "4",
                              "--scorer-encoder", "timm", "--scorer-encoder-args", json.dumps(_teacher_args(teacher)),
                              "--scorer-text-encoder", "teacher_text",
                              "--scorer-text-args", f"{{checkpoint: {teacher}}}", "--scorer-image-size", "32",
                              "--out", str(out)], capsys)
    assert code == 0, err
    m = json.loads(out.read_text())
    assert set(m["loss"]) == {"t2i", "und", "edit"} and all(r["loss_se"] is not None for r in m["loss"].values())
    assert m["vqa"]["n"] == 4 and 0.0 <= m["vqa"]["accuracy"] <= 1.0 and "accuracy_se" in m["vqa"]
    assert set(m["t2i"]) == {"cfg=1", "cfg=2", "reference"}
    for r in m["t2i"].values():
        assert r["n"] == 4 and -1.0 <= r["cosine"] <= 1.0 and {"cosine_se", "prompt_r1_se", "siglip_prob_se"} <= set(r)
    assert m["summary"]["loss"]["t2i"] == m["loss"]["t2i"]["loss"] and "wrote" in stdout
    assert m["settings"]["scorer"] == "encoder TimmEncoder + text_encoder TeacherTextEncoder"


@pytest.mark.parametrize("extra, message", [
    (["--t2i-prompts", "{root}/prompts.jsonl"], "--t2i-prompts needs a scorer"),
    (["--vqa", "{root}/missing.jsonl"], "--vqa '{root}/missing.jsonl': no such file"),
    (["--data", "{root}/shards", "--loss-tasks", "t2i", "captions"], "unknown task(s) ['captions']"),
    (["--t2i-prompts", "{root}/prompts.jsonl", "--scorer-encoder", "timmm", "--scorer-text-encoder", "teacher_text"],
     "no encoder named 'timmm' is registered. Did you mean: timm?"),
    (["--t2i-prompts", "{root}/prompts.jsonl", "--scorer-encoder", "timm", "--scorer-text-encoder", "teacher_text",
      "--scorer-encoder-args", "[1, 2]"], "--scorer-encoder-args: expected a mapping"),
])
def test_cli_bad_input_is_one_line_exit_2(setup, capsys, extra, message):
    code, _, err = _run(["--lm", str(setup / "lm"), *[a.format(root=setup) for a in extra]], capsys)
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and message.format(root=setup) in err


def test_hf_dual_encoder_scores_with_its_own_heads():
    """hf_vision + hf_text from one CLIP checkpoint: the image side keeps its own projection
    (keep_head set by from_registry), so the scores are CLIPModel's."""
    pytest.importorskip("transformers")
    import transformers as tf
    from arm_tokenizer.testing.hf_tiny import tiny_hf_dir

    d = tiny_hf_dir("clip")
    scorer = DualEncoder.from_registry("hf_vision", "hf_text", {"name_or_path": d}, {"name_or_path": d})
    assert scorer.encoder.has_image_head and scorer.image_size == (32, 32)
    assert scorer.log_scale == pytest.approx(2.5)
    images = [Image.new("RGB", (48, 40), c) for c in ("red", "green", "blue")]
    prompts = ["a red circle on the left", "a green square on the right", "a blue circle on the right"]
    res = score_alignment(scorer, images, prompts)
    full = tf.CLIPModel.from_pretrained(d).eval()
    tok = tf.AutoTokenizer.from_pretrained(d)
    from arm_tokenizer.images import ImageTransform, pil_to_tensor

    x = torch.stack([pil_to_tensor(ImageTransform((32, 32), crop="center")(im)) for im in images])
    mean = torch.tensor(scorer.encoder.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(scorer.encoder.image_std).view(1, 3, 1, 1)
    with torch.no_grad():
        img = full.get_image_features(pixel_values=((x + 1) / 2 - mean) / std)
        txt = full.get_text_features(**tok(prompts, padding=True, return_tensors="pt"))
    img = torch.nn.functional.normalize(getattr(img, "pooler_output", img), dim=-1)
    txt = torch.nn.functional.normalize(getattr(txt, "pooler_output", txt), dim=-1)
    cos = (img * txt).sum(-1)
    assert res["cosine"] == pytest.approx(cos.mean().item(), abs=1e-4)
    assert res["siglip_prob"] == pytest.approx(torch.sigmoid(cos * math.exp(2.5)).mean().item(), abs=1e-4)


def test_hf_towers_of_different_widths_are_one_clear_error():
    pytest.importorskip("transformers")
    from arm_tokenizer.testing.hf_tiny import tiny_hf_dir

    # The tiny SigLIP2 checkpoint's text head projects to 24 dims, its image head gives 32.
    d = tiny_hf_dir("siglip2")
    scorer = DualEncoder.from_registry("hf_vision", "hf_text", {"name_or_path": d}, {"name_or_path": d},
                                       image_size=(16, 16))
    with pytest.raises(ValueError, match="image embeddings have 32 dimensions but text embeddings 24"):
        score_alignment(scorer, [Image.new("RGB", (16, 16), "red")], ["a red circle on the left"])
    with pytest.raises(TypeError, match="no image head"):
        DualEncoder.from_registry("hf_vision", "hf_text", {"name_or_path": d, "keep_head": False},
                                  {"name_or_path": d})


def test_cli_t2i_alignment_with_hf_towers(setup, tmp_path, capsys):
    pytest.importorskip("transformers")
    from arm_tokenizer.testing.hf_tiny import tiny_hf_dir

    d = tiny_hf_dir("clip")
    out = tmp_path / "m.json"
    code, _, err = _run(["--lm", str(setup / "lm"), "--t2i-prompts", str(setup / "prompts.jsonl"), "--guidance-scale", "1",
                         "--batch-size", "4", "--scorer-encoder", "hf_vision", "--scorer-encoder-args",
                         f"{{name_or_path: {d}}}", "--scorer-text-encoder", "hf_text",
                         "--scorer-text-args", f"{{name_or_path: {d}}}", "--out", str(out)], capsys)
    assert code == 0, err
    m = json.loads(out.read_text())
    assert m["settings"]["scorer"] == "encoder HFVisionEncoder + text_encoder HFTextEncoder"
    for r in m["t2i"].values():
        assert r["n"] == 4 and -1.0 <= r["cosine"] <= 1.0 and 0.0 <= r["siglip_prob"] <= 1.0
