"""VocabLayout: block offsets, round trips, validation errors, JSON persistence."""

import json

import numpy as np
import pytest
import torch
from arm_data.vocab import DEFAULT_SPECIAL_TOKENS, VocabError, VocabLayout


@pytest.fixture
def layout() -> VocabLayout:
    return VocabLayout(text_vocab_size=300, codebook_size=64, max_grid_h=8, max_grid_w=6)


def test_blocks_are_contiguous_and_ordered(layout):
    assert layout.special_offset == 300
    assert layout.shape_offset == 300 + len(DEFAULT_SPECIAL_TOKENS)
    assert layout.image_offset == layout.shape_offset + 8 + 6
    assert layout.image_id_range == (layout.image_offset, layout.image_offset + 64)
    assert layout.total_size == layout.image_offset + 64
    # every id has exactly one name, and the names are unique
    names = [layout.token_name(i) for i in range(layout.total_size)]
    assert len(set(names)) == layout.total_size
    assert names[0] == "text:0" and names[300] == "<pad>" and names[-1] == "img:63"


def test_special_ids_by_either_spelling(layout):
    assert layout.special_id("boi") == layout.special_id("<boi>") == layout.boi_id
    ids = layout.special_ids()
    assert sorted(ids.values()) == list(range(layout.special_offset, layout.shape_offset))
    for name, i in ids.items():
        assert layout.special_name(i) == name
    assert len({layout.pad_id, layout.bos_id, layout.eos_id, layout.boi_id, layout.eoi_id, layout.null_id}) == 6


def test_unknown_special_lists_known(layout):
    with pytest.raises(VocabError, match=r"unknown special token '<foo>'.*<boi>"):
        layout.special_id("<foo>")


def test_shape_tokens_round_trip(layout):
    seen = set()
    for h in range(1, 9):
        for w in range(1, 7):
            hid, wid = layout.shape_token_ids(h, w)
            assert layout.grid_from_shape_ids(hid, wid) == (h, w)
            assert layout.is_height_id(hid) and not layout.is_width_id(hid)
            assert layout.is_width_id(wid) and not layout.is_height_id(wid)
            seen.update((hid, wid))
    assert seen == set(range(layout.shape_offset, layout.image_offset))
    with pytest.raises(VocabError, match="grid height 9 out of range.*1..8"):
        layout.shape_token_ids(9, 1)
    with pytest.raises(VocabError, match="grid width 0"):
        layout.shape_token_ids(1, 0)
    with pytest.raises(VocabError, match="not a height token"):
        layout.height_from_id(layout.boi_id)


def test_image_codes_round_trip_all_container_types(layout):
    codes = [0, 5, 63]
    ids = layout.image_code_to_id(codes)
    assert ids == [layout.image_offset, layout.image_offset + 5, layout.total_size - 1]
    assert layout.id_to_image_code(ids) == codes
    t = torch.tensor(codes)
    assert torch.equal(layout.id_to_image_code(layout.image_code_to_id(t)), t)
    a = np.array(codes)
    assert (layout.id_to_image_code(layout.image_code_to_id(a)) == a).all()
    assert layout.image_code_to_id(7) == layout.image_offset + 7
    mask = layout.is_image_id(torch.arange(layout.total_size))
    assert mask.sum() == 64 and mask[layout.image_offset:].all()
    assert torch.equal(layout.image_logit_mask(), mask)
    with pytest.raises(VocabError, match="outside the codebook"):
        layout.image_code_to_id(torch.tensor([64]))
    with pytest.raises(VocabError, match="not an image id"):
        layout.id_to_image_code(5)


def test_json_round_trip_and_checks(tmp_path, layout):
    path = tmp_path / "vocab.json"
    layout.save(path)
    back = VocabLayout.load(path)
    assert back == layout and back.total_size == layout.total_size
    data = json.loads(path.read_text())
    data["total_size"] += 1
    with pytest.raises(VocabError, match="total_size.*disagrees"):
        VocabLayout.from_dict(data)
    with pytest.raises(VocabError, match="lacks"):
        VocabLayout.from_dict({"text_vocab_size": 3})


def test_validation_errors():
    with pytest.raises(VocabError, match="codebook_size must be a positive int"):
        VocabLayout(100, 0)
    with pytest.raises(VocabError, match="duplicate special"):
        VocabLayout(100, 8, special_tokens=DEFAULT_SPECIAL_TOKENS + ("<pad>",))
    with pytest.raises(VocabError, match="lacks.*<null>"):
        VocabLayout(100, 8, special_tokens=tuple(s for s in DEFAULT_SPECIAL_TOKENS if s != "<null>"))
    with pytest.raises(VocabError, match="written '<name>'"):
        VocabLayout(100, 8, special_tokens=DEFAULT_SPECIAL_TOKENS + ("oops",))


def test_appended_special_keeps_old_ids(layout):
    extended = VocabLayout(300, 64, 8, 6, DEFAULT_SPECIAL_TOKENS + ("<sep>",))
    for name, i in layout.special_ids().items():
        assert extended.special_id(name) == i
    with pytest.raises(VocabError, match="special_tokens"):
        layout.check_compatible(extended)
    layout.check_compatible(VocabLayout(300, 64, 8, 6))


def test_check_ids(layout):
    layout.check_ids([0, layout.total_size - 1])
    with pytest.raises(VocabError, match="prompt: ids span"):
        layout.check_ids([0, layout.total_size], where="prompt")
