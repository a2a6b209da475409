"""The ``interleaved`` task: layout, loss options, CFG prompts and dropout, JSONL records, shards."""

import json
import random

import pytest
from arm_data.datamodules.tokens import IGNORE_INDEX, TokenDataModule, check_task_options
from arm_data.datasets.jsonl import JsonlRecords
from arm_data.errors import BadSampleError, ErrorPolicy
from arm_data.formats import ConditionDropout, ImageTokens
from arm_data.pretokenize import PatchColorTokenizer, make_source, pretokenize
from arm_data.shards import iter_records
from arm_data.tasks import get_task, task_names, vocab_specials
from arm_data.tasks.interleaved import InterleavedRecord, InterleavedTask
from arm_data.text_tokenizer import TextTokenizer
from arm_data.vocab import DEFAULT_SPECIAL_TOKENS, VocabLayout
from PIL import Image

TASK = get_task("interleaved")


@pytest.fixture
def layout():
    return VocabLayout(50, 32, 4, 4, vocab_specials(["interleaved"]))


def img(h, w, start=0):
    return ImageTokens([(start + i) % 32 for i in range(h * w)], h, w)


def chain_doc():
    """image (2x2), text, image (1x3), text, image (2x2): an edit chain of two steps."""
    return (img(2, 2), [3, 4, 5], img(1, 3, 7), [6, 7], img(2, 2, 11))


def test_registered_with_its_token_appended_after_the_builtins(layout):
    assert isinstance(TASK, InterleavedTask) and "interleaved" in task_names()
    specials = vocab_specials(["t2i", "interleaved"])
    assert specials[:len(DEFAULT_SPECIAL_TOKENS)] == DEFAULT_SPECIAL_TOKENS and specials[-1] == "<doc>"
    assert vocab_specials(["t2i", "und", "edit"]) == DEFAULT_SPECIAL_TOKENS  # old layouts unchanged
    assert layout.special_id("<doc>") == layout.special_offset + len(DEFAULT_SPECIAL_TOKENS)


def test_layout_each_image_with_its_own_grid(layout):
    L = layout
    seq = TASK.sequence(L, chain_doc())
    span = lambda im: [*L.shape_token_ids(im.h, im.w), L.boi_id, *L.image_code_to_id(im.codes), L.eoi_id]  # noqa: E731
    a, t1, b, t2, c = chain_doc()
    assert seq.input_ids == [L.bos_id, L.special_id("<doc>"), *span(a), 3, 4, 5, *span(b), 6, 7, *span(c), L.eos_id]
    assert seq.task == "interleaved"
    assert L.grid_from_shape_ids(*seq.input_ids[2 + 8 + 3: 2 + 8 + 3 + 2]) == (1, 3)


@pytest.mark.parametrize("loss", ["both", "text", "image"])
def test_loss_option_picks_the_targets(layout, loss):
    L = layout
    seq = TASK.sequence(L, chain_doc(), loss=loss)
    assert len(seq) == TASK.length(chain_doc())
    ids, mask = seq.input_ids, seq.loss_mask
    assert not mask[0] and not mask[1] and mask[-1]  # <bos>, <doc> never; <eos> always
    text = [i for i, t in enumerate(ids) if L.is_text_id(t)]
    image = [i for i, t in enumerate(ids) if L.is_image_id(t) or t in (L.boi_id, L.eoi_id)
             or L.is_height_id(t) or L.is_width_id(t)]
    assert all(mask[i] == (loss in ("both", "text")) for i in text)
    assert all(mask[i] == (loss in ("both", "image")) for i in image)
    assert all(TASK.sequence(L, chain_doc(), loss_on_all=True, loss=loss).loss_mask[1:])


def test_bad_loss_option_is_named(layout):
    with pytest.raises(ValueError, match="interleaved: loss must be one of"):
        TASK.sequence(layout, chain_doc(), loss="codes")


def test_length_matches_sequence_for_random_documents(layout):
    rng = random.Random(0)
    drop = ConditionDropout(0.1, 0.3, 0.3, 0.3)
    for _ in range(100):
        doc = []
        for _ in range(rng.randint(1, 7)):
            if rng.random() < 0.5:
                doc.append(img(rng.randint(1, 4), rng.randint(1, 4), rng.randrange(32)))
            else:
                doc.append([rng.randrange(50) for _ in range(rng.randint(1, 6))])
        doc = tuple(doc)
        assert len(TASK.sequence(layout, doc)) == TASK.length(doc)
        # condition dropout never makes a document more than one <null> longer (the data module's slack)
        assert len(TASK.sequence(layout, doc, dropout=drop, rng=rng)) <= TASK.length(doc) + 1


def test_prompts_are_prefixes_of_the_training_sequences_they_continue(layout):
    L = layout
    a, t1, b, t2, c = chain_doc()
    # continuing after the first instruction: the prompts for image b
    p = TASK.prompts(L, {"segments": [a, t1]}, grid=(1, 3))
    full = TASK.sequence(L, chain_doc()).input_ids
    assert full[:len(p["full"])] == p["full"] and p["full"][-3:] == [*L.shape_token_ids(1, 3), L.boi_id]
    # each dropped variant is a prefix of the training sequence with that dropout on image b
    # (the only image after a text other than c; rng draws pick b or c, so try both)
    cases = {"image": ConditionDropout(0, 1, 0, 0), "text": ConditionDropout(0, 0, 1, 0),
             "uncond": ConditionDropout(0, 0, 0, 1)}
    for name, drop in cases.items():
        seqs = [TASK.sequence(L, chain_doc(), dropout=drop, rng=random.Random(s)).input_ids for s in range(20)]
        assert any(s[:len(p[name])] == p[name] for s in seqs), name
    null = L.null_id
    assert p["image"] == TASK.prefix(L, [a, None]) + p["full"][-3:]
    assert p["text"] == [L.bos_id, L.special_id("<doc>"), null, *t1, *p["full"][-3:]]
    assert p["uncond"] == [L.bos_id, L.special_id("<doc>"), null, *p["full"][-3:]]
    # no grid: the model continues (text, an image or <eos>)
    assert TASK.prompts(L, {"segments": [a, t1]})["full"] == full[:2 + 8 + 3]


def test_branches_drop_the_preceding_text_and_optionally_the_images(layout):
    p = TASK.prompts(layout, {"segments": [img(2, 2), [3, 4]]}, grid=(2, 2))
    assert TASK.branches(p, 1.0, 1.0) is None
    two = TASK.branches(p, 2.0)
    assert two.uncond == p["image"] and two.guidance_scale == 2.0 and two.image is None
    assert TASK.branches(p, 2.0, drop_images=True).uncond == p["uncond"]
    three = TASK.branches(p, 1.5, 1.25)
    assert three.uncond == p["uncond"] and three.image == p["image"] and three.image_guidance_scale == 1.25


def test_dropout_replaces_one_conditions_text_or_history(layout):
    L = layout
    a, t1, b, t2, c = chain_doc()
    none = TASK.sequence(L, chain_doc(), dropout=ConditionDropout(0, 0, 0, 0), rng=random.Random(0))
    assert none.input_ids == TASK.sequence(L, chain_doc()).input_ids
    for s in range(10):
        seq = TASK.sequence(L, chain_doc(), dropout=ConditionDropout(0, 0, 0, 1), rng=random.Random(s))
        # both dropped: the document restarts at an image after a single <null>
        assert seq.input_ids[2] == L.null_id and seq.meta["dropped"] == 1
        assert seq.input_ids[3:6] == [*L.shape_token_ids(1, 3), L.boi_id] or \
            seq.input_ids[3:6] == [*L.shape_token_ids(2, 2), L.boi_id]


def test_document_from_a_shard_record_and_a_bad_reference(layout):
    class Rec:
        texts = {"segments": [{"image": 0}, {"text": "make it red"}, {"image": 1}]}
        images = [img(2, 2), img(1, 2)]

    doc = TASK.document(Rec(), lambda s: [len(w) for w in s.split()])
    assert doc[0] is Rec.images[0] and doc[1] == [4, 2, 3] and doc[2] is Rec.images[1]
    Rec.texts = {"segments": [{"image": 2}]}
    assert TASK.document(Rec(), lambda s: []) is None  # counted as malformed by the data module


# ---------------------------------------------------------------------- JSONL records
def write_manifest(d, lines):
    Image.new("RGB", (8, 8), "red").save(d / "a.png")
    Image.new("RGB", (8, 8), "blue").save(d / "b.png")
    (d / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_jsonl_documents_read_in_order_with_extras(tmp_path):
    write_manifest(tmp_path, [
        {"task": "pair", "image": "a.png", "text": "a red square"},
        {"task": "interleaved", "segments": [{"text": "before"}, {"image": "a.png"}, {"text": "then"},
                                             {"image": "b.png"}], "source": "mmc4"},
    ])
    recs = JsonlRecords(tmp_path, task="interleaved", policy=ErrorPolicy(on_error="raise"))
    assert len(recs) == 1 and recs.other_tasks == 1
    r = recs[0]
    assert isinstance(r, InterleavedRecord) and r.extra == {"source": "mmc4"}
    assert [s if isinstance(s, str) else s.name.rsplit("/", 1)[-1] for s in r.segments] == \
        ["before", "a.png", "then", "b.png"]
    assert [im.getpixel((0, 0)) for im in r.load_images()] == [(255, 0, 0), (0, 0, 255)]
    texts = TASK.record_texts(r)
    assert texts == {"segments": [{"text": "before"}, {"image": 0}, {"text": "then"}, {"image": 1}]}
    assert TASK.num_images(texts) == 2


@pytest.mark.parametrize("segments, reason, needle", [
    ([], "invalid_record", "'segments' must be a non-empty list"),
    ("a.png", "invalid_record", "'segments' must be a non-empty list"),
    ([{"text": "x", "image": "a.png"}], "invalid_record", "segments[0] has both 'text' and 'image'"),
    ([{"image": "a.png"}, {"caption": "x"}], "invalid_record", "segments[1] has neither 'text' nor 'image'"),
    ([{"image": "a.png"}, {"text": ""}], "invalid_record", "segments[1].text must be a non-empty string"),
    ([{"image": 3}], "invalid_record", "segments[0].image must be a non-empty string"),
    (["a.png"], "invalid_record", "segments[0] must be an object"),
    ([{"text": "x"}, {"image": "gone.png"}], "missing_file", "segments[1].image: no such file"),
    (None, "invalid_record", "no 'segments' field"),
])
def test_jsonl_bad_documents_name_file_line_and_field(tmp_path, segments, reason, needle):
    bad = {"task": "interleaved"} if segments is None else {"task": "interleaved", "segments": segments}
    write_manifest(tmp_path, [{"task": "interleaved", "segments": [{"image": "a.png"}]}, bad])
    with pytest.raises(BadSampleError) as e:
        JsonlRecords(tmp_path, task="interleaved", policy=ErrorPolicy(on_error="raise"))
    assert e.value.reason == reason and e.value.source == f"{tmp_path / 'manifest.jsonl'}:2"
    assert needle in e.value.detail and "\n" not in str(e.value)
    # skipped, not fatal, under the default policy: the good line stays
    policy = ErrorPolicy(max_skip_fraction=1.0)
    with pytest.warns(UserWarning):
        recs = JsonlRecords(tmp_path, task="interleaved", policy=policy)
    assert len(recs) == 1 and policy.num_skipped == 1


# ---------------------------------------------------------------------- shards and the data module
@pytest.fixture(scope="module")
def chain_shards(tmp_path_factory):
    d = tmp_path_factory.mktemp("chain-tokens")
    src = make_source("shapes:train", ["pair", "interleaved"], 12, difficulty="demo")
    pretokenize(PatchColorTokenizer(16, 4, 4), src, d, shard_size=6, num_workers=0, progress=False)
    texts = [s["text"] for r in iter_records(d) for s in r.texts.get("segments", []) if "text" in s]
    texts += [r.texts["text"] for r in iter_records(d) if r.task == "pair"]
    TextTokenizer.train(texts, vocab_size=300, save_to=d)
    return d


def test_pretokenized_chains_keep_every_image_and_spec(chain_shards):
    recs = [r for r in iter_records(chain_shards) if r.task == "interleaved"]
    assert len(recs) == 12
    for r in recs:
        segs = r.texts["segments"]
        n = TASK.num_images(r.texts)
        assert 3 <= n <= 5 and len(r.images) == n and len(r.extra["specs"]) == n == len(r.extra["edits"]) + 1
        assert [("image" in s) for s in segs] == [k % 2 == 0 for k in range(2 * n - 1)]
        assert all(im.h == im.w == 4 for im in r.images)


def test_data_module_trains_on_chains_with_the_loss_option(chain_shards):
    dm = TokenDataModule(str(chain_shards), seq_len=256, batch_size=2, val_fraction=0.0,
                         task_weights={"t2i": 0.5, "interleaved": 0.5}, task_options={"interleaved": {"loss": "text"}},
                         p_drop_instruction=0.0, p_drop_source=0.0, p_drop_both=0.0)
    L = dm.layout
    assert L.special_tokens[-1] == "<doc>" and "interleaved" in dm.task_names
    iid = dm.task_names.index("interleaved")
    seen = 0
    for b in range(4):
        batch = dm.batch(0, b)
        sel = batch["task_ids"] == iid
        tgt = batch["targets"][sel]
        tgt = tgt[tgt != IGNORE_INDEX]
        seen += len(tgt)
        # loss "text": an interleaved document's targets are its text and <eos>, no image code
        assert all(L.is_text_id(int(t)) or int(t) == L.eos_id for t in tgt)
    assert seen > 0


def test_task_options_are_checked_against_the_tasks_signature():
    assert check_task_options({"interleaved": {"loss": "image"}}) == {"interleaved": {"loss": "image"}}
    with pytest.raises(ValueError, match=r"task_options\['interleaved'\] has unknown option 'los'"):
        check_task_options({"interleaved": {"los": "text"}})
    with pytest.raises(ValueError, match=r"must be one of \['both', 'text', 'image'\], got 'codes'"):
        check_task_options({"interleaved": {"loss": "codes"}})
    with pytest.raises(ValueError, match="t2i.sequence\\(\\) takes no options"):
        check_task_options({"t2i": {"loss": "text"}})
