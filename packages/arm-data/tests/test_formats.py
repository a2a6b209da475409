"""Task formats: exact layouts, loss masks, prompts as prefixes, CFG prompts, dropout, parsing."""

import random

import pytest
from arm_data.formats import (
    ConditionDropout,
    ImageTokens,
    TaskFormatter,
    conversation_sequence,
    describe,
    edit_cfg_prompts,
    edit_prompt,
    edit_sequence,
    find_images,
    t2i_prompt,
    t2i_sequence,
    t2i_uncond_prompt,
    text_sequence,
    und_prompt,
    und_sequence,
)
from arm_data.vocab import VocabError, VocabLayout

L = VocabLayout(text_vocab_size=50, codebook_size=16, max_grid_h=4, max_grid_w=4)
IMG = ImageTokens([1, 2, 3, 4, 5, 6], h=2, w=3)
TGT = ImageTokens([7, 8, 9, 10, 11, 12], h=2, w=3)


def names(ids):
    return [L.token_name(i) for i in ids]


def test_t2i_layout_and_loss():
    s = t2i_sequence(L, [10, 11], IMG)
    assert names(s.input_ids) == ["<bos>", "<t2i>", "text:10", "text:11", "<h=2>", "<w=3>", "<boi>",
                                  *[f"img:{c}" for c in IMG.codes], "<eoi>", "<eos>"]
    # loss exactly on the codes, <eoi> and <eos>
    assert [n for n, m in zip(names(s.input_ids), s.loss_mask, strict=True) if m] == [f"img:{c}" for c in IMG.codes] + ["<eoi>", "<eos>"]
    all_loss = t2i_sequence(L, [10, 11], IMG, loss_on_all=True)
    assert all_loss.loss_mask == [False] + [True] * (len(s) - 1)


def test_prompts_are_prefixes_of_training_sequences():
    s = t2i_sequence(L, [10, 11], IMG)
    p = t2i_prompt(L, [10, 11], 2, 3)
    assert s.input_ids[:len(p)] == p and p[-1] == L.boi_id
    assert s.loss_mask.index(True) == len(p)  # the first target is the first generated token

    u = und_sequence(L, IMG, [20, 21], [30])
    up = und_prompt(L, IMG, [20, 21])
    assert u.input_ids[:len(up)] == up and names(up)[-1] == "<assistant>"
    assert [n for n, m in zip(names(u.input_ids), u.loss_mask, strict=True) if m] == ["text:30", "<eos>"]

    e = edit_sequence(L, IMG, [40], TGT)
    ep = edit_prompt(L, IMG, [40])
    assert e.input_ids[:len(ep)] == ep and e.loss_mask.index(True) == len(ep)
    assert names(ep)[:3] == ["<bos>", "<edit>", "<h=2>"]
    assert find_images(L, e.input_ids) == [IMG, TGT]


def test_cfg_prompts_use_null():
    assert names(t2i_uncond_prompt(L, 2, 3)) == ["<bos>", "<t2i>", "<null>", "<h=2>", "<w=3>", "<boi>"]
    ps = edit_cfg_prompts(L, IMG, [40, 41])
    assert names(ps["uncond"]) == ["<bos>", "<edit>", "<null>", "<user>", "<null>", "<assistant>",
                                   "<h=2>", "<w=3>", "<boi>"]
    assert L.null_id not in ps["full"]
    assert ps["image"].count(L.null_id) == 1 and L.boi_id in ps["image"][:5]  # source kept
    assert ps["text"].count(L.null_id) == 1 and 40 in ps["text"]
    # training with dropped conditions produces exactly these prefixes
    assert edit_sequence(L, None, None, TGT).input_ids[:len(ps["uncond"])] == ps["uncond"]
    assert t2i_sequence(L, None, IMG).input_ids[:6] == t2i_uncond_prompt(L, 2, 3)


def test_output_grid_can_differ_and_dropped_source_needs_grid():
    p = edit_prompt(L, IMG, [1], h=4, w=1)
    assert names(p[-3:]) == ["<h=4>", "<w=1>", "<boi>"]
    with pytest.raises(ValueError, match="output grid"):
        edit_prompt(L, None, [1])


def test_conversation_loss_on_every_answer():
    s = conversation_sequence(L, IMG, [("user", [1]), ("assistant", [2, 3]), ("user", [4]), ("assistant", [5])])
    assert [n for n, m in zip(names(s.input_ids), s.loss_mask, strict=True) if m] == ["text:2", "text:3", "<eos>", "text:5", "<eos>"]
    with pytest.raises(ValueError, match="alternate"):
        conversation_sequence(L, IMG, [("assistant", [1]), ("user", [2])])


def test_text_only():
    s = text_sequence(L, [3, 4])
    assert names(s.input_ids) == ["<bos>", "<text>", "text:3", "text:4", "<eos>"]
    assert s.loss_mask == [False, False, True, True, True]


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="6 codes but its grid is 2x2"):
        ImageTokens([1] * 6, 2, 2)
    with pytest.raises(VocabError, match="caption: ids \\[60\\] are not text ids"):
        t2i_sequence(L, [60], IMG)
    with pytest.raises(VocabError, match="outside the codebook"):
        t2i_sequence(L, [1], ImageTokens([16], 1, 1))
    with pytest.raises(VocabError, match="out of range"):
        t2i_prompt(L, [1], 5, 1)


def test_find_images_checks_counts_and_skips_unfinished():
    ids = t2i_prompt(L, [1], 2, 3) + L.image_code_to_id([1, 2, 3])
    assert find_images(L, ids) == []  # unfinished span
    bad = t2i_prompt(L, [1], 2, 3) + L.image_code_to_id([1, 2]) + [L.eoi_id]
    with pytest.raises(VocabError, match="2 codes, its shape tokens say 2x3"):
        find_images(L, bad)


def test_condition_dropout_rates_and_exclusivity():
    d = ConditionDropout(p_caption=0.3, p_instruction=0.1, p_source=0.2, p_both=0.05)
    rng = random.Random(0)
    n = 20000
    assert abs(sum(d.drop_caption(rng) for _ in range(n)) / n - 0.3) < 0.02
    draws = [d.drop_edit(rng) for _ in range(n)]
    for case, p in (((True, True), 0.05), ((True, False), 0.1), ((False, True), 0.2), ((False, False), 0.65)):
        assert abs(draws.count(case) / n - p) < 0.02
    with pytest.raises(ValueError, match="p_caption"):
        ConditionDropout(p_caption=1.5)
    assert ConditionDropout(0, 0, 0, 0).drop_edit(rng) == (False, False)


class _CharTok:
    def encode(self, s):
        return [ord(c) - 90 for c in s]

    def decode(self, ids):
        return "".join(chr(i + 90) for i in ids)


def test_formatter_and_describe():
    f = TaskFormatter(L, _CharTok())
    s = f.t2i("abc", IMG)
    assert s.input_ids == t2i_sequence(L, [7, 8, 9], IMG).input_ids
    assert describe(L, s.input_ids, _CharTok()) == "<bos> <t2i> 'abc' <h=2> <w=3> <boi> img[6] <eoi> <eos>"
    assert f.answer_text([7, 8, L.eos_id, 9]) == "ab"
    assert f.t2i_prompt(None, 2, 3) == t2i_uncond_prompt(L, 2, 3)
    assert set(f.edit_cfg_prompts(IMG, "b")) == {"full", "image", "text", "uncond"}
