"""ShapesWorld edit chains: 2-4 steps, a spec per step, held-out compositions respected."""

import pytest
from arm_data.shapes import HELDOUT_PAIRS, scene_allowed
from arm_data.shapes.chains import EditChain, EditChains
from arm_data.shapes.difficulty import get_difficulty
from arm_data.shapes.edits import apply_edit
from arm_data.tasks import get_task


@pytest.mark.parametrize("difficulty", ["full", "demo"])
def test_every_step_is_its_edit_applied_and_the_split_is_respected(difficulty):
    d = get_difficulty(difficulty)
    for split in ("train", "val", "heldout"):
        chains = EditChains(split, seed=3, width=32, height=32, length=40, difficulty=difficulty)
        steps = set()
        for ch in chains:
            steps.add(ch.steps)
            assert 2 <= ch.steps <= 4 and len(ch.specs) == ch.steps + 1 == len(ch.instructions) + 1
            for k, e in enumerate(ch.edits):
                assert apply_edit(ch.specs[k], e) == ch.specs[k + 1]
                assert ch.instructions[k].endswith(".")
            if split == "heldout":
                assert any(p in d.heldout_pairs for p in ch.specs[0].pairs())
            else:  # no scene of a train/val chain holds a held-out pair or count
                assert all(scene_allowed(s, split, d) for s in ch.specs)
        assert steps == {2, 3, 4}


def test_chains_are_deterministic_and_differ_by_split_and_seed():
    a = EditChains("train", seed=0, length=5)[4]
    assert a.to_dict() == EditChains("train", seed=0, length=5)[4].to_dict()
    assert a.to_dict() != EditChains("train", seed=1, length=5)[4].to_dict()
    assert a.specs[0] != EditChains("val", seed=0, length=5)[4].specs[0]
    assert EditChain.from_dict(a.to_dict()).to_dict() == a.to_dict()


def test_full_world_heldout_chains_use_its_heldout_pairs():
    ch = EditChains("heldout", seed=0, length=3)[0]
    assert any(p in HELDOUT_PAIRS for p in ch.specs[0].pairs())


def test_a_chain_is_an_interleaved_document():
    ch = EditChains("train", seed=0, width=32, height=24, length=3, difficulty="demo")[1]
    rec = ch.record()
    task = get_task("interleaved")
    segs = rec.segments
    assert len(segs) == 2 * ch.steps + 1 and segs[1::2] == ch.instructions
    images = rec.load_images()
    assert [im.size for im in images] == [(32, 24)] * (ch.steps + 1)
    assert images[0].tobytes() == ch.image(0).tobytes() and images[-1].tobytes() == ch.image(ch.steps).tobytes()
    assert task.num_images(task.record_texts(rec)) == ch.steps + 1
    assert rec.extra["specs"] == [s.to_dict() for s in ch.specs] and rec.key == "train-chain-00000001"


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="min_steps <= max_steps"):
        EditChains("train", min_steps=3, max_steps=2)
    with pytest.raises(ValueError, match="unknown split"):
        EditChains("test")
