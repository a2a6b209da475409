"""The ``task`` kind: built-ins listed by the registry, unchanged sequences, and a plugin task.

The expected digests below were computed by the code before tasks became a kind (the
``task ==`` branches of ``formats`` / ``datamodules.tokens``) on the same ShapesWorld
records, so a change to any layout, loss mask, length, dropout draw or prompt fails here.
"""

from __future__ import annotations

import hashlib
import json
import random

import pytest
import torch
from arm_data.datamodules.tokens import TokenDataModule, _BatchBuilder, _Corpus, doc_length
from arm_data.formats import ConditionDropout, TaskFormatter, TokenSequence, _Builder, image_span
from arm_data.pretokenize import PatchColorTokenizer, RawRecord, ShapesSource, _encode, pretokenize
from arm_data.records import PairRecord, VQARecord, record_from_fields
from arm_data.tasks import BUILTIN_TASKS, Task, UnknownTaskError
from arm_data.tasks.registry import canonical_task, get_task, record_name, task_id, task_names
from arm_data.text_tokenizer import TextTokenizer
from arm_data.vocab import DEFAULT_SPECIAL_TOKENS, VocabLayout
from arm_tokenizer.framework import registry

TASKS = ["t2i", "und", "edit", "text"]

# Captured from the pre-change code path (see the module docstring).
EXPECTED = {
    "t2i": {"lengths": [112, 50, 87, 79, 34, 84], "plain": "b32669e7887102de", "dropout": "7ec7ace759ec4852",
            "dropped": [False, True, False, True, True, False]},
    "und": {"lengths": [52, 63, 115, 53, 80, 74, 97, 53, 52, 54, 133, 88], "plain": "54fe979c78e1cdb1",
            "dropout": "be01fabd63e77989"},
    "edit": {"lengths": [97, 94, 106, 86, 81, 87], "plain": "9206410d5d674e43", "dropout": "3cbd67c8721c9eb7",
             "dropped": [(False, False), (True, True), (False, False), (False, True), (False, True),
                         (False, False)]},
    "text": {"lengths": [92, 30, 67, 59, 14, 64], "plain": "005ad19024012e14", "dropout": "63149d5795115d0c"},
}
EXPECTED_LOSS_ON_ALL = "913785e4de31f394"
EXPECTED_BATCH = {"input_ids": "26c41036ad68d1b8", "targets": "560eac2945bc29c4", "position_ids": "7db8bd5efc2cf8aa",
                  "doc_ids": "f8ab688c7c827c31", "task_ids": "30b1f9b1d15d0363"}
EXPECTED_PROMPTS = {"t2i": "c6aee45130afadac", "t2i_uncond": "07bb3d20ec959165", "und": "b1930c9223730c25",
                    "edit": {"full": "cc947c5ab0a7c93e", "image": "ee8bc94e47e70acd", "text": "6f8cfc7083c8e7d0",
                             "uncond": "3dafc3eece1b0d52"}}


class CharText:
    """A deterministic stand-in text tokenizer (ids < 97)."""

    vocab_size = 97

    def encode(self, s):
        return [(ord(c) * 7) % 97 for c in s]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def digest(ids, mask=None):
    data = [list(map(int, ids)), None if mask is None else list(map(bool, mask))]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def shapes_records():
    tok = PatchColorTokenizer(32, 8, 4)
    src = ShapesSource("train", 0, ("pair", "vqa", "edit"), 6, num_questions=2)
    raws = [r for i in range(6) for r in src.load(i, (32, 32))]
    return _encode(tok, raws, 8, "cpu", tok.grid)


@pytest.fixture(scope="module")
def layout():
    return VocabLayout(97, 64, 8, 8, DEFAULT_SPECIAL_TOKENS)


# ---------------------------------------------------------------------- the registry
def test_builtin_tasks_are_registered_and_listed(capsys):
    comps = {c.name: c for c in registry.list_components("task")}
    assert set(BUILTIN_TASKS) <= set(comps)
    assert all(comps[t].dist == "arm-data" for t in BUILTIN_TASKS)
    assert task_names()[:4] == ["t2i", "und", "edit", "text"]  # the ids checkpoints store
    for name in BUILTIN_TASKS:
        task = get_task(name)
        assert isinstance(task, Task) and task.name == name and get_task(name) is task
        assert isinstance(task, registry.base_class("task"))
    from arm_data.cli import main

    with pytest.raises(SystemExit) as e:
        main(["list", "task"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in BUILTIN_TASKS)


def test_record_names_are_aliases_in_one_place():
    assert canonical_task("pair") == "t2i" and canonical_task("vqa") == "und" and canonical_task("edit") == "edit"
    assert get_task("pair") is get_task("t2i") and get_task("text").schema == "t2i"
    assert record_name("t2i") == "pair" and record_name("und") == "vqa" and record_name("edit") == "edit"
    with pytest.raises(UnknownTaskError, match=r"unknown task 'caption'; known tasks: \['t2i', 'und', 'edit'"):
        get_task("caption")
    with pytest.raises(UnknownTaskError, match="unknown task 'pair'"):
        canonical_task("pair", aliases=False)
    # old records read unchanged, through the schema's task
    rec = record_from_fields("pair", {"caption": "a red circle", "task": "pair", "spec": 1}, {"image": "x"}, "k", "w")
    assert isinstance(rec, PairRecord) and rec.text == "a red circle" and rec.extra == {"spec": 1}
    rec = record_from_fields("und", {"question": "q?", "answer": "a"}, {"image": "x"}, "k", "w")
    assert isinstance(rec, VQARecord) and rec.turns()[1] == {"role": "assistant", "text": "a"}
    with pytest.raises(ValueError, match="unknown task 'foo'"):
        record_from_fields("foo", {}, {}, "k", "w")


# ---------------------------------------------------------------------- no behaviour change
def test_builtin_tasks_reproduce_the_old_sequences(shapes_records, layout):
    corpus = _Corpus(shapes_records, CharText(), layout, False, ConditionDropout(0.5, 0.2, 0.2, 0.2), 200, TASKS)
    for t in TASKS:
        docs, exp = corpus.docs[t], EXPECTED[t]
        built = [corpus.build(t, it, None) for it in docs]
        assert [doc_length(t, it) for it in docs] == exp["lengths"] == [len(s) for s in built], t
        assert digest([x for s in built for x in s.input_ids], [m for s in built for m in s.loss_mask]) == exp["plain"]
        rng = random.Random(t)
        assert digest([x for it in docs for x in corpus.build(t, it, rng).input_ids]) == exp["dropout"], t
        metas = [corpus.build(t, it, random.Random(i)).meta for i, it in enumerate(docs)]
        if t == "t2i":
            assert [m["dropped_caption"] for m in metas] == exp["dropped"]
        if t == "edit":
            assert [(m["dropped_source"], m["dropped_instruction"]) for m in metas] == exp["dropped"]
    all_loss = _Corpus(shapes_records, CharText(), layout, True, ConditionDropout(0, 0, 0, 0), 200, TASKS)
    assert digest([m for t in TASKS for it in all_loss.docs[t] for m in all_loss.build(t, it, None).loss_mask]) \
        == EXPECTED_LOSS_ON_ALL
    batch = _BatchBuilder(corpus, {"t2i": 0.4, "und": 0.2, "edit": 0.3, "text": 0.1}, 3, 200, True, 7).batch(0, 0, 2)
    assert {k: digest(v.reshape(-1).tolist()) for k, v in batch.items()} == EXPECTED_BATCH


def test_builtin_tasks_reproduce_the_old_prompts(shapes_records, layout):
    fmt = TaskFormatter(layout, CharText())
    pair, vqa, ed = (next(r for r in shapes_records if r.task == k) for k in ("pair", "vqa", "edit"))
    got = {"t2i": digest(fmt.t2i_prompt(pair.texts["text"], 4, 4)), "t2i_uncond": digest(fmt.t2i_prompt(None, 4, 4)),
           "und": digest(fmt.und_prompt(vqa.image, vqa.texts["question"])),
           "edit": {k: digest(v) for k, v in fmt.edit_cfg_prompts(ed.source, ed.texts["instruction"], 4, 4).items()}}
    assert got == EXPECTED_PROMPTS
    # the generic entry point gives the same prompts, and a prompt prefixes its training sequence
    rows = fmt.prompts("edit", {"source": ed.source, "instruction": ed.texts["instruction"]}, (4, 4))
    assert {k: digest(v) for k, v in rows.items()} == EXPECTED_PROMPTS["edit"]
    t2i = fmt.prompts("t2i", {"caption": pair.texts["text"]}, (4, 4))
    assert digest(t2i["full"]) == EXPECTED_PROMPTS["t2i"] and digest(t2i["uncond"]) == EXPECTED_PROMPTS["t2i_uncond"]
    seq = fmt.t2i(pair.texts["text"], pair.image)
    assert seq.input_ids[:len(t2i["full"])] == t2i["full"]


def test_guidance_branches_are_the_tasks():
    rows = {"full": [1], "image": [2], "text": [3], "uncond": [4]}
    edit, t2i = get_task("edit"), get_task("t2i")
    assert edit.branches(rows, 1.0, 1.0) is None
    two = edit.branches(rows, 1.5, 1.0)
    assert two.uncond == [2] and two.image is None and two.guidance_scale == 1.5
    three = edit.branches(rows, 1.5, 1.25)
    assert (three.uncond, three.image, three.guidance_scale, three.image_guidance_scale) == ([4], [2], 1.5, 1.25)
    assert t2i.branches({"full": [1], "uncond": [4]}, 1.0) is None
    one = t2i.branches({"full": [1], "uncond": [4]}, 2.0, 1.25)  # T2I has no image condition
    assert one.uncond == [4] and one.image is None and one.guidance_scale == 2.0
    assert get_task("und").branches({"full": [1]}, 1.5) is None


# ---------------------------------------------------------------------- a third-party task
class CaptionTask(Task):
    """Image captioning from pair records: ``<bos> <und> IMG <assistant> caption* <eos>*``."""

    name = "caption"
    token = "<und>"
    reads = "t2i"
    image_fields = ("image",)

    def document(self, record, encode):
        return (encode(record.texts["text"]), record.image)

    def length(self, doc):
        caption, image = doc
        return 2 + image.h * image.w + 4 + 1 + len(caption) + 1

    def sequence(self, layout, doc, loss_on_all=False, dropout=None, rng=None):
        caption, image = doc
        b = _Builder()
        b.add([layout.bos_id, layout.special_id(self.token), *image_span(layout, image),
               layout.special_id("<assistant>")], False)
        b.add([*caption, layout.eos_id], True)
        return b.build(self.name, loss_on_all)


@pytest.fixture
def caption_task(arm_register):
    arm_register(f"task:caption={__name__}:CaptionTask")


class PairSource:
    tasks = ("pair",)

    def __len__(self):
        return 12

    def describe(self):
        return {"kind": "tasks-kind-test"}

    def load(self, i, size):
        img = torch.randint(0, 256, (3, *size), generator=torch.Generator().manual_seed(i), dtype=torch.uint8)
        return [RawRecord("pair", {"text": f"a {['red', 'green', 'blue'][i % 3]} square {i}"}, [img], f"k{i}", i)]


def test_third_party_task_builds_batches_through_the_same_path(caption_task, tmp_path):
    assert "caption" in task_names() and task_id("caption") == 4  # after the built-ins
    task = get_task("caption")
    assert type(task).__name__ == "CaptionTask" and task.schema == "t2i"
    assert isinstance(record_from_fields("caption", {"text": "hi"}, {"image": "x"}, "k", "w"), PairRecord)
    with pytest.raises(NotImplementedError, match="does not generate"):
        task.prompts(None, {})
    pretokenize(PatchColorTokenizer(16, 4, 4), PairSource(), tmp_path, shard_size=12, num_workers=0, progress=False)
    TextTokenizer.train([f"a {c} square {i}" for i in range(12) for c in ("red", "green", "blue")],
                        vocab_size=300, save_to=tmp_path)
    dm = TokenDataModule(str(tmp_path), seq_len=64, batch_size=2, task_weights={"caption": 1.0},
                         val_fraction=0.0, packing=False)
    assert dm.task_names[4] == "caption"
    b = dm.batch(0, 0)
    L = dm.layout
    for r in range(2):
        live = b["doc_ids"][r] >= 0
        assert (b["task_ids"][r][live] == 4).all()
        ids = b["input_ids"][r][live].tolist()
        n_img = 4 * 4
        assert ids[:2] == [L.bos_id, L.special_id("<und>")] and ids[2 + 3 + n_img + 1] == L.special_id("<assistant>")
        caption = ids[2 + 3 + n_img + 2:-1]
        assert ids[-1] == L.eos_id and dm.text.decode(caption).startswith("a ")
        # loss on exactly the caption and <eos>: the targets of the preceding positions
        tgt = b["targets"][r][live]
        assert (tgt[:-1] != -100).sum() == len(caption) + 1
        assert len(ids) == task.length(next(d for d in dm._train.corpus.docs["caption"]
                                            if d[0] == caption))
    assert isinstance(TokenSequence([1, 2], [False, True], "caption"), TokenSequence)
    with pytest.raises(ValueError, match="task_weights has unknown tasks \\['captions'\\]"):
        TokenDataModule(str(tmp_path), task_weights={"captions": 1.0})


def test_guidance_branches_old_names_warn() -> None:
    """``GuidanceBranches(scale=, image_scale=)`` and its ``.scale`` / ``.image_scale``: the
    deprecated names of ``guidance_scale`` / ``image_guidance_scale`` (issue 32)."""
    from arm_data.tasks.base import GuidanceBranches

    new = GuidanceBranches([4], guidance_scale=1.5, image=[2], image_guidance_scale=1.25)
    with pytest.warns(DeprecationWarning, match="GuidanceBranches: scale= is deprecated, use guidance_scale="):
        with pytest.warns(DeprecationWarning, match="image_scale= is deprecated, use image_guidance_scale="):
            old = GuidanceBranches([4], scale=1.5, image=[2], image_scale=1.25)
    assert old == new == get_task("edit").branches({"full": [1], "image": [2], "uncond": [4]}, 1.5, 1.25)
    with pytest.warns(DeprecationWarning, match=r"GuidanceBranches\.scale is deprecated: use guidance_scale"):
        assert new.scale == 1.5
    with pytest.warns(DeprecationWarning, match=r"GuidanceBranches\.image_scale is deprecated"):
        assert new.image_scale == 1.25
    with pytest.raises(TypeError, match="both guidance_scale= and its deprecated name scale="):
        GuidanceBranches([4], guidance_scale=1.5, scale=1.5)
    with pytest.raises(TypeError, match="missing the argument guidance_scale="):
        GuidanceBranches([4])
    with pytest.raises(AttributeError):                      # still frozen
        new.guidance_scale = 2.0
    assert GuidanceBranches([4], 2.0).image_guidance_scale == 1.0
